"""The command log of state-changing requests (reference §5.7).

Payloads arrive already redacted by the caller (secrets ``"***"``, base64 data summarised).
"""

from __future__ import annotations

from typing import Any

from ._codec import dumps, loads
from .database import Tx

EXPORT_LIMIT = 100_000


def append(
    tx: Tx,
    now: float,
    endpoint: str,
    tenant_id: str | None,
    payload: Any,
    response_status: int | None,
    *,
    encoded: str | None = None,
) -> int:
    """Add an entry; returns its id.

    ``encoded``: the payload's JSON text when the caller already has it (the request body
    as received), stored as it is instead of encoding ``payload`` again.
    """
    params = {
        "now": now,
        "endpoint": endpoint,
        "tenant_id": tenant_id,
        "payload": dumps(payload) if encoded is None else encoded,
        "response_status": response_status,
    }
    return int(tx.value("command_insert", params))


def _decode(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["payload"] = loads(row["payload"])
    return rows


def list_commands(
    tx: Tx,
    *,
    tenant_id: str | None = None,
    since_ts: float | None = None,
    until_ts: float | None = None,
    endpoint_filter: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Entries newest first: ``id``, ``command_ts``, ``endpoint``, ``tenant_id``, ``payload``,
    ``response_status``."""
    params = {
        "tenant_id": tenant_id,
        "since_ts": since_ts,
        "until_ts": until_ts,
        "endpoint_filter": endpoint_filter or None,
        "limit": int(limit),
        "offset": int(offset),
    }
    return _decode(tx.all("command_list", params))


def export(
    tx: Tx,
    *,
    tenant_id: str | None = None,
    since_ts: float | None = None,
    until_ts: float | None = None,
    limit: int = EXPORT_LIMIT,
) -> list[dict[str, Any]]:
    """Entries oldest first, at most ``limit`` (100 000)."""
    params = {"tenant_id": tenant_id, "since_ts": since_ts, "until_ts": until_ts, "limit": limit}
    return _decode(tx.all("command_export", params))


def purge(tx: Tx, before: float) -> int:
    """Delete entries older than ``before``; returns how many."""
    return tx.execute("command_purge", {"before": before})
