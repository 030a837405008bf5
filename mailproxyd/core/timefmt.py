"""Formatting of times at the edge (reference §0, §7).

Times travel inside the program as float Unix seconds; they become text only here.
"""

from __future__ import annotations

import time

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def iso(ts: float) -> str:
    """``created_at``/``updated_at`` form: ISO-8601 UTC, seconds, no zone (``2026-01-01T00:00:00``).

    Fractions are dropped (floor), so a row written at ``…:00.9`` never reads as a second later.
    """
    t = time.gmtime(int(ts // 1))
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


def rfc5322_date(ts: float) -> str:
    """``Date`` header value in UTC: ``Thu, 01 Jan 2026 00:00:05 +0000``.

    Built by hand rather than with ``email.utils.formatdate`` so the output never depends on
    the locale or on the ``usegmt`` flavour (``GMT`` instead of ``+0000``). The value of the
    last second asked for is kept: a sender builds hundreds of messages within one second.
    """
    global _last_date
    second = int(ts // 1)
    last = _last_date  # one tuple, read and replaced whole: safe from any thread
    if last[0] == second:
        return last[1]
    t = time.gmtime(second)
    text = (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )
    _last_date = (second, text)
    return text


_last_date: tuple[int, str] = (-(2**62), "")
