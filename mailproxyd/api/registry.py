"""The route table: every route's method, path, role and documentation in one place.

Route modules declare their handlers with :func:`route`; :func:`mailproxyd.api.app.create_app`
mounts them and :mod:`mailproxyd.api.openapi` describes them, so the served API and its
OpenAPI document cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["public", "tenant", "admin"]
Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class QueryParam:
    """One documented query parameter (JSON Schema of its value in ``schema``)."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str
    path: str  # OpenAPI form: /tenant/{id}
    role: Role
    operation_id: str
    summary: str
    handler: Handler
    query: tuple[QueryParam, ...] = ()
    body: Any = None  # msgspec type, or a JSON Schema dict
    body_required: bool = False
    response: Any = None  # msgspec type, or a JSON Schema dict
    errors: tuple[int, ...] = ()
    path_converters: dict[str, str] = field(default_factory=dict)
    websocket: bool = False


ROUTES: list[RouteSpec] = []


def route(
    method: str,
    path: str,
    *,
    role: Role,
    operation_id: str,
    summary: str,
    query: tuple[QueryParam, ...] = (),
    body: Any = None,
    body_required: bool = False,
    response: Any = None,
    errors: tuple[int, ...] = (),
    path_converters: dict[str, str] | None = None,
    websocket: bool = False,
) -> Callable[[Handler], Handler]:
    """Register ``handler`` for ``method path``; the handler gets ``(ctx, principal, **path)``."""

    def register(handler: Handler) -> Handler:
        ROUTES.append(
            RouteSpec(
                method=method,
                path=path,
                role=role,
                operation_id=operation_id,
                summary=summary,
                handler=handler,
                query=query,
                body=body,
                body_required=body_required,
                response=response,
                errors=errors,
                path_converters=path_converters or {},
                websocket=websocket,
            )
        )
        return handler

    return register


# Reusable query parameter declarations.
TENANT_ID = QueryParam("tenant_id", {"type": "string"}, "tenant (defaults to the key's tenant)")
BATCH_CODE = QueryParam("batch_code", {"type": "string"}, "batch code")
BOOLEAN = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]}
