"""Rate-limit arithmetic (contract §9): sliding windows over reserved slot times.

The store reserves slots atomically; this module only decides, from the slot times counted in
each window and the limits, whether one more send is admitted and, if not, the earliest whole
second at which every blocking window has room again. A slot at time ``s`` counts in a window of
length ``W`` at time ``t`` when ``t − W < s ≤ t``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACCOUNT_WINDOWS",
    "TENANT_WINDOWS",
    "Decision",
    "Window",
    "account_windows",
    "decide",
    "free_time",
    "tenant_windows",
]

# (limit field, window seconds) per scope.
ACCOUNT_WINDOWS = (("limit_per_minute", 60), ("limit_per_hour", 3600), ("limit_per_day", 86400))
TENANT_WINDOWS = (("hourly", 3600), ("daily", 86400))
MAX_WINDOW = 86400  # slots older than this never count again (§9: discarded after 24 h)


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
    """The account's limits; ``0`` or ``None`` means unlimited (§5.4)."""
    return [
        Window(name, seconds, int(account[name]), "account")
        for name, seconds in ACCOUNT_WINDOWS
        if account.get(name)
    ]


def tenant_windows(rate_limits: Mapping[str, Any] | None) -> list[Window]:
    """The tenant's ``rate_limits`` (``hourly``, ``daily``) over all its accounts."""
    if not rate_limits:
        return []
    return [
        Window(f"tenant_{name}", seconds, int(rate_limits[name]), "tenant")
        for name, seconds in TENANT_WINDOWS
        if rate_limits.get(name)
    ]


def free_time(window: Window, slots: Sequence[float], now: float) -> float | None:
    """When ``window`` has room for one more slot: ``None`` if it has room at ``now``.

    ``slots`` are the reserved slot times of the window's scope, sorted ascending (older ones
    are ignored). With ``n ≥ limit`` counted slots the count drops below the limit when slot
    ``n − limit`` (0-based) leaves the window, at its time + ``W``.
    """
    counted = [s for s in slots if now - window.seconds < s <= now]
    n = len(counted)
    if n < window.limit:
        return None
    return counted[n - window.limit] + window.seconds


def decide(
    windows: Sequence[tuple[Window, Sequence[float]]],
    now: float,
    *,
    limit_behavior: str = "defer",
) -> Decision:
    """Admit one send, or say until when it is blocked (the maximum over blocking windows)."""
    blocking: list[str] = []
    latest: float | None = None
    reject = False
    for window, slots in windows:
        free = free_time(window, sorted(slots), now)
        if free is None:
            continue
        blocking.append(window.name)
        latest = free if latest is None else max(latest, free)
        if window.scope == "account" and limit_behavior == "reject":
            reject = True
    if latest is None:
        return Decision(True)
    # Round to microseconds first so that float noise on a whole second (…660.0000000001)
    # does not push the free time a full second later.
    return Decision(False, math.ceil(round(latest, 6)), tuple(blocking), reject)
