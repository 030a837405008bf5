"""The QuartTrio application of the api worker.

``create_app(ctx)`` mounts every route of :data:`mailproxyd.api.registry.ROUTES`
behind one wrapper that enforces the request-size limit and authentication, and
installs the error handlers that give every failure the JSON shape of reference §4.4.
The handlers themselves stay thin: parse, call a service, shape the answer.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from quart import Response, request, websocket
from quart.typing import ResponseTypes
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Rule

from mailproxyd.api import errors as api_errors
from mailproxyd.api.auth import authenticate
from mailproxyd.api.openapi import document_bytes
from mailproxyd.api.params import check_nul_free
from mailproxyd.api.registry import ROUTES, RouteSpec
from mailproxyd.api.responses import JSON_CONTENT_TYPE, json_body, json_response
from mailproxyd.api.routes import load_all
from mailproxyd.api.routes.system import health_answer
from mailproxyd.drivers import metrics
from mailproxyd.services.admin import ACTOR

MIB = 1024 * 1024

#: Seconds a request body may take to arrive once the headers are in; then 408 (reference §4.4).
BODY_TIMEOUT_SECONDS = 10


class _HTTPConnection(TrioASGIHTTPConnection):
    """Quart-trio's HTTP connection with the response sent under a shield.

    When a request is answered before its body has arrived (a 401 on the headers), hypercorn
    closes the connection from inside the final send, and Quart's body reader, told of the
    disconnect, cancels that send: the close was lost and the connection stayed open until
    the client gave up. Shielded in that case (and still bounded by ``RESPONSE_TIMEOUT``),
    the send and the close complete.
    """

    async def handle_request(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Any, send: Any
    ) -> None:
        response = await self.app.handle_request(request)
        timeout = getattr(response, "timeout", Ellipsis)
        if timeout is Ellipsis:
            timeout = self.app.config["RESPONSE_TIMEOUT"]
        complete = getattr(request.body, "_complete", None)
        shield = complete is not None and not complete.is_set()  # answered before the body
        with trio.CancelScope(shield=shield), trio.move_on_after(timeout or math.inf):
            await self._send_response(send, response)
        nursery.cancel_scope.cancel()


def _max_request_bytes(ctx: Any) -> int:
    return int(getattr(ctx.settings, "max_request_mb", 20)) * MIB


def _werkzeug_rule(spec: RouteSpec) -> str:
    """``/tenant/{id}`` → ``/tenant/<id>`` (with the route's converters, e.g. ``path``)."""
    rule = spec.path
    for name in _path_names(spec.path):
        conv = spec.path_converters.get(name)
        rule = rule.replace("{" + name + "}", f"<{conv}:{name}>" if conv else f"<{name}>")
    return rule


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _http_view(ctx: Any, spec: RouteSpec, app: QuartTrio) -> Any:
    async def view(**path: str) -> Response:
        limit = _max_request_bytes(ctx)
        # The limit can change at reload; Quart reads it when the next request is built.
        app.config["MAX_CONTENT_LENGTH"] = limit
        if request.content_length is not None and request.content_length > limit:
            raise api_errors.request_too_large(limit // MIB)
        principal = await authenticate(ctx, spec.role)
        check_nul_free(path)
        who = "admin" if principal.is_admin else f"tenant {principal.tenant_id}"
        ACTOR.set(f"api {who} from {request.remote_addr}")
        result: Response = await spec.handler(ctx, principal, **path)
        return result

    view.__name__ = f"{spec.operation_id}_{spec.method.lower()}"
    return view


def _ws_view(ctx: Any, spec: RouteSpec) -> Any:
    async def view(**path: str) -> Any:
        try:
            principal = await authenticate(ctx, spec.role)
            check_nul_free(path)
            return await spec.handler(ctx, principal, **path)
        except Exception as exc:
            # Raised before the upgrade (the handler owns everything after its accept):
            # a plain JSON HTTP answer (reference §5.9).
            err = api_errors.translate(exc, _logger(ctx))
            return _error_response(err)

    view.__name__ = f"{spec.operation_id}_ws"
    return view


def _logger(ctx: Any) -> logging.Logger:
    logger = getattr(ctx, "log", None)
    return logger if isinstance(logger, logging.Logger) else logging.getLogger("mailproxyd.api")


def create_app(ctx: Any) -> QuartTrio:
    """The HTTP API application bound to a worker context (settings, database, link)."""
    load_all()
    app = QuartTrio("mailproxyd.api")
    # Served by ``routes.system``, which must not import the document's builder (that would
    # close the cycle openapi → routes → openapi).
    app.config["OPENAPI_DOCUMENT"] = document_bytes
    app.asgi_http_class = _HTTPConnection
    app.config["MAX_CONTENT_LENGTH"] = _max_request_bytes(ctx)
    app.config["BODY_TIMEOUT"] = BODY_TIMEOUT_SECONDS
    # JSON is parsed by us (msgspec), whatever the Content-Type; Quart must not reject
    # or redirect anything on its own.
    app.url_map.strict_slashes = False
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    logger = _logger(ctx)

    for spec in ROUTES:
        rule = _werkzeug_rule(spec)
        if spec.websocket:
            app.add_websocket(
                rule, endpoint=f"{spec.operation_id}_ws", view_func=_ws_view(ctx, spec)
            )
        else:
            app.add_url_rule(
                rule,
                endpoint=f"{spec.operation_id}_{spec.method.lower()}",
                view_func=_http_view(ctx, spec, app),
                methods=[spec.method],
                provide_automatic_options=False,
            )

    async def on_http_exception(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 404:
            err = api_errors.ApiError(404, "not_found", f"No route for {_method()} {_path()}")
        elif code == 405:
            err = api_errors.ApiError(
                405, "method_not_allowed", f"Method {_method()} not allowed for {_path()}"
            )
        elif code == 413:
            err = api_errors.request_too_large(_max_request_bytes(ctx) // MIB)
        elif code == 408:
            err = api_errors.ApiError(408, "request_timeout", "Request body not received in time")
        elif 400 <= code < 500:
            err = api_errors.ApiError(code, "bad_request", exc.description or "Bad request")
        else:
            err = api_errors.translate(exc, logger)
        return _error_response(err)

    async def on_exception(exc: Exception) -> Response:
        return _error_response(api_errors.translate(exc, logger))

    async def drain_body(response: Response) -> Response:
        # A request answered before its body was read (401, 404, …) must still have the
        # body consumed, or the next request on the same keep-alive connection stalls. A
        # refusal never waits for a body still on its way (a bad token gets its 401 at once):
        # the connection is closed after the answer instead.
        if response.headers.get("Connection") == "close":
            return response
        if response.status_code >= 400 and not _body_complete():
            response.headers["Connection"] = "close"
            return response
        try:
            await request.get_data()
        except HTTPException:
            response.headers["Connection"] = "close"
        return response

    templates = {
        f"{spec.operation_id}_{spec.method.lower()}": spec.path
        for spec in ROUTES
        if not spec.websocket
    }

    async def count_request(response: Response) -> Response:
        # Labelled by the route template (reference §14), never by the path a client made up.
        rule: Rule | None = request.url_rule
        wrong_method = request.routing_exception
        if (
            rule is None
            and isinstance(wrong_method, MethodNotAllowed)
            and wrong_method.valid_methods
        ):
            # A 405 is for a known path: its template, not ``unmatched``.
            adapter = app.create_url_adapter(request)
            method = next(iter(wrong_method.valid_methods))
            with contextlib.suppress(HTTPException):
                if adapter is not None:
                    rule, _ = adapter.match(method=method, return_rule=True)
        endpoint = rule.endpoint if rule is not None else ""
        metrics.http_request(templates.get(endpoint, "unmatched"), response.status_code)
        return response

    ws_templates = {f"{spec.operation_id}_ws": spec.path for spec in ROUTES if spec.websocket}

    async def count_refused_upgrade(response: ResponseTypes | None) -> ResponseTypes | None:
        # An upgrade refused with an HTTP answer (401, 403, 503, an unknown path) is counted
        # here; an accepted one is counted by its handler when it answers 101.
        if response is not None:
            rule = websocket.url_rule
            route = ws_templates.get(rule.endpoint if rule is not None else "", "unmatched")
            metrics.http_request(route, response.status_code)
        return response

    app.after_request(drain_body)
    app.after_request(count_request)
    # What ``app.after_websocket`` does; that decorator is missing from Quart 0.19, the lowest
    # version supported, while the function table is in every version.
    app.after_websocket_funcs.setdefault(None, []).append(count_refused_upgrade)
    app.register_error_handler(HTTPException, on_http_exception)
    app.register_error_handler(Exception, on_exception)
    return app


def _error_response(err: api_errors.ApiError) -> Response:
    response = json_response(err.body(), err.status)
    response.headers.update(err.headers())
    if err.code == "request_too_large":
        # The rest of the body is never read: close the connection after answering, so a
        # client still writing gets the 413 instead of waiting on a full socket buffer.
        response.headers["Connection"] = "close"
    return response


def _body_complete() -> bool:
    """Whether the whole request body has arrived (Quart's body keeps a completion event)."""
    complete = getattr(request.body, "_complete", None)
    return complete is None or bool(complete.is_set())


def _method() -> str:
    try:
        return request.method
    except RuntimeError:
        return "GET"


def _path() -> str:
    try:
        return request.path
    except RuntimeError:
        return websocket.path


class HealthFirst:
    """The ASGI application of the api worker: ``GET /health`` answered ahead of Quart.

    Under overload every step of a request waits its turn in the event loop behind the
    clients' work, and a Quart request takes many such steps (its own tasks, contexts and
    hooks): ``/health`` went over a second in the overload fault test on a loaded machine.
    Here a plain ``GET /health`` without a body costs the database probe and two sends;
    anything else (another method, a body, a WebSocket) goes to the Quart application,
    whose ``/health`` route answers the same.
    """

    def __init__(self, app: QuartTrio, ctx: Any) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/health"
            and scope["method"] == "GET"
            and not any(name in _BODY_HEADERS for name, _ in scope["headers"])
        ):
            await self._health(send)
            return
        await self.app(scope, receive, send)

    async def _health(self, send: ASGISendCallable) -> None:
        try:
            status, payload = await health_answer(self.ctx)
        except Exception as exc:
            # What the Quart route's error handler would answer (a defect: 500, logged).
            err = api_errors.translate(exc, _logger(self.ctx))
            status, payload = err.status, json_body(err.body())
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", JSON_CONTENT_TYPE.encode()),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})
        metrics.http_request("/health", status)


#: Request headers that announce a body (such a request goes the ordinary way).
_BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding"})


def create_asgi_app(ctx: Any) -> HealthFirst:
    """What the api worker serves: the Quart application behind the ``/health`` fast path."""
    return HealthFirst(create_app(ctx), ctx)


load_all()
