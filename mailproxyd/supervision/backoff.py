"""Restart back-off for crashed workers (reference §2.2), as pure arithmetic.

A worker that exits unexpectedly is restarted after 1 s, then 2, 4, … up to 60 s between
attempts; the ladder starts again once a worker has stayed up for 60 s.
"""

from __future__ import annotations

FIRST_DELAY = 1.0
MAX_DELAY = 60.0
STABLE_AFTER = 60.0


def restart_delay(consecutive_failures: int) -> float:
    """Delay before the next start after ``consecutive_failures`` quick crashes (≥ 1)."""
    if consecutive_failures <= 1:
        return FIRST_DELAY
    return min(MAX_DELAY, FIRST_DELAY * 2 ** (consecutive_failures - 1))


def next_failure_count(previous: int, ran_for: float) -> int:
    """The failure count after a crash of a worker that had run for ``ran_for`` seconds."""
    return 1 if ran_for >= STABLE_AFTER else previous + 1
