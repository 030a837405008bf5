"""SMTP accounts of a tenant (reference §5.4)."""

from __future__ import annotations

from typing import Any

from quart import Response

from mailproxyd.api import schemas
from mailproxyd.api.auth import Principal, resolve_tenant
from mailproxyd.api.params import read_body
from mailproxyd.api.registry import TENANT_ID, route
from mailproxyd.api.responses import json_response
from mailproxyd.services import admin


@route(
    "POST",
    "/account",
    role="tenant",
    operation_id="put_account",
    summary="Create an account, or replace an existing one",
    query=(TENANT_ID,),
    body=schemas.AccountIn,
    body_required=True,
    response=schemas.CreatedBody,
    errors=(400, 401, 403, 404, 413, 422, 503),
)
async def create_account(ctx: Any, principal: Principal) -> Response:
    body = await read_body()
    tenant_id = resolve_tenant(principal, body)
    assert tenant_id is not None
    created = await admin.create_account(ctx, tenant_id, body, by_tenant=not principal.is_admin)
    return json_response({"ok": True, "created": created})


@route(
    "GET",
    "/accounts",
    role="tenant",
    operation_id="list_accounts",
    summary="A tenant's accounts, ordered by id",
    query=(TENANT_ID,),
    response=schemas.AccountsBody,
    errors=(401, 403, 404, 422, 503),
)
async def list_accounts(ctx: Any, principal: Principal) -> Response:
    tenant_id = resolve_tenant(principal)
    assert tenant_id is not None
    return json_response({"ok": True, "accounts": await admin.list_accounts(ctx, tenant_id)})


@route(
    "GET",
    "/account/{id}",
    role="tenant",
    operation_id="get_account",
    summary="One account",
    query=(TENANT_ID,),
    response=schemas.Account,
    errors=(401, 403, 404, 422, 503),
)
async def get_account(ctx: Any, principal: Principal, id: str) -> Response:
    tenant_id = resolve_tenant(principal)
    assert tenant_id is not None
    return json_response(await admin.get_account(ctx, tenant_id, id))


@route(
    "PUT",
    "/account/{id}",
    role="tenant",
    operation_id="update_account",
    summary="Partial update of an account (null returns a field to its default)",
    query=(TENANT_ID,),
    body=schemas.AccountPatch,
    body_required=True,
    response=schemas.OkBody,
    errors=(400, 401, 403, 404, 413, 422, 503),
)
async def update_account(ctx: Any, principal: Principal, id: str) -> Response:
    body = await read_body()
    tenant_id = resolve_tenant(principal, body)
    assert tenant_id is not None
    await admin.update_account(ctx, tenant_id, id, body, by_tenant=not principal.is_admin)
    return json_response({"ok": True})


@route(
    "DELETE",
    "/account/{id}",
    role="tenant",
    operation_id="delete_account",
    summary="Delete an account; its queued messages fail with 'account deleted'",
    query=(TENANT_ID,),
    response=schemas.FailedMessagesBody,
    errors=(401, 403, 404, 422, 503),
)
async def delete_account(ctx: Any, principal: Principal, id: str) -> Response:
    tenant_id = resolve_tenant(principal)
    assert tenant_id is not None
    failed = await admin.delete_account(ctx, tenant_id, id)
    return json_response({"ok": True, "failed_messages": failed})
