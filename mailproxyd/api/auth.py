"""Authentication, roles and tenant scoping (reference §4.2, §4.3).

The admin token is read from ``ctx.settings`` on every request because a reload can
replace it. Tenant keys are looked up by digest (the store keeps nothing else), so no
comparison against stored keys happens here; the admin and metrics tokens are
compared in constant time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from mailproxyd.api.errors import admin_required, forbidden_tenant, unauthorized
from mailproxyd.api.params import current, merged_param
from mailproxyd.core.crypto import tokens_equal
from mailproxyd.core.redact import escape_control
from mailproxyd.errors import ValidationFailed
from mailproxyd.services import admin

Role = Literal["public", "tenant", "admin"]

log = logging.getLogger("mailproxyd.api.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the admin, or a tenant key bound to ``tenant_id``."""

    is_admin: bool
    tenant_id: str | None = None


ANONYMOUS = Principal(is_admin=False, tenant_id=None)


def request_token() -> str | None:
    token = current().headers.get("X-API-Token")
    return token if token else None


def _fail(reason: str) -> Exception:
    # Never the token itself: only where the attempt came from and what it wanted.
    log.info(
        "authentication failed (%s): remote=%s route=%s %s",
        reason,
        current().remote_addr,
        getattr(current(), "method", "GET"),
        escape_control(current().path),
    )
    return unauthorized()


async def authenticate(ctx: Any, role: Role) -> Principal:
    """The caller of this request for a route of ``role``, or raise 401/403."""
    if role == "public":
        return ANONYMOUS
    token = request_token()
    if token is None:
        raise _fail("no token")
    admin_token = getattr(ctx.settings, "api_token", None) or ""
    if admin_token and tokens_equal(token, admin_token):
        return Principal(is_admin=True)
    tenant_id = await admin.tenant_for_api_key(ctx, token)
    if tenant_id is None:
        raise _fail("unknown token")
    if role == "admin":
        raise admin_required()
    return Principal(is_admin=False, tenant_id=tenant_id)


def scope_tenant(
    principal: Principal, requested: str | None, *, required: bool = True
) -> str | None:
    """The tenant a request acts on (reference §4.3).

    A tenant key may only name its own tenant (403 ``forbidden_tenant`` otherwise,
    whether or not the named tenant exists) and defaults to it; the admin must name
    one when ``required``.
    """
    if not principal.is_admin:
        if requested is not None and requested != principal.tenant_id:
            raise forbidden_tenant(requested)
        return principal.tenant_id
    if requested is None and required:
        raise ValidationFailed([("tenant_id", "required")])
    return requested


def check_path_tenant(principal: Principal, tenant_id: str) -> None:
    """A tenant key addressing ``/tenant/{id}`` of another tenant gets 403."""
    if not principal.is_admin and tenant_id != principal.tenant_id:
        raise forbidden_tenant(tenant_id)


def resolve_tenant(
    principal: Principal, body: dict[str, Any] | None = None, *, required: bool = True
) -> str | None:
    """``tenant_id`` from the query string and/or body, scoped to the caller.

    A tenant key naming another tenant anywhere is a 403 before any other check, so a
    foreign tenant is never told apart from a mismatch or a missing one.
    """
    if not principal.is_admin:
        # Every value of a repeated query parameter counts: ?tenant_id=mine&tenant_id=other
        # names the other tenant too.
        named = (
            *current().args.getlist("tenant_id"),
            None if body is None else body.get("tenant_id"),
        )
        for value in named:
            if value not in (None, "") and value != principal.tenant_id:
                raise forbidden_tenant(value)
    return scope_tenant(principal, merged_param("tenant_id", body), required=required)
