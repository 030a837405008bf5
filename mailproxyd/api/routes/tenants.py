"""Tenants, their API keys and their sync state (reference §5.5)."""

from __future__ import annotations

from typing import Any

from quart import Response

from mailproxyd.api import schemas
from mailproxyd.api.auth import Principal, check_path_tenant, resolve_tenant
from mailproxyd.api.errors import admin_required
from mailproxyd.api.params import body_int, query_bool, read_body
from mailproxyd.api.registry import BOOLEAN, TENANT_ID, QueryParam, route
from mailproxyd.api.responses import json_response
from mailproxyd.errors import ValidationFailed
from mailproxyd.services import admin


@route(
    "POST",
    "/tenant",
    role="admin",
    operation_id="put_tenant",
    summary="Create a tenant (its API key is shown once), or replace one",
    body=schemas.TenantIn,
    body_required=True,
    response=schemas.TenantCreatedBody,
    errors=(400, 401, 403, 413, 422, 503),
)
async def create_tenant(ctx: Any, principal: Principal) -> Response:
    body = await read_body()
    return json_response({"ok": True, **await admin.create_tenant(ctx, body)})


@route(
    "GET",
    "/tenants",
    role="admin",
    operation_id="list_tenants",
    summary="Every tenant, ordered by id",
    query=(QueryParam("active_only", BOOLEAN, "only active tenants"),),
    response=schemas.TenantsBody,
    errors=(401, 403, 422, 503),
)
async def list_tenants(ctx: Any, principal: Principal) -> Response:
    tenants = await admin.list_tenants(ctx, active_only=query_bool("active_only"))
    return json_response({"ok": True, "tenants": tenants})


@route(
    "GET",
    "/tenants/sync-status",
    role="tenant",
    operation_id="sync_status",
    summary="Delivery-report state per tenant (a tenant key sees only itself)",
    query=(TENANT_ID,),
    response=schemas.SyncStatusBody,
    errors=(401, 403, 404, 503),
)
async def sync_status(ctx: Any, principal: Principal) -> Response:
    tenant_id = resolve_tenant(principal, required=False)
    return json_response({"ok": True, **await admin.sync_status(ctx, tenant_id)})


@route(
    "GET",
    "/tenant/{id}",
    role="tenant",
    operation_id="get_tenant",
    summary="One tenant (secrets shown as *_set flags)",
    response=schemas.Tenant,
    errors=(401, 403, 404, 503),
)
async def get_tenant(ctx: Any, principal: Principal, id: str) -> Response:
    check_path_tenant(principal, id)
    return json_response(await admin.get_tenant(ctx, id))


@route(
    "PUT",
    "/tenant/{id}",
    role="tenant",
    operation_id="update_tenant",
    summary="Partial update of a tenant (changing 'active' needs the admin token)",
    body=schemas.TenantPatch,
    body_required=True,
    response=schemas.OkBody,
    errors=(400, 401, 403, 404, 413, 422, 503),
)
async def update_tenant(ctx: Any, principal: Principal, id: str) -> Response:
    check_path_tenant(principal, id)
    body = await read_body()
    if "active" in body and not principal.is_admin:
        # Sending back a GET body unchanged is fine; changing the flag is the admin's.
        current = await admin.get_tenant(ctx, id)
        if body["active"] != current.get("active"):
            raise admin_required()
    if "id" in body and body["id"] != id:
        raise ValidationFailed([("id", "cannot be changed")])
    await admin.update_tenant(ctx, id, body, by_tenant=not principal.is_admin)
    return json_response({"ok": True})


@route(
    "DELETE",
    "/tenant/{id}",
    role="admin",
    operation_id="delete_tenant",
    summary="Delete a tenant with its key, accounts, messages and events",
    response=schemas.OkBody,
    errors=(401, 403, 404, 503),
)
async def delete_tenant(ctx: Any, principal: Principal, id: str) -> Response:
    await admin.delete_tenant(ctx, id)
    return json_response({"ok": True})


@route(
    "POST",
    "/tenant/{id}/api-key",
    role="admin",
    operation_id="issue_api_key",
    summary="Issue a new API key (the previous one stops working at once)",
    body=schemas.ApiKeyIn,
    response=schemas.ApiKeyBody,
    errors=(400, 401, 403, 404, 413, 422, 503),
)
async def issue_api_key(ctx: Any, principal: Principal, id: str) -> Response:
    body = await read_body(optional=True)
    expires_at = body_int(body, "expires_at")
    return json_response({"ok": True, **await admin.issue_api_key(ctx, id, expires_at)})


@route(
    "DELETE",
    "/tenant/{id}/api-key",
    role="admin",
    operation_id="revoke_api_key",
    summary="Revoke the tenant's API key",
    response=schemas.OkBody,
    errors=(401, 403, 404, 503),
)
async def revoke_api_key(ctx: Any, principal: Principal, id: str) -> Response:
    await admin.revoke_api_key(ctx, id)
    return json_response({"ok": True})
