"""Rate-limit slots shared by every process and node (reference §9).

``reserve`` counts the slots of each configured window and takes one slot only when every
window has room. It is atomic across processes: on PostgreSQL it first locks the tenant row
(when tenant-wide limits apply) or the account row ``FOR UPDATE``; on SQLite the write
transaction (``BEGIN IMMEDIATE``) already serialises writers. The counting happens in SQL; what
the counts mean (room, which slot must leave, when) is :mod:`mailproxyd.core.ratelimit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailproxyd.core import ratelimit as rule
from mailproxyd.core.ratelimit import MAX_WINDOW, Counted, Window

from ._codec import dumps
from .database import Tx


@dataclass
class Reservation:
    """Outcome of ``reserve``: a granted slot, or the core's verdict on why not.

    ``blocking``: the names of the blocking windows (``core.ratelimit.ACCOUNT_WINDOWS``'
    fields, ``tenant_hourly``, ``tenant_daily``); ``free_at``: the whole second at which every
    one has room; ``reject``: an account window blocks and the account rejects.
    """

    granted: bool
    slot_id: int | None = None
    blocking: tuple[str, ...] = ()
    free_at: int | None = None
    reject: bool = False


def reserve(
    tx: Tx,
    tenant_id: str,
    account_id: str,
    message_pk: int | None,
    now: float,
    windows: Sequence[Window],
    *,
    limit_behavior: str = "defer",
) -> Reservation:
    """Take a slot for one send of ``(tenant, account)`` at ``now`` if every window allows it.

    ``windows``: ``core.ratelimit.account_windows`` and ``tenant_windows`` of the account and
    its tenant. The store counts each window's slots and fetches the oldest that must leave;
    whether that admits is ``core.ratelimit.decide``'s answer.
    """
    ids = {"tenant_id": tenant_id, "account_id": account_id}
    tenant_limited = any(window.scope == "tenant" for window in windows)
    tx.one("lock_tenant" if tenant_limited else "lock_account", ids)
    held: list[Counted] = []
    for window in windows:
        params = {**ids, "since": rule.window_start(window, now)}
        count = int(tx.value(f"rate_count_{window.scope}", params) or 0)
        needed = rule.slots_to_leave(window, count)
        oldest: list[float] = []
        if needed:
            rows = tx.all(f"rate_oldest_{window.scope}", {**params, "n": needed})
            oldest = [float(row["slot_ts"]) for row in rows]
        held.append(Counted(window, count, oldest))
    decision = rule.decide(held, limit_behavior=limit_behavior)
    if not decision.admit:
        return Reservation(
            False, blocking=decision.blocking, free_at=decision.free_at, reject=decision.reject
        )
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
