"""The live event stream ``GET /events`` (reference §5.9).

Events are recorded by sender and reporter processes, possibly on other nodes, so the
streams are fed from the events table, tailed by one shared poller per api worker
(``api.eventhub``), which also caps the open streams (503 above it). The
handler authenticates (and scopes) before accepting the upgrade, so failures are plain
JSON HTTP answers. Pings every 20 s are sent by hypercorn
(``websocket_ping_interval``), which the api worker configures.
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Response, websocket

from mailproxyd.api import schemas
from mailproxyd.api.auth import Principal, resolve_tenant
from mailproxyd.api.errors import ApiError, translate
from mailproxyd.api.eventhub import EventHub, Stream, TooManyStreams, hub_for
from mailproxyd.api.registry import TENANT_ID, route
from mailproxyd.drivers import metrics
from mailproxyd.services import admin

_encoder = msgspec.json.Encoder()


def _hub(ctx: Any) -> EventHub:
    return hub_for(
        ctx,
        lambda: EventHub(
            lambda after, limit: admin.frames_after(ctx, after, limit=limit),
            lambda: admin.latest_event_id(ctx),
            ctx.log,
        ),
    )


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
    hub = _hub(ctx)
    try:
        # Live only: the stream starts after the newest event at connection time.
        stream = await hub.subscribe(tenant_id)
    except TooManyStreams:
        # Answered before the upgrade like every refusal (503 with Retry-After: 5).
        raise ApiError(503, "unavailable", "Too many event streams") from None
    try:
        await websocket.accept()
        # The request's HTTP answer is the 101: counted now, not when the stream ends (reference §14).
        metrics.http_request("/events", 101)
        await _stream(stream)
    except Exception as exc:
        # After the upgrade only a close code can tell the client that something broke.
        err = translate(exc, ctx.log)
        await websocket.close(1011, err.code)
    finally:
        hub.unsubscribe(stream)
    return None


async def _stream(stream: Stream) -> None:
    async for frame in stream.receive:
        await websocket.send(_encoder.encode(frame).decode("utf-8"))
    if stream.overflowed:
        await websocket.close(1008, "client too slow")


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
