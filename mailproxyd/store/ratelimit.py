"""Rate-limit slots shared by every process and node (contract §9).

``reserve`` counts the slots of each configured window and takes one slot only when every
window has room. It is atomic across processes: on PostgreSQL it first locks the tenant row
(when tenant-wide limits apply) or the account row ``FOR UPDATE``; on SQLite the write
transaction (``BEGIN IMMEDIATE``) already serialises writers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailproxyd.core.ratelimit_window import (
    DAY,
    HOUR,
    MINUTE,
    SLOT_HORIZON,
    free_at,
    is_limited,
    latest,
    slots_to_leave,
    window_start,
)

from .database import Tx


@dataclass
class Reservation:
    """Outcome of ``reserve``: a granted slot, or the blocking scopes and when room frees.

    ``blocking``: scope names among ``account_minute``, ``account_hour``, ``account_day``,
    ``tenant_hour``, ``tenant_day``; ``free_at``: exact float time (the caller rounds up).
    """

    granted: bool
    slot_id: int | None = None
    blocking: list[str] = field(default_factory=list)
    free_at: float | None = None


def reserve(
    tx: Tx,
    tenant_id: str,
    account_id: str,
    message_pk: int | None,
    now: float,
    *,
    per_minute: int | None = None,
    per_hour: int | None = None,
    per_day: int | None = None,
    tenant_hourly: int | None = None,
    tenant_daily: int | None = None,
) -> Reservation:
    """Take a slot for one send of ``(tenant, account)`` at ``now`` if every limit allows it."""
    ids = {"tenant_id": tenant_id, "account_id": account_id}
    tenant_limited = is_limited(tenant_hourly) or is_limited(tenant_daily)
    tx.one("lock_tenant" if tenant_limited else "lock_account", ids)
    windows = [
        ("account_minute", "account", per_minute, MINUTE),
        ("account_hour", "account", per_hour, HOUR),
        ("account_day", "account", per_day, DAY),
        ("tenant_hour", "tenant", tenant_hourly, HOUR),
        ("tenant_day", "tenant", tenant_daily, DAY),
    ]
    blocking: list[str] = []
    free_times: list[float | None] = []
    for scope, level, limit, window in windows:
        if not is_limited(limit):
            continue
        assert limit is not None
        params = {**ids, "since": window_start(now, window)}
        count = int(tx.value(f"rate_count_{level}", params) or 0)
        needed = slots_to_leave(count, limit)
        if needed == 0:
            continue
        oldest = [row["slot_ts"] for row in tx.all(f"rate_oldest_{level}", {**params, "n": needed})]
        blocking.append(scope)
        free_times.append(free_at(oldest, count, limit, window))
    if blocking:
        return Reservation(granted=False, blocking=blocking, free_at=latest(free_times))
    slot_id = tx.value("rate_insert", {**ids, "message_pk": message_pk, "now": now})
    return Reservation(granted=True, slot_id=int(slot_id))


def release(tx: Tx, slot_id: int) -> None:
    """Give a slot back: the attempt failed before the message data was transmitted."""
    tx.execute("rate_release", {"slot_id": int(slot_id)})


def prune(tx: Tx, now: float) -> int:
    """Delete slots older than the longest window (24 h); returns how many."""
    return tx.execute("rate_prune", {"before": now - SLOT_HORIZON})
