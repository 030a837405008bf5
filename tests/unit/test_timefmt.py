"""Time formatting at the edge (reference §0, §7)."""

from __future__ import annotations

import email.utils

from mailproxyd.core.timefmt import iso, rfc5322_date


def test_iso() -> None:
    assert iso(1767225600) == "2026-01-01T00:00:00"
    assert iso(1767225605.999) == "2026-01-01T00:00:05"
    assert iso(0) == "1970-01-01T00:00:00"


def test_rfc5322_date() -> None:
    assert rfc5322_date(1767225605) == "Thu, 01 Jan 2026 00:00:05 +0000"
    assert rfc5322_date(1767225605.7) == "Thu, 01 Jan 2026 00:00:05 +0000"
    # Agrees with the standard library on a spread of instants, weekdays and months.
    for ts in range(0, 2_000_000_000, 86_399_917):
        assert rfc5322_date(ts) == email.utils.formatdate(ts, usegmt=False).replace(
            "-0000", "+0000"
        )
