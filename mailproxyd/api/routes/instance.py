"""Instance settings and the bounce mailbox (reference §5.6)."""

from __future__ import annotations

from typing import Any

from quart import Response

from mailproxyd.api import schemas
from mailproxyd.api.auth import Principal
from mailproxyd.api.params import read_body
from mailproxyd.api.registry import route
from mailproxyd.api.responses import json_response
from mailproxyd.services import admin


@route(
    "GET",
    "/instance",
    role="admin",
    operation_id="get_instance",
    summary="Instance name, version and bounce settings",
    response=schemas.Instance,
    errors=(401, 403, 503),
)
async def get_instance(ctx: Any, principal: Principal) -> Response:
    return json_response(await admin.get_instance(ctx))


@route(
    "PUT",
    "/instance",
    role="admin",
    operation_id="update_instance",
    summary="Partial update of the instance name and bounce settings",
    body=schemas.InstancePatch,
    body_required=True,
    response=schemas.OkBody,
    errors=(400, 401, 403, 413, 422, 503),
)
async def update_instance(ctx: Any, principal: Principal) -> Response:
    body = await read_body()
    await admin.update_instance(ctx, body)
    return json_response({"ok": True})


@route(
    "POST",
    "/instance/reload-bounce",
    role="admin",
    operation_id="reload_bounce",
    summary="Restart the bounce poller with the stored settings",
    response=schemas.OkBody,
    errors=(401, 403, 503),
)
async def reload_bounce(ctx: Any, principal: Principal) -> Response:
    await admin.reload_bounce(ctx)
    return json_response({"ok": True})
