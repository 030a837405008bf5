"""The live event stream ``GET /events`` (contract §5.9).

Events are recorded by sender and reporter processes, possibly on other nodes, so the
stream tails the events table by id instead of listening to anything in-process. The
handler authenticates (and scopes) before accepting the upgrade, so failures are plain
JSON HTTP answers. Pings every 20 s are sent by hypercorn
(``websocket_ping_interval``), which the api worker configures.
"""

from __future__ import annotations

from typing import Any

import msgspec
import trio
from quart import Response, websocket

from mailproxyd.api import schemas
from mailproxyd.api.auth import Principal, resolve_tenant
from mailproxyd.api.errors import ApiError, translate
from mailproxyd.api.registry import TENANT_ID, route
from mailproxyd.errors import DatabaseUnavailable
from mailproxyd.services import admin

POLL_SECONDS = 0.5
BATCH = 500
# Open streams one node holds at most (§5.9); the next upgrade is refused with a 503.
MAX_STREAMS = 1000
_open_streams = 0

_encoder = msgspec.json.Encoder()


@route(
    "GET",
    "/events",
    role="tenant",
    operation_id="events",
    summary="WebSocket: live delivery events (report items plus tenant_id)",
    query=(TENANT_ID,),
    errors=(401, 403, 404, 426, 503),
    websocket=True,
)
async def events(ctx: Any, principal: Principal) -> Response | None:
    tenant_id = resolve_tenant(principal, required=False)
    if tenant_id is not None:
        await admin.get_tenant(ctx, tenant_id)  # 404 for an unknown tenant, before the upgrade
    global _open_streams
    if _open_streams >= MAX_STREAMS:
        raise ApiError(503, "unavailable", "Too many event streams")
    # Live only: start after the newest event at connection time.
    last_id = await admin.latest_event_id(ctx)
    _open_streams += 1
    try:
        await websocket.accept()
        await _stream(ctx, tenant_id, last_id)
    except Exception as exc:
        # After the upgrade only a close code can tell the client that something broke.
        err = translate(exc, ctx.log)
        await websocket.close(1011, err.code)
    finally:
        _open_streams -= 1
    return None


async def _stream(ctx: Any, tenant_id: str | None, last_id: int) -> None:
    while True:
        try:
            frames, last_id = await admin.events_after(ctx, last_id, tenant_id, limit=BATCH)
        except DatabaseUnavailable:
            # A database outage is expected to pass: keep the stream, resume where it was.
            frames = []
        for frame in frames:
            await websocket.send(_encoder.encode(frame).decode("utf-8"))
        if len(frames) < BATCH:
            await trio.sleep(POLL_SECONDS)


@route(
    "GET",
    "/events",
    role="tenant",
    operation_id="events_plain",
    summary="Plain GET on the WebSocket endpoint",
    query=(TENANT_ID,),
    response=schemas.ErrorBody,
    errors=(401, 403, 426),
)
async def events_without_upgrade(ctx: Any, principal: Principal) -> Response:
    resolve_tenant(principal, required=False)
    raise ApiError(426, "upgrade_required", "GET /events is a WebSocket endpoint: send an Upgrade")
