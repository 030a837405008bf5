"""Sliding-window arithmetic of the rate limiter (contract §9), pure.

A slot stamped ``s`` counts in a window of length ``W`` at time ``t`` when ``t − W < s ≤ t``.
A window with ``count ≥ limit`` counted slots is full; it has room again once the slot whose
departure brings the count below the limit has left: with the counted slots sorted oldest
first, that is slot ``count − limit``, at its time + ``W``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
# Slots older than the longest window are never counted again.
SLOT_HORIZON = DAY


def is_limited(limit: int | None) -> bool:
    """``0`` and ``None`` mean unlimited."""
    return bool(limit) and int(limit or 0) > 0


def window_start(now: float, window: float) -> float:
    """Slots strictly after this time count in the window ending at ``now``."""
    return now - window


def slots_to_leave(count: int, limit: int) -> int:
    """How many of the oldest counted slots must leave before one more fits (0: not full)."""
    return max(0, count - limit + 1)


def free_at(oldest: Sequence[float], count: int, limit: int, window: float) -> float | None:
    """When a full window has room again, or None when it is not full.

    ``oldest``: at least the ``slots_to_leave(count, limit)`` oldest counted slot times,
    ascending; ``count``: how many slots the window counts.
    """
    needed = slots_to_leave(count, limit)
    if needed == 0:
        return None
    if len(oldest) < needed:
        raise ValueError(f"need the {needed} oldest slot times, got {len(oldest)}")
    return float(oldest[needed - 1]) + window


def latest(times: Iterable[float | None]) -> float | None:
    """The latest of the given free times (every blocking window must have room)."""
    known = [t for t in times if t is not None]
    return max(known) if known else None
