"""Commands: run-now, suspend and activate (reference §5.2)."""

from __future__ import annotations

from typing import Any

from quart import Response

from mailproxyd.api import schemas
from mailproxyd.api.auth import Principal, resolve_tenant
from mailproxyd.api.params import merged_param, read_body
from mailproxyd.api.registry import BATCH_CODE, TENANT_ID, route
from mailproxyd.api.responses import json_response
from mailproxyd.core.ids import BATCH_CODE_PROBLEM, is_batch_code
from mailproxyd.errors import ValidationFailed
from mailproxyd.services import admin

_SUSPEND_RESPONSE = {
    "oneOf": [
        {"$ref": "#/components/schemas/SuspendBody"},
        {"$ref": "#/components/schemas/SchedulerStateBody"},
    ]
}


@route(
    "POST",
    "/commands/run-now",
    role="tenant",
    operation_id="run_now",
    summary="Wake every sender and reporter now (one cycle in test mode)",
    query=(TENANT_ID,),
    body=schemas.CommandParams,
    response=schemas.RunNowBody,
    errors=(400, 401, 403, 404, 413, 422, 503),
)
async def run_now(ctx: Any, principal: Principal) -> Response:
    body = await read_body(optional=True)
    tenant_id = resolve_tenant(principal, body, required=False)
    await admin.run_now(ctx, tenant_id)
    return json_response({"ok": True, "triggered": True})


async def _suspension(ctx: Any, principal: Principal, *, suspend: bool) -> Response:
    body = await read_body(optional=True)
    tenant_id = resolve_tenant(principal, body, required=False)
    batch_code = merged_param("batch_code", body)
    if batch_code is not None and not is_batch_code(batch_code):
        raise ValidationFailed([("batch_code", BATCH_CODE_PROBLEM)])
    if tenant_id is None:
        if batch_code is not None:
            raise ValidationFailed([("tenant_id", "required")])
        active = await admin.set_scheduler_active(ctx, not suspend)
        return json_response({"ok": True, "scheduler_active": active, "active": active})
    fn = admin.suspend if suspend else admin.activate
    state = await fn(ctx, tenant_id, batch_code)
    return json_response({"ok": True, **state})


@route(
    "POST",
    "/commands/suspend",
    role="tenant",
    operation_id="suspend",
    summary="Suspend dispatch: globally (admin), a tenant, or one batch",
    query=(TENANT_ID, BATCH_CODE),
    body=schemas.CommandParams,
    response=_SUSPEND_RESPONSE,
    errors=(400, 401, 403, 404, 413, 422, 503),
)
async def suspend(ctx: Any, principal: Principal) -> Response:
    return await _suspension(ctx, principal, suspend=True)


@route(
    "POST",
    "/commands/activate",
    role="tenant",
    operation_id="activate",
    summary="Resume dispatch: globally (admin), a tenant, or one batch",
    query=(TENANT_ID, BATCH_CODE),
    body=schemas.CommandParams,
    response=_SUSPEND_RESPONSE,
    errors=(400, 401, 403, 404, 409, 413, 422, 503),
)
async def activate(ctx: Any, principal: Principal) -> Response:
    return await _suspension(ctx, principal, suspend=False)
