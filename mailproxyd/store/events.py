"""Events: unreported per tenant, acknowledgement, live tail, bounces (reference §13, §5.9, §12).

Event rows are dicts with ``event_id``, ``message_pk``, ``tenant_id``, ``id``, ``account_id``,
``priority``, ``batch_code``, ``event_type``, ``event_ts``, ``description`` (error text or
deferral reason) and ``metadata`` (``deferred_ts``, ``deferred_reason``, ``retry_count``,
``smtp_code``, ``refused_recipients``, ``outcome_uncertain``, ``bounce_*`` as applicable) —
everything a delivery-report item (reference §13.1) needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._codec import dumps, loads
from ._eventlog import event_row, record_events
from .database import Tx


def _decode(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["metadata"] = loads(row["metadata"], {})
    return rows


def unreported(tx: Tx, tenant_id: str, limit: int) -> list[dict[str, Any]]:
    """The tenant's oldest unacknowledged events, in event order."""
    return _decode(tx.all("events_unreported", {"tenant_id": tenant_id, "limit": int(limit)}))


def unreported_count(tx: Tx, tenant_id: str) -> int:
    return int(tx.value("events_unreported_count", {"tenant_id": tenant_id}) or 0)


# Ids per acknowledging statement: one report POST carries at most 1,000 (GMP_SYNC_BATCH_SIZE),
# so this bounds only unusual callers; it keeps each statement's parameter and lock set modest.
ACK_CHUNK = 5_000


def acknowledge(tx: Tx, event_ids: Iterable[int], now: float) -> int:
    """Mark events acknowledged (and their messages' ``reported_ts``); returns how many.

    Events already acknowledged are left as they were and not counted. Set-based: one
    statement per ``ACK_CHUNK`` ids on PostgreSQL (events and messages together), two on
    SQLite (where the statements run in-process and a round trip costs nothing).
    """
    ids = sorted({int(event_id) for event_id in event_ids})
    acked = 0
    for start in range(0, len(ids), ACK_CHUNK):
        chunk = dumps(ids[start : start + ACK_CHUNK])
        rows = tx.all("events_ack_many", {"ids": chunk, "now": now})
        acked += len(rows)
        if tx.backend == "sqlite" and rows:
            pks = dumps(sorted({int(row["message_pk"]) for row in rows}))
            tx.execute("messages_set_reported_many", {"pks": pks, "now": now})
    return acked


# A missing event id younger than this may belong to a transaction that has not committed yet;
# older gaps are rollbacks or deletions. Store transactions commit within milliseconds.
TAIL_GAP_GRACE_SECONDS = 1.0
# How many event ids past the cursor the PostgreSQL tail inspects for gaps per call.
_TAIL_SCAN = 10_000


def _tail_horizon(tx: Tx, after: int) -> int:
    """The highest event id the tail may return without stepping over one still uncommitted."""
    horizon = after
    for row in tx.all("events_tail_ids", {"after": after, "limit": _TAIL_SCAN}):
        if row["event_id"] != horizon + 1 and float(row["age"]) < TAIL_GAP_GRACE_SECONDS:
            break
        horizon = int(row["event_id"])
    return horizon


def tail(
    tx: Tx, after_event_id: int, tenant_id: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Events recorded after ``after_event_id`` (any tenant, or one), in event order.

    For the live ``/events`` stream: poll with the last id seen, starting from
    ``last_event_id``. On PostgreSQL ids are taken at insert but transactions commit in any
    order, so the tail stops before a missing id as long as a newer event is younger than
    ``TAIL_GAP_GRACE_SECONDS`` (it may still commit) and never returns an event past one it
    could later have to return. SQLite commits writers one at a time, in id order.
    """
    after = int(after_event_id)
    if tx.backend == "postgres":
        params = {
            "after": after,
            "upto": _tail_horizon(tx, after),
            "tenant_id": tenant_id,
            "limit": int(limit),
        }
        return _decode(tx.all("events_tail_upto", params))
    params = {"after": after, "tenant_id": tenant_id, "limit": int(limit)}
    return _decode(tx.all("events_tail", params))


def last_event_id(tx: Tx) -> int:
    """The id of the newest event (0 when there is none)."""
    return int(tx.value("events_last_id") or 0)


def record_bounce(
    tx: Tx,
    message_pk: int,
    now: float,
    *,
    bounce_type: str,
    bounce_code: str | None,
    bounce_reason: str | None,
    recipient: str | None = None,
) -> bool:
    """Record a matched bounce: a ``bounce`` event and the record's ``bounce_*`` fields.

    False (nothing written) when the message is gone or the same bounce (code and recipient)
    was already recorded for it (reference §12), whatever its reason text says.
    """
    message = tx.one("message_for_event", {"pk": int(message_pk)})
    if message is None:
        return False
    metadata = {
        "bounce_type": bounce_type,
        "bounce_code": bounce_code,
        "bounce_reason": bounce_reason,
        "recipient": recipient,
    }
    for row in tx.all("bounce_events_of", {"pk": message["pk"]}):
        seen = loads(row["metadata"], {})
        if (seen.get("bounce_code"), seen.get("recipient")) == (bounce_code, recipient):
            return False
    tx.execute(
        "message_set_bounce",
        {
            "pk": message["pk"],
            "now": now,
            "bounce_type": bounce_type,
            "bounce_code": bounce_code,
            "bounce_reason": bounce_reason,
        },
    )
    record_events(tx, [event_row(message, "bounce", now, bounce_reason, metadata)], now)
    return True
