"""The command log (reference §5.7)."""

from __future__ import annotations

from typing import Any

from quart import Response

from mailproxyd.api import schemas
from mailproxyd.api.auth import Principal
from mailproxyd.api.params import MAX_INT, query_int, query_str
from mailproxyd.api.registry import QueryParam, route
from mailproxyd.api.responses import json_response
from mailproxyd.services import admin

_TS = {"type": "integer", "minimum": 0, "maximum": MAX_INT}
_MAX_OFFSET = 10**9
_FILTERS = (
    QueryParam("tenant_id", {"type": "string"}),
    QueryParam("since_ts", _TS, "entries at or after this Unix time"),
    QueryParam("until_ts", _TS, "entries at or before this Unix time"),
)


def _filters() -> dict[str, Any]:
    return {
        "tenant_id": query_str("tenant_id"),
        "since_ts": query_int("since_ts", None),
        "until_ts": query_int("until_ts", None),
    }


@route(
    "GET",
    "/command-log",
    role="admin",
    operation_id="command_log",
    summary="State-changing requests and their outcome (secrets redacted)",
    query=(
        *_FILTERS,
        QueryParam("endpoint_filter", {"type": "string"}, "substring of the endpoint name"),
        QueryParam("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
        QueryParam("offset", {"type": "integer", "minimum": 0, "maximum": _MAX_OFFSET}),
    ),
    response=schemas.CommandLogBody,
    errors=(401, 403, 422, 503),
)
async def command_log(ctx: Any, principal: Principal) -> Response:
    commands = await admin.command_log(
        ctx,
        **_filters(),
        endpoint_filter=query_str("endpoint_filter"),
        limit=query_int("limit", 100, minimum=1, maximum=1000) or 100,
        offset=query_int("offset", 0, minimum=0, maximum=_MAX_OFFSET) or 0,
    )
    return json_response({"ok": True, "total": len(commands), "commands": commands})


@route(
    "GET",
    "/command-log/export",
    role="admin",
    operation_id="command_log_export",
    summary="Up to 100,000 command-log entries, oldest first",
    query=_FILTERS,
    response=schemas.CommandExportBody,
    errors=(401, 403, 422, 503),
)
async def command_log_export(ctx: Any, principal: Principal) -> Response:
    return json_response(
        {"ok": True, "commands": await admin.command_log_export(ctx, **_filters())}
    )
