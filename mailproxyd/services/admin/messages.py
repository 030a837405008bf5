"""Message use cases (reference §5.3): paged listing, one record with history, removal, cleanup.

Records leave in their wire form (:func:`present_record`); the listing's ``next_cursor`` is
an opaque URL-safe token over the store's ``(priority, seq)`` position.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from mailproxyd.core.limits import is_int_between
from mailproxyd.core.timefmt import iso
from mailproxyd.errors import NotFound, ValidationFailed
from mailproxyd.services.admin._common import mutation, read, require_tenant
from mailproxyd.services.context import ServiceContext
from mailproxyd.store import Tx
from mailproxyd.store import messages as store_messages

_TS_FIELDS = ("deferred_ts", "sent_ts", "error_ts", "bounce_ts", "reported_ts")


def present_record(record: dict[str, Any]) -> dict[str, Any]:
    """A store record in its wire form (reference §5.3): integer Unix times, ISO ``created_at``."""
    out = dict(record)
    out.pop("seq", None)
    out["pk"] = str(out["pk"])
    for name in _TS_FIELDS:
        if out.get(name) is not None:
            out[name] = int(out[name])
    for name in ("created_at", "updated_at"):
        if out.get(name) is not None:
            out[name] = iso(float(out[name]))
    if "history" in out:
        out["history"] = [_present_event(e) for e in out["history"]]
    return out


def _present_event(event: dict[str, Any]) -> dict[str, Any]:
    out = dict(event)
    out["event_ts"] = int(out["event_ts"])
    if out.get("reported_ts") is not None:
        out["reported_ts"] = int(out["reported_ts"])
    if not out.get("metadata"):
        out.pop("metadata", None)
    return out


def encode_cursor(cursor: tuple[int, int]) -> str:
    """The opaque ``next_cursor`` for a store position ``(priority, seq)``."""
    raw = msgspec.json.encode([int(cursor[0]), int(cursor[1])])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> tuple[int, int]:
    """The (priority, seq) of an opaque ``next_cursor``; ``ValidationFailed`` when invalid."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = msgspec.json.decode(raw)
        priority, seq = value
        # The numbers of a cursor are client input like any other: bounded (reference §4.4).
        if not (is_int_between(priority) and is_int_between(seq)):
            raise ValueError(text)
    except (ValueError, TypeError, msgspec.DecodeError):
        raise ValidationFailed([("cursor", "invalid cursor")]) from None
    return priority, seq


def _list_messages(
    tx: Tx, tenant_id: str, now: float, cursor: str | None, **filters: Any
) -> dict[str, Any]:
    require_tenant(tx, tenant_id)
    after = decode_cursor(cursor) if cursor is not None else None
    records, next_cursor = store_messages.list_messages(tx, tenant_id, now, after=after, **filters)
    page: dict[str, Any] = {"messages": [present_record(r) for r in records]}
    if next_cursor is not None:
        page["next_cursor"] = encode_cursor(next_cursor)
    return page


async def list_messages(
    ctx: ServiceContext,
    tenant_id: str,
    *,
    statuses: list[str] | None,
    account_id: str | None,
    batch_code: str | None,
    include_history: bool,
    limit: int,
    cursor: str | None,
    offset: int,
) -> dict[str, Any]:
    """One page of a tenant's messages (reference §5.3): ``{"messages": [...], "next_cursor"?}``."""
    return await read(
        ctx,
        _list_messages,
        tenant_id,
        ctx.now(),
        cursor,
        statuses=statuses,
        account_id=account_id,
        batch_code=batch_code,
        include_history=include_history,
        limit=limit,
        offset=offset,
    )


def _get_message(tx: Tx, tenant_id: str, message_id: str, now: float) -> dict[str, Any]:
    require_tenant(tx, tenant_id)
    found = store_messages.get_message(tx, tenant_id, message_id, now)
    if found is None:
        raise NotFound(
            f"Message '{message_id}' not found for tenant '{tenant_id}'", code="message_not_found"
        )
    return present_record(found)


async def get_message(ctx: ServiceContext, tenant_id: str, message_id: str) -> dict[str, Any]:
    """One record with its history (reference §5.3); ``NotFound`` (``message_not_found``)."""
    return await read(ctx, _get_message, tenant_id, message_id, ctx.now())


def _delete_messages(tx: Tx, tenant_id: str, ids: list[str], *, now: float) -> dict[str, Any]:
    require_tenant(tx, tenant_id)
    result = store_messages.delete_messages(tx, tenant_id, ids)
    return {
        "removed": int(result["removed"]),
        "not_found": list(result["not_found"]),
        "unauthorized": [],
        "in_flight": list(result["in_flight"]),
    }


async def delete_messages(
    ctx: ServiceContext, tenant_id: str, ids: list[str], *, payload: Any = None
) -> dict[str, Any]:
    """Remove a tenant's messages by id with their events; ``sending`` ones are kept (reference §5.3)."""
    return await mutation(
        ctx,
        "deleteMessages",
        tenant_id,
        payload if payload is not None else {"ids": ids},
        _delete_messages,
        tenant_id,
        ids,
    )


def _cleanup(tx: Tx, tenant_id: str, older_than: int, *, now: float) -> int:
    require_tenant(tx, tenant_id)
    return int(store_messages.cleanup_messages(tx, tenant_id, older_than, now))


async def cleanup_messages(
    ctx: ServiceContext, tenant_id: str, older_than_seconds: int | None, *, payload: Any = None
) -> int:
    """Remove fully acknowledged terminal messages older than the threshold (reference §5.3)."""
    older = (
        older_than_seconds
        if older_than_seconds is not None
        else int(ctx.settings.delivery_report_retention_seconds)
    )
    return await mutation(
        ctx,
        "cleanupMessages",
        tenant_id,
        payload if payload is not None else {"older_than_seconds": older_than_seconds},
        _cleanup,
        tenant_id,
        max(0, older),
    )
