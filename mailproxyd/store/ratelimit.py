"""Rate-limit slots shared by every process and node (reference §9).

``reserve`` counts the slots of each configured window and takes one slot only when every
window has room. It is atomic across processes: on PostgreSQL it first locks the tenant row
(when tenant-wide limits apply) or the account row ``FOR UPDATE``; on SQLite the write
transaction (``BEGIN IMMEDIATE``) already serialises writers. The counting happens in SQL; what
the counts mean (room, which slot must leave, when) is :mod:`mailproxyd.core.ratelimit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mailproxyd.core.ratelimit import (
    MAX_WINDOW,
    Window,
    free_time_of_oldest,
    latest,
    slots_to_leave,
    window_start,
)

from ._codec import dumps
from .database import Tx

# (scope name, level, window seconds) in the order ``Reservation.blocking`` lists them; the
# level picks the query that counts the scope's slots (one account, or the whole tenant).
_SCOPES = (
    ("account_minute", "account", 60),
    ("account_hour", "account", 3600),
    ("account_day", "account", 86400),
    ("tenant_hour", "tenant", 3600),
    ("tenant_day", "tenant", 86400),
)


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
    limits = (per_minute, per_hour, per_day, tenant_hourly, tenant_daily)
    # 0, None (and nonsense below 0) mean unlimited (reference §5.4).
    windows = [
        Window(scope, seconds, int(limit), level)
        for (scope, level, seconds), limit in zip(_SCOPES, limits, strict=True)
        if limit is not None and int(limit) > 0
    ]
    tenant_limited = any(window.scope == "tenant" for window in windows)
    tx.one("lock_tenant" if tenant_limited else "lock_account", ids)
    blocking: list[str] = []
    free_times: list[float | None] = []
    for window in windows:
        params = {**ids, "since": window_start(window, now)}
        count = int(tx.value(f"rate_count_{window.scope}", params) or 0)
        needed = slots_to_leave(window, count)
        if needed == 0:
            continue
        rows = tx.all(f"rate_oldest_{window.scope}", {**params, "n": needed})
        blocking.append(window.name)
        free_times.append(free_time_of_oldest(window, count, [row["slot_ts"] for row in rows]))
    if blocking:
        return Reservation(granted=False, blocking=blocking, free_at=latest(free_times))
    slot_id = tx.value("rate_insert", {**ids, "message_pk": message_pk, "now": now})
    return Reservation(granted=True, slot_id=int(slot_id))


def reserve_unlimited(
    tx: Tx, tenant_id: str, account_id: str, message_pks: Sequence[int], now: float
) -> list[int]:
    """Slots for many sends of an account without any limit (account or tenant): one statement.

    Nothing is counted, so nothing needs locking; the slots are still stamped (reference §9: every
    admission is a counted send, and a limit set later counts them). The slot ids follow
    ``message_pks``' order; a pk must not be listed twice.
    """
    pks = [int(pk) for pk in message_pks]
    if not pks:
        return []
    rows = tx.all(
        "rate_insert_many",
        {"tenant_id": tenant_id, "account_id": account_id, "rows": dumps(pks), "now": now},
    )
    by_pk = {int(row["message_pk"]): int(row["slot_id"]) for row in rows}
    return [by_pk[pk] for pk in pks]


def release(tx: Tx, slot_id: int) -> None:
    """Give a slot back: the attempt failed before the message data was transmitted."""
    tx.execute("rate_release", {"slot_id": int(slot_id)})


def prune(tx: Tx, now: float) -> int:
    """Delete slots older than the longest window (24 h); returns how many."""
    return tx.execute("rate_prune", {"before": now - MAX_WINDOW})
