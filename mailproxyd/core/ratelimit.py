"""Rate-limit arithmetic (reference §9): sliding windows over reserved slot times.

The store reserves slots atomically; this module only decides, from the slot times counted in
each window and the limits, whether one more send is admitted and, if not, the earliest time at
which every blocking window has room again. It is the only copy of that arithmetic: the store
counts slots in SQL, fetches the :func:`slots_to_leave` oldest ones and asks :func:`decide`.

A slot at time ``s`` counts in a window of length ``W`` at time ``t`` when ``t − W < s`` (reference §9).
A slot stamped *after* ``t`` counts as well: it is an admission that has already happened, seen
by a process whose clock reads earlier (another node, or a ``now`` read just before the
transaction waited for the lock). Ignoring it would let that process overshoot the limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACCOUNT_WINDOWS",
    "MAX_WINDOW",
    "TENANT_WINDOWS",
    "Counted",
    "Decision",
    "Window",
    "account_windows",
    "counted",
    "decide",
    "free_time",
    "free_time_of_oldest",
    "latest",
    "slots_to_leave",
    "tenant_windows",
    "whole_second",
    "window_start",
]

# (limit field, window seconds) per scope.
ACCOUNT_WINDOWS = (("limit_per_minute", 60), ("limit_per_hour", 3600), ("limit_per_day", 86400))
TENANT_WINDOWS = (("hourly", 3600), ("daily", 86400))
MAX_WINDOW = 86400  # slots older than this never count again (reference §9: discarded after 24 h)


@dataclass(frozen=True, slots=True)
class Window:
    """One limit: at most ``limit`` slots within ``seconds``; ``scope`` is account or tenant."""

    name: str
    seconds: int
    limit: int
    scope: str = "account"


@dataclass(frozen=True, slots=True)
class Decision:
    """``admit``, or blocked until ``free_at`` (whole Unix seconds) by the named windows.

    ``reject`` is true when an account window blocks and the account's ``limit_behavior`` is
    ``reject`` (the message then fails with ``rate_limit_exceeded``).
    """

    admit: bool
    free_at: int | None = None
    blocking: tuple[str, ...] = ()
    reject: bool = False


def account_windows(account: Mapping[str, Any]) -> list[Window]:
    """The account's limits; ``0`` or ``None`` means unlimited (reference §5.4)."""
    return [
        Window(name, seconds, int(account[name]), "account")
        for name, seconds in ACCOUNT_WINDOWS
        if account.get(name) and int(account[name]) > 0
    ]


def tenant_windows(rate_limits: Mapping[str, Any] | None) -> list[Window]:
    """The tenant's ``rate_limits`` (``hourly``, ``daily``) over all its accounts."""
    if not rate_limits:
        return []
    return [
        Window(f"tenant_{name}", seconds, int(rate_limits[name]), "tenant")
        for name, seconds in TENANT_WINDOWS
        if rate_limits.get(name) and int(rate_limits[name]) > 0
    ]


@dataclass(frozen=True, slots=True)
class Counted:
    """What a window holds at some time: ``count`` slots, of which ``oldest`` are the oldest
    (ascending; at least :func:`slots_to_leave` of them)."""

    window: Window
    count: int
    oldest: Sequence[float] = ()


def window_start(window: Window, now: float) -> float:
    """Slots stamped strictly after this time count in ``window`` at ``now``."""
    return now - window.seconds


def slots_to_leave(window: Window, count: int) -> int:
    """How many of the oldest counted slots must leave before one more fits (0: room now).

    More than one when the limit was lowered below the slots already counted.
    """
    return max(0, count - window.limit + 1)


def free_time_of_oldest(window: Window, count: int, oldest: Sequence[float]) -> float | None:
    """When ``window`` has room again, from the number of slots it counts and the oldest ones.

    ``oldest``: at least the ``slots_to_leave(window, count)`` oldest counted slot times,
    ascending — all a store needs to fetch, however many slots the window holds. With
    ``n ≥ limit`` counted slots the count drops below the limit when slot ``n − limit``
    (0-based) leaves the window, at its time + ``W``. ``None`` when there is room now.
    """
    needed = slots_to_leave(window, count)
    if needed == 0:
        return None
    if len(oldest) < needed:
        raise ValueError(f"need the {needed} oldest slot times, got {len(oldest)}")
    return float(oldest[needed - 1]) + window.seconds


def free_time(window: Window, slots: Sequence[float], now: float) -> float | None:
    """When ``window`` has room for one more slot: ``None`` if it has room at ``now``.

    ``slots`` are the reserved slot times of the window's scope; those that left the window
    are ignored.
    """
    held = counted(window, slots, now)
    return free_time_of_oldest(window, held.count, held.oldest)


def latest(times: Iterable[float | None]) -> float | None:
    """The latest of the given free times (``None`` when none blocks): every blocking window
    must have room before the send is admitted."""
    known = [t for t in times if t is not None]
    return max(known) if known else None


def counted(window: Window, slots: Sequence[float], now: float) -> Counted:
    """``window`` at ``now`` from every reserved slot time of its scope (in any order)."""
    inside = sorted(s for s in slots if s > window_start(window, now))
    return Counted(window, len(inside), inside)


def decide(windows: Sequence[Counted], *, limit_behavior: str = "defer") -> Decision:
    """Admit one send, or say until when it is blocked (the maximum over blocking windows).

    The store's admission (``store.ratelimit.reserve``) calls this with what it counted.
    """
    blocking: list[str] = []
    free_times: list[float | None] = []
    reject = False
    for held in windows:
        free = free_time_of_oldest(held.window, held.count, held.oldest)
        if free is None:
            continue
        blocking.append(held.window.name)
        free_times.append(free)
        if held.window.scope == "account" and limit_behavior == "reject":
            reject = True
    free_at = latest(free_times)
    if free_at is None:
        return Decision(True)
    return Decision(False, whole_second(free_at), tuple(blocking), reject)


def whole_second(ts: float) -> int:
    """``ts`` rounded up to a whole second (reference §9's ``deferred_ts``)."""
    # Round to microseconds first so that float noise on a whole second (…660.0000000001)
    # does not push the free time a full second later.
    return math.ceil(round(ts, 6))
