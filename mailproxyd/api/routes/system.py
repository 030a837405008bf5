"""Health, status, stats, metrics, the OpenAPI document and downloads (reference §5.1, §5.8, §14)."""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from quart import Response, current_app, request

from mailproxyd.api import schemas
from mailproxyd.api.auth import Principal, resolve_tenant
from mailproxyd.api.errors import ApiError, unauthorized
from mailproxyd.api.registry import TENANT_ID, route
from mailproxyd.api.responses import JSON_CONTENT_TYPE, json_body, json_response
from mailproxyd.core.crypto import tokens_equal
from mailproxyd.services import admin
from mailproxyd.services.attachments import downloads

log = logging.getLogger("mailproxyd.api.auth")

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@route(
    "GET",
    "/health",
    role="public",
    operation_id="health",
    summary="Liveness: the API process reaches the database",
    response=schemas.HealthBody,
    errors=(503,),
)
async def health(ctx: Any, principal: Principal) -> Response:
    status, payload = await health_answer(ctx)
    return Response(payload, status=status, content_type=JSON_CONTENT_TYPE)


_HEALTHY = json_body({"status": "ok"})
# The one 503 of the reference without the usual error keys (reference §4.4, §5.1).
_UNHEALTHY = json_body({"status": "unavailable", "detail": "database unreachable"})


async def health_answer(ctx: Any) -> tuple[int, bytes]:
    """Status and body of ``/health`` (also served ahead of Quart: ``api.app.HealthFirst``)."""
    if await admin.database_reachable(ctx):
        return 200, _HEALTHY
    return 503, _UNHEALTHY


@route(
    "GET",
    "/status",
    role="tenant",
    operation_id="status",
    summary="Scheduler and node state",
    response=schemas.StatusBody,
    errors=(401, 503),
)
async def status(ctx: Any, principal: Principal) -> Response:
    return json_response({"ok": True, **await admin.status(ctx)})


@route(
    "GET",
    "/stats",
    role="tenant",
    operation_id="stats",
    summary="Tenant, account and message counts",
    query=(TENANT_ID,),
    response=schemas.StatsBody,
    errors=(401, 403, 404, 503),
)
async def stats(ctx: Any, principal: Principal) -> Response:
    tenant_id = resolve_tenant(principal, required=False)
    return json_response({"ok": True, **await admin.stats(ctx, tenant_id)})


def _metrics_authorized(ctx: Any) -> bool:
    """reference §14: public unless ``GMP_METRICS_TOKEN`` is set; then it or the admin token."""
    metrics_token = getattr(ctx.settings, "metrics_token", None) or ""
    if not metrics_token:
        return True
    offered = [request.headers.get("X-API-Token") or ""]
    bearer = request.headers.get("Authorization") or ""
    if bearer[:7].lower() == "bearer ":
        offered.append(bearer[7:].strip())
    admin_token = getattr(ctx.settings, "api_token", None) or ""
    accepted = [metrics_token, *([admin_token] if admin_token else [])]
    # Every comparison runs, so the time taken says nothing about which one matched.
    matches = [tokens_equal(o, t) for o in offered if o for t in accepted]
    return any(matches)


@route(
    "GET",
    "/metrics",
    role="public",
    operation_id="metrics",
    summary="Prometheus metrics (token required when GMP_METRICS_TOKEN is set)",
    response={"type": "string"},
    errors=(401,),
)
async def metrics(ctx: Any, principal: Principal) -> Response:
    if not _metrics_authorized(ctx):
        # Never the token itself (reference §4.2): where the attempt came from and what it wanted.
        log.info(
            "authentication failed (metrics token): remote=%s route=GET /metrics",
            request.remote_addr,
        )
        raise unauthorized()
    from mailproxyd.api.metrics_text import render

    return Response(await render(ctx), status=200, content_type=METRICS_CONTENT_TYPE)


@route(
    "GET",
    "/openapi.json",
    role="public",
    operation_id="openapi",
    summary="This API's OpenAPI 3.1 document",
    response={"type": "object"},
)
async def openapi(ctx: Any, principal: Principal) -> Response:
    # The application holds the document's builder (``api.app``): no import of it from here.
    document: Callable[[], bytes] = current_app.config["OPENAPI_DOCUMENT"]
    return Response(document() + b"\n", status=200, content_type="application/json; charset=utf-8")


@route(
    "GET",
    "/download/{token}/{filename}",
    role="public",
    operation_id="download",
    summary="A large-file attachment behind a signed link",
    response={"type": "string", "format": "binary"},
    errors=(404, 410),
)
async def download(ctx: Any, principal: Principal, token: str, filename: str) -> Response:
    try:
        found = await downloads.open_download(
            ctx.db, ctx.instance_key, token, filename, now=ctx.now()
        )
    except downloads.LinkInvalid:
        raise ApiError(404, "not_found", "Download link not found") from None
    except downloads.LinkExpired:
        raise ApiError(410, "expired", "Download link expired") from None
    content_type, _ = mimetypes.guess_type(found.filename, strict=False)
    headers = {
        "Content-Disposition": _disposition(found.filename),
        "Content-Length": str(found.size),
        "Cache-Control": f"private, max-age={found.max_age}",
    }
    body = b"" if request.method == "HEAD" else found.chunks()
    response = Response(
        body,
        status=200,
        content_type=content_type or "application/octet-stream",
        headers=headers,
    )
    # A HEAD answer has no body but announces the length of the GET one (reference §5.8).
    response.headers["Content-Length"] = str(found.size)
    return response


def _disposition(filename: str) -> str:
    """``attachment; filename="<ascii>"; filename*=UTF-8''<percent-encoded>`` (reference §5.8)."""
    plain = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"
