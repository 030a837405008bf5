"""The OpenAPI 3.1 document of ``GET /openapi.json``, generated from the route table.

Paths, parameters, roles and error statuses come from :data:`registry.ROUTES`; the
request and response schemas are the msgspec models of :mod:`mailproxyd.api.schemas`,
turned into JSON Schema by ``msgspec.json.schema_components``. The request models of
tenants, accounts, the instance and message items are generated there from the field
tables the validators use (:mod:`mailproxyd.core.models.fields`), so their constraints
are in the document. The document is built once per process and cached as bytes.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from mailproxyd import __version__
from mailproxyd.api import schemas
from mailproxyd.api.registry import ROUTES, RouteSpec
from mailproxyd.api.routes import load_all

REF_TEMPLATE = "#/components/schemas/{name}"

_ERROR_TEXT = {
    400: "Malformed JSON, or a body that is not a JSON object",
    401: "Missing, unknown, expired or revoked token",
    403: "Tenant key on an admin-only route, or naming another tenant",
    404: "Unknown resource",
    405: "Method not allowed",
    409: "State conflict",
    410: "Download link expired",
    413: "Request body too large, or too many messages",
    422: "Well-formed JSON that violates a field rule",
    426: "WebSocket upgrade required",
    500: "Internal error",
    503: "Database unreachable, or the node is shutting down",
}


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, msgspec.Struct)


def _models() -> list[type]:
    found: list[type] = [schemas.ErrorBody, schemas.NothingQueuedBody, schemas.HealthBody]
    found += [schemas.SuspendBody, schemas.SchedulerStateBody]
    for spec in ROUTES:
        for value in (spec.body, spec.response):
            if _is_model(value) and value not in found:
                found.append(value)
    return found


def _schema(value: Any) -> dict[str, Any]:
    if _is_model(value):
        return {"$ref": REF_TEMPLATE.format(name=value.__name__)}
    return dict(value)


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _parameters(spec: RouteSpec) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for part in spec.path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            params.append(
                {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            )
    for q in spec.query:
        entry: dict[str, Any] = {"name": q.name, "in": "query", "required": q.required}
        entry["schema"] = q.schema
        if q.description:
            entry["description"] = q.description
        params.append(entry)
    return params


def _responses(spec: RouteSpec) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if spec.operation_id == "metrics":
        ok: dict[str, Any] = {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    elif spec.operation_id == "download":
        ok = {
            "description": "The file",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    elif spec.operation_id == "events_plain":
        ok = {"description": "Switching Protocols: a stream of event frames"}
        responses["101"] = ok
        ok = {}
    else:
        ok = {"description": "Success"}
        if spec.response is not None:
            ok["content"] = _json(_schema(spec.response))
    if ok:
        responses["200"] = ok
    error = _schema(schemas.ErrorBody)
    statuses = set(spec.errors)
    # Errors every route of a kind can give, whatever it declares: any parameter can be
    # refused (422), any body can be malformed or too large, any protected route needs
    # a valid token and may be refused to a tenant key.
    if spec.query or "{" in spec.path:
        statuses.add(422)
    if spec.body is not None:
        statuses |= {400, 413, 422}
    if spec.role != "public":
        statuses |= {401, 403}
    for status in sorted(statuses):
        body: dict[str, Any] = error
        if status == 400 and spec.operation_id == "add_messages":
            body = {"oneOf": [error, _schema(schemas.NothingQueuedBody)]}
        if status == 503 and spec.operation_id == "health":
            body = _schema(schemas.HealthBody)
        responses[str(status)] = {"description": _ERROR_TEXT[status], "content": _json(body)}
    # Every route can fail with a defect, and every request may come while the node stops.
    for status in (500, 503):
        responses.setdefault(
            str(status), {"description": _ERROR_TEXT[status], "content": _json(error)}
        )
    if spec.operation_id in ("health", "openapi", "download", "metrics"):
        responses.pop("500", None)
    return responses


def _operation(spec: RouteSpec) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": spec.operation_id, "summary": spec.summary}
    op["tags"] = [spec.role]
    if spec.role != "public":
        op["security"] = [{"ApiToken": []}]
        if spec.role == "admin":
            op["description"] = "Admin token only."
        else:
            op["description"] = "Admin token, or a tenant key scoped to its own tenant."
    else:
        op["security"] = []
    params = _parameters(spec)
    if params:
        op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {"required": spec.body_required, "content": _json(_schema(spec.body))}
    op["responses"] = _responses(spec)
    return op


def build_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document as a dict."""
    load_all()
    _, components = msgspec.json.schema_components(_models(), ref_template=REF_TEMPLATE)
    paths: dict[str, dict[str, Any]] = {}
    for spec in ROUTES:
        if spec.websocket:
            continue  # documented through its plain-GET twin, which answers 426
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mail-proxy",
            "version": __version__,
            "description": "Multi-tenant e-mail dispatch proxy: HTTP in, SMTP out, reports back.",
        },
        "components": {
            "securitySchemes": {
                "ApiToken": {"type": "apiKey", "in": "header", "name": "X-API-Token"}
            },
            "schemas": components,
        },
        "paths": paths,
    }


@functools.cache
def document_bytes() -> bytes:
    return msgspec.json.encode(build_document())
