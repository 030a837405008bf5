"""Tenant use cases (reference §5.5): create/replace, list, read, update, delete, and the API keys."""

from __future__ import annotations

from typing import Any

from mailproxyd.core.models import tenant as tenant_model
from mailproxyd.errors import ValidationFailed
from mailproxyd.services.admin._common import (
    mutation,
    read,
    require_tenant,
    validated,
)
from mailproxyd.services.admin._netcheck import url_refusal
from mailproxyd.services.context import ServiceContext
from mailproxyd.store import Tx, tenants

#: The storage schemes a tenant key may set (reference §11.3): never the node's own disk.
TENANT_STORAGE_SCHEMES = ("s3://", "gs://", "az://")

# One copy of the wire form, kept under this package's name for its callers.
present_tenant = tenant_model.present_tenant


async def create_tenant(ctx: ServiceContext, payload: dict[str, Any]) -> dict[str, Any]:
    """``POST /tenant``: ``{"created": bool, "api_key"?: str}`` (the key only on creation)."""
    tenant_id = payload.get("id") if isinstance(payload.get("id"), str) else None
    fields = await validated(
        ctx, "addTenant", tenant_id, payload, lambda: tenant_model.validate_tenant(payload)
    )

    def work(tx: Tx, *, now: float) -> dict[str, Any]:
        return dict(tenants.create_or_replace(tx, fields, now))

    result = await mutation(ctx, "addTenant", fields["id"], payload, work)
    out: dict[str, Any] = {"created": bool(result["created"])}
    if result.get("api_key"):
        out["api_key"] = result["api_key"]
    return out


async def _check_untrusted(ctx: ServiceContext, tenant_id: str, payload: dict[str, Any]) -> None:
    """422 when a tenant key points ``client_base_url`` or large-file storage off limits."""
    problems: list[tuple[str, str]] = []
    url = payload.get("client_base_url")
    if isinstance(url, str):
        reason = await url_refusal(ctx, url)
        if reason is not None:
            problems.append(("client_base_url", reason))
    config = payload.get("large_file_config")
    storage_url = config.get("storage_url") if isinstance(config, dict) else None
    if isinstance(storage_url, str) and not storage_url.startswith(TENANT_STORAGE_SCHEMES):
        problems.append(
            (
                "large_file_config.storage_url",
                "a tenant key may only set s3://, gs:// or az:// storage",
            )
        )
    if problems:
        await validated(ctx, "updateTenant", tenant_id, payload, _raise(problems))


def _raise(problems: list[tuple[str, str]]) -> Any:
    def fail() -> None:
        raise ValidationFailed(problems)

    return fail


async def list_tenants(ctx: ServiceContext, *, active_only: bool = False) -> list[dict[str, Any]]:
    """Every tenant (or only the active ones) in its wire form."""
    found = await read(ctx, tenants.list_tenants, active_only)
    return [present_tenant(t) for t in found]


async def get_tenant(ctx: ServiceContext, tenant_id: str) -> dict[str, Any]:
    """One tenant in its wire form; ``NotFound`` (``tenant_not_found``)."""
    return present_tenant(await read(ctx, tenants.get, tenant_id))


async def update_tenant(
    ctx: ServiceContext, tenant_id: str, payload: dict[str, Any], *, by_tenant: bool = False
) -> None:
    """``PUT /tenant/{id}``: partial update, ``client_auth`` merged key by key (reference §5.5).

    ``by_tenant``: the change comes with the tenant's own key, so the values that point the
    node somewhere follow the untrusted rule of reference §11.3 (checked now and at every connection).
    """
    if by_tenant:
        await _check_untrusted(ctx, tenant_id, payload)

    def work(tx: Tx, *, now: float) -> None:
        current = tenants.get(tx, tenant_id)
        changes = tenant_model.validate_tenant_update(payload, current=current)
        if "client_base_url" in changes:
            # Who set the URL decides which networks it may reach (reference §11.3).
            changes[tenants.UNTRUSTED_URL_KEY] = True if by_tenant else None
        tenants.update(tx, tenant_id, changes, now)

    await mutation(ctx, "updateTenant", tenant_id, payload, work)


async def delete_tenant(ctx: ServiceContext, tenant_id: str) -> None:
    """Delete a tenant with everything it owns."""

    def work(tx: Tx, *, now: float) -> None:
        tenants.delete(tx, tenant_id)

    await mutation(ctx, "deleteTenant", tenant_id, {"id": tenant_id}, work)


async def tenant_for_api_key(ctx: ServiceContext, key: str) -> str | None:
    """The tenant owning the unexpired API key ``key`` (looked up by digest), else ``None``."""
    found = await read(ctx, tenants.find_by_api_key, key, ctx.now())
    return None if found is None else str(found["id"])


async def issue_api_key(
    ctx: ServiceContext, tenant_id: str, expires_at: int | None
) -> dict[str, Any]:
    """A new tenant key (the old one stops working at once): ``{"api_key", "expires_at"?}``."""

    def work(tx: Tx, *, now: float) -> str:
        require_tenant(tx, tenant_id)
        return str(tenants.issue_api_key(tx, tenant_id, now, expires_at))

    payload = {"expires_at": expires_at} if expires_at is not None else {}
    key = await mutation(ctx, "createApiKey", tenant_id, payload, work)
    out: dict[str, Any] = {"api_key": key}
    if expires_at is not None:
        out["expires_at"] = int(expires_at)
    return out


async def revoke_api_key(ctx: ServiceContext, tenant_id: str) -> None:
    """Revoke the tenant's API key; it stops working at once."""

    def work(tx: Tx, *, now: float) -> None:
        tenants.revoke_api_key(tx, tenant_id, now)

    await mutation(ctx, "revokeApiKey", tenant_id, {}, work)
