"""Reading and removing message records (reference §5.1 stats, reference §5.3 listing, delete, cleanup).

Records are returned with float times and ``None`` for fields that do not apply; the API layer
formats times and omits the ``None`` keys. ``status`` is the status a record *reads* (reference §1.2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._codec import dumps, loads
from ._payload import present_payload
from .database import Tx

STATUSES = ("pending", "deferred", "sending", "sent", "error")
Cursor = tuple[int, int]  # (priority, seq) of the last record of a page


def _record(tx: Tx, row: Mapping[str, Any]) -> dict[str, Any]:
    status = row["read_status"]
    text = row["payload"]
    if text is None:  # a large payload: read it alone, keep only what a record shows
        text = tx.value("message_payload", {"pk": row["pk"]})
    message = present_payload(tx.box, row["tenant_id"], text)
    message["tenant_id"] = row["tenant_id"]
    message["priority"] = row["priority"]
    if row["account_id"] is not None:
        message["account_id"] = row["account_id"]
    deferred = status == "deferred"
    return {
        "pk": row["pk"],
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "tenant_name": row["tenant_name"],
        "account_id": row["account_id"],
        "priority": row["priority"],
        "seq": row["seq"],
        "status": status,
        "batch_code": row["batch_code"],
        "message_id": row["message_id"],
        "deferred_ts": row["deferred_ts"] if deferred else None,
        "deferred_reason": row["deferred_reason"] if deferred else None,
        "smtp_code": row["smtp_code"],
        "sent_ts": row["sent_ts"] if status == "sent" else None,
        "error_ts": row["error_ts"] if status == "error" else None,
        "error": row["error"] if status == "error" else None,
        "refused_recipients": loads(row["refused_recipients"]),
        "outcome_uncertain": True if row["outcome_uncertain"] else None,
        "bounce_type": row["bounce_type"],
        "bounce_code": row["bounce_code"],
        "bounce_reason": row["bounce_reason"],
        "bounce_ts": row["bounce_ts"],
        "reported_ts": row["reported_ts"],
        "retry_count": row["retry_count"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "message": message,
    }


def _history(tx: Tx, pks: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    history: dict[int, list[dict[str, Any]]] = {pk: [] for pk in pks}
    if not pks:
        return history
    for row in tx.all("message_history", {"pks": dumps(list(pks))}):
        history[row["message_pk"]].append(
            {
                "event_id": row["event_id"],
                "event_type": row["event_type"],
                "event_ts": row["event_ts"],
                "description": row["description"],
                "metadata": loads(row["metadata"], {}),
                "reported_ts": row["reported_ts"],
            }
        )
    return history


def list_messages(
    tx: Tx,
    tenant_id: str,
    now: float,
    *,
    statuses: Iterable[str] | None = None,
    account_id: str | None = None,
    batch_code: str | None = None,
    include_history: bool = False,
    limit: int = 100,
    after: Cursor | None = None,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page of the tenant's records, ordered by priority then arrival sequence.

    ``statuses`` filters by read status (None: all). Returns the records and, when the page is
    full, the cursor to pass as ``after`` for the next page (the API encodes it as a string).
    """
    wanted = None if statuses is None else ",".join(sorted(set(statuses)))
    after_priority, after_seq = after if after is not None else (-1, -1)
    rows = tx.all(
        "message_list",
        {
            "tenant_id": tenant_id,
            "now": now,
            "statuses": wanted,
            "account_id": account_id,
            "batch_code": batch_code,
            "message_key": None,
            "after_priority": after_priority,
            "after_seq": after_seq,
            "limit": int(limit),
            "offset": int(offset),
        },
    )
    records = [_record(tx, row) for row in rows]
    if include_history:
        history = _history(tx, [record["pk"] for record in records])
        for record in records:
            record["history"] = history[record["pk"]]
    cursor = (records[-1]["priority"], records[-1]["seq"]) if len(records) == limit else None
    return records, cursor


def get_message(tx: Tx, tenant_id: str, message_key: str, now: float) -> dict[str, Any] | None:
    """One record with its ``history``, or None."""
    rows = tx.all(
        "message_list",
        {
            "tenant_id": tenant_id,
            "now": now,
            "statuses": None,
            "account_id": None,
            "batch_code": None,
            "message_key": message_key,
            "after_priority": -1,
            "after_seq": -1,
            "limit": 1,
            "offset": 0,
        },
    )
    if not rows:
        return None
    record = _record(tx, rows[0])
    record["history"] = _history(tx, [record["pk"]])[record["pk"]]
    return record


def delete_messages(tx: Tx, tenant_id: str, ids: Sequence[str]) -> dict[str, Any]:
    """Remove the tenant's messages with these ids and their events, except those being sent.

    Returns ``{"removed": n, "not_found": [...], "unauthorized": [], "in_flight": [...]}``.
    """
    found = {
        row["id"]: row
        for row in tx.all("message_status_by_id", {"tenant_id": tenant_id, "ids": dumps(list(ids))})
    }
    removed, not_found, in_flight = 0, [], []
    seen: set[str] = set()
    for message_key in ids:
        if message_key in seen:
            continue
        seen.add(message_key)
        row = found.get(message_key)
        if row is None:
            not_found.append(message_key)
        elif row["status"] == "sending":
            in_flight.append(message_key)
        else:
            removed += tx.execute("message_delete", {"pk": row["pk"]})
    return {"removed": removed, "not_found": not_found, "unauthorized": [], "in_flight": in_flight}


def cleanup_messages(
    tx: Tx, tenant_id: str | None, older_than_seconds: float, now: float, limit: int = 100_000
) -> int:
    """Delete terminal messages fully acknowledged at least ``older_than_seconds`` ago, with
    their events (``tenant_id`` None: every tenant). Returns how many were deleted (at most
    ``limit`` per call)."""
    params = {"tenant_id": tenant_id, "cutoff": now - older_than_seconds, "limit": int(limit)}
    return tx.execute("message_cleanup", params)


def stats(tx: Tx, now: float, tenant_id: str | None = None) -> dict[str, Any]:
    """``{"tenants", "accounts", "messages": {status: count}}`` by read status (reference §5.1)."""
    counts = dict.fromkeys(STATUSES, 0)
    for row in tx.all("message_stats", {"now": now, "tenant_id": tenant_id}):
        counts[row["read_status"]] = int(row["n"])
    return {
        "tenants": int(tx.value("tenant_count", {"tenant_id": tenant_id}) or 0),
        "accounts": int(tx.value("account_count", {"tenant_id": tenant_id}) or 0),
        "messages": counts,
    }


def find_by_header(tx: Tx, message_id: str) -> list[dict[str, Any]]:
    """Messages whose Message-ID header is ``message_id`` (bounce matching, reference §12)."""
    return tx.all("message_by_header", {"message_id": message_id})


def find_by_client_id(tx: Tx, message_key: str) -> list[dict[str, Any]]:
    """Retained messages of any tenant whose client id is ``message_key`` (bounce matching)."""
    return tx.all("message_by_client_id", {"id": message_key})
