"""Messages: add, list, read, delete, clean up (reference §5.3, §6)."""

from __future__ import annotations

from typing import Any

from quart import Response

from mailproxyd.api import schemas
from mailproxyd.api.auth import Principal, resolve_tenant
from mailproxyd.api.errors import forbidden_tenant
from mailproxyd.api.params import (
    body_int,
    query_bool,
    query_int,
    query_str,
    read_body,
    read_body_raw,
)
from mailproxyd.api.registry import BOOLEAN, TENANT_ID, QueryParam, route
from mailproxyd.api.responses import json_response
from mailproxyd.core.messages import foreign_tenant
from mailproxyd.errors import ValidationFailed
from mailproxyd.services import admin, enqueue, ingest

MAX_OFFSET = 10**9
_STATUSES = ("pending", "deferred", "sending", "sent", "error")


@route(
    "POST",
    "/commands/add-messages",
    role="tenant",
    operation_id="add_messages",
    summary="Queue a batch of messages (partial acceptance)",
    query=(TENANT_ID,),
    body=schemas.AddMessagesIn,
    body_required=True,
    response=schemas.AddMessagesBody,
    errors=(400, 401, 403, 404, 413, 422, 503),
)
async def add_messages(ctx: Any, principal: Principal) -> Response:
    writer = ingest.writer_for(ctx.db)
    # Over capacity already: refused before the body is read or parsed (reference §4.4);
    # ``ingest.Overloaded`` becomes its 503 in ``api.errors.translate``, like every refusal.
    writer.check(ingest.Bounds.of(ctx.settings))
    raw, body = await read_body_raw()
    envelope_tenant = resolve_tenant(principal, body, required=False)
    # reference §4.3: a tenant key naming another tenant in any item refuses the whole request.
    foreign = foreign_tenant(body, None if principal.is_admin else principal.tenant_id)
    if foreign is not None:
        raise forbidden_tenant(foreign)
    outcome = await enqueue.add_messages(
        ctx,
        body,
        caller_tenant=None if principal.is_admin else principal.tenant_id,
        envelope_tenant=envelope_tenant,
        raw=raw,
        writer=writer,
    )
    rejected = outcome.rejected
    if outcome.nothing_queued:
        # The legacy 400 shape (reference §6.8): detail is an object that keeps "error": null.
        return json_response(
            {
                "ok": False,
                "error": "nothing_queued",
                "queued": 0,
                "rejected": rejected,
                "detail": {"error": None, "rejected": rejected},
            },
            400,
            strip=False,
        )
    return json_response({"ok": True, "queued": outcome.queued, "rejected": rejected}, strip=False)


_LIST_QUERY = (
    TENANT_ID,
    QueryParam("status", {"type": "string"}, "comma-separated subset of " + ",".join(_STATUSES)),
    QueryParam("active_only", BOOLEAN, "only pending, deferred and sending"),
    QueryParam("account_id", {"type": "string"}),
    QueryParam("batch_code", {"type": "string"}),
    QueryParam("include_history", BOOLEAN, "add each record's event history"),
    QueryParam("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size"),
    QueryParam("cursor", {"type": "string"}, "next_cursor of the previous page"),
    QueryParam(
        "offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}, "records to skip"
    ),
)


def _status_filter() -> list[str] | None:
    raw = query_str("status")
    statuses: set[str] | None = None
    if raw is not None and raw.strip() != "":
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        bad = [p for p in parts if p not in _STATUSES]
        if bad:
            raise ValidationFailed([("status", f"unknown status: {bad[0]}")])
        statuses = set(parts)
    if query_bool("active_only"):
        active = {"pending", "deferred", "sending"}
        statuses = active if statuses is None else statuses & active
    if statuses is None:
        return None
    return [s for s in _STATUSES if s in statuses]


@route(
    "GET",
    "/messages",
    role="tenant",
    operation_id="list_messages",
    summary="List a tenant's messages, priority then queue order",
    query=_LIST_QUERY,
    response=schemas.MessagesBody,
    errors=(401, 403, 404, 422, 503),
)
async def list_messages(ctx: Any, principal: Principal) -> Response:
    tenant_id = resolve_tenant(principal)
    assert tenant_id is not None
    cursor = query_str("cursor")
    offset = query_int("offset", None, minimum=0, maximum=MAX_OFFSET)
    if cursor is not None and offset is not None:
        raise ValidationFailed([("offset", "cannot be combined with cursor")])
    page = await admin.list_messages(
        ctx,
        tenant_id,
        statuses=_status_filter(),
        account_id=query_str("account_id"),
        batch_code=query_str("batch_code"),
        include_history=query_bool("include_history"),
        limit=query_int("limit", 100, minimum=1, maximum=1000) or 100,
        cursor=cursor,
        offset=offset or 0,
    )
    return json_response({"ok": True, **page})


@route(
    "GET",
    "/message/{id}",
    role="tenant",
    operation_id="get_message",
    summary="One message record with its history",
    query=(TENANT_ID,),
    response=schemas.MessageRecord,
    errors=(401, 403, 404, 422, 503),
    path_converters={"id": "path"},
)
async def get_message(ctx: Any, principal: Principal, id: str) -> Response:
    tenant_id = resolve_tenant(principal)
    assert tenant_id is not None
    return json_response(await admin.get_message(ctx, tenant_id, id))


@route(
    "POST",
    "/commands/delete-messages",
    role="tenant",
    operation_id="delete_messages",
    summary="Delete messages by id, with their events",
    query=(TENANT_ID,),
    body=schemas.DeleteMessagesIn,
    body_required=True,
    response=schemas.DeleteMessagesBody,
    errors=(400, 401, 403, 404, 413, 422, 503),
)
async def delete_messages(ctx: Any, principal: Principal) -> Response:
    body = await read_body()
    tenant_id = resolve_tenant(principal, body)
    assert tenant_id is not None
    ids = body.get("ids")
    if ids is None:
        raise ValidationFailed([("ids", "required")])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValidationFailed([("ids", "must be a list of strings")])
    result = await admin.delete_messages(ctx, tenant_id, ids, payload=body)
    return json_response({"ok": True, **result})


@route(
    "POST",
    "/commands/cleanup-messages",
    role="tenant",
    operation_id="cleanup_messages",
    summary="Remove fully reported sent/error messages older than a threshold",
    query=(TENANT_ID,),
    body=schemas.CleanupIn,
    response=schemas.RemovedBody,
    errors=(400, 401, 403, 404, 413, 422, 503),
)
async def cleanup_messages(ctx: Any, principal: Principal) -> Response:
    body = await read_body(optional=True)
    tenant_id = resolve_tenant(principal, body)
    assert tenant_id is not None
    older = body_int(body, "older_than_seconds")
    removed = await admin.cleanup_messages(ctx, tenant_id, older, payload=body)
    return json_response({"ok": True, "removed": removed})
