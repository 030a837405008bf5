"""Recording events (shared by queue, accounts and bounces).

An event snapshots the message's client id, account, priority and batch code, so its report
item stays right even if the message is replaced or deleted later. Events of a tenant without
``client_base_url`` are acknowledged as they are recorded (reference §13.6).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._codec import dumps
from .database import Tx


def event_row(
    message: Mapping[str, Any],
    event_type: str,
    now: float,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An event for ``message`` (a row with pk, tenant_id, id, account_id, priority, batch_code)."""
    return {
        "message_pk": message["pk"],
        "tenant_id": message["tenant_id"],
        "id": message["id"],
        "account_id": message.get("account_id"),
        "priority": int(message["priority"]),
        "batch_code": message.get("batch_code"),
        "event_type": event_type,
        "event_ts": now,
        "description": description,
        "metadata": dict(metadata or {}),
    }


def error_metadata(row: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """Metadata of a ``sent``/``error`` event: ``retry_count`` when ≥ 1, the given extras that
    are not None, ``outcome_uncertain`` when the row carries it (reference §13.1)."""
    metadata: dict[str, Any] = {}
    if int(row.get("retry_count") or 0) >= 1:
        metadata["retry_count"] = int(row["retry_count"])
    metadata.update({k: v for k, v in extra.items() if v is not None})
    if row.get("outcome_uncertain"):
        metadata["outcome_uncertain"] = True
    return metadata


def record_events(tx: Tx, events: Iterable[dict[str, Any]], now: float) -> int:
    """Insert events (from ``event_row``); return how many were written."""
    rows = list(events)
    if not rows:
        return 0
    unsynced: dict[str, bool] = {}
    for tenant_id in {row["tenant_id"] for row in rows}:
        tenant = tx.one("tenant_urls", {"tenant_id": tenant_id})
        unsynced[tenant_id] = not (tenant and tenant["client_base_url"])
    acked_pks: list[dict[str, Any]] = []
    params = []
    for row in rows:
        auto_ack = unsynced[row["tenant_id"]]
        params.append(
            {**row, "metadata": dumps(row["metadata"]), "reported_ts": now if auto_ack else None}
        )
        if auto_ack:
            acked_pks.append({"message_pk": row["message_pk"], "now": now})
    tx.many("event_insert", params)
    tx.many("message_set_reported", acked_pks)
    return len(params)
