"""Scheduler commands (reference §5.2): global and per-tenant suspend/activate, and run-now.

The state lives in the database; the supervisor link only carries the wake-ups that make
workers act on it at once instead of at their next poll.
"""

from __future__ import annotations

from typing import Any

from mailproxyd.errors import MailProxyError
from mailproxyd.services.admin._common import mutation, require_tenant
from mailproxyd.services.context import ServiceContext
from mailproxyd.store import Tx, meta, tenants
from mailproxyd.store import report as store_report


class SupervisorUnavailable(MailProxyError):
    """The supervisor did not take the request: the node is shutting down (HTTP 503)."""


def _run_now_tx(tx: Tx, tenant_id: str, now: float) -> None:
    require_tenant(tx, tenant_id)
    store_report.run_now(tx, tenant_id)


async def run_now(ctx: ServiceContext, tenant_id: str | None) -> None:
    """Wake every worker of every node; for a tenant also clear its DND and back-off (reference §5.2)."""
    if tenant_id is not None:
        await ctx.db.run(_run_now_tx, tenant_id, ctx.now())
    params = {"tenant_id": tenant_id} if tenant_id is not None else {}
    try:
        await ctx.link.call("run_now", params)
    except MailProxyError as exc:
        raise SupervisorUnavailable(f"run-now not delivered: {exc.message}") from exc


def _set_active(tx: Tx, active: bool, now: float) -> bool:
    meta.set_scheduler_active(tx, active)
    return active


async def set_scheduler_active(ctx: ServiceContext, active: bool) -> bool:
    """Global suspend/activate: the shared ``scheduler_active`` state (reference §3.2, §5.2)."""
    endpoint = "activate" if active else "suspend"
    result = await mutation(ctx, endpoint, None, {}, _set_active, active)
    await ctx.link.wake("all", endpoint)
    return bool(result)


def _command_payload(tenant_id: str, batch_code: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"tenant_id": tenant_id}
    if batch_code is not None:
        payload["batch_code"] = batch_code
    return payload


async def suspend(ctx: ServiceContext, tenant_id: str, batch_code: str | None) -> dict[str, Any]:
    """Suspend a tenant's sending, or only one batch of it; returns the suspension state."""
    payload = _command_payload(tenant_id, batch_code)
    return await mutation(
        ctx, "suspend", tenant_id, payload, tenants.suspend, tenant_id, batch_code
    )


async def activate(ctx: ServiceContext, tenant_id: str, batch_code: str | None) -> dict[str, Any]:
    """Lift a tenant's (or one batch's) suspension and wake the senders; returns the state."""
    payload = _command_payload(tenant_id, batch_code)
    state = await mutation(
        ctx, "activate", tenant_id, payload, tenants.activate, tenant_id, batch_code
    )
    await ctx.link.wake("sender", "activate", tenant_id)
    return state
