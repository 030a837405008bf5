"""Read-only views of the node (reference §5.1): health, scheduler and workers, stats, sync status."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mailproxyd import __version__
from mailproxyd.core import report as core_report
from mailproxyd.errors import DatabaseUnavailable, MailProxyError
from mailproxyd.services.admin._common import read, require_tenant
from mailproxyd.services.context import ServiceContext
from mailproxyd.store import Tx, meta
from mailproxyd.store import messages as store_messages
from mailproxyd.store import report as store_report


async def database_reachable(ctx: ServiceContext) -> bool:
    """True when the database answers a trivial read (the health check)."""
    try:
        await ctx.db.probe(meta.schema_version)
    except DatabaseUnavailable:
        return False
    return True


async def status(ctx: ServiceContext) -> dict[str, Any]:
    """Scheduler and node state (reference §5.1); worker counts come from the supervisor."""
    active = await read(ctx, meta.get_scheduler_active)
    settings = ctx.settings
    workers: dict[str, Any]
    try:
        reply = await ctx.link.call("status", {})
        workers = dict(reply.get("workers") or {})
    except MailProxyError:
        workers = {}
    if not workers or not all(isinstance(v, Mapping) for v in workers.values()):
        # The supervisor did not answer: describe what this node is configured to run.
        workers = {
            "api": {"expected": 1, "running": 1},
            "sender": {"expected": settings.sender_processes, "running": 0},
            "reporter": {"expected": 1, "running": 0},
        }
    return {
        "scheduler_active": bool(active),
        "active": bool(active),
        "test_mode": bool(settings.test_mode),
        "version": __version__,
        "node": str(settings.node_id),
        "workers": workers,
    }


def _stats(tx: Tx, tenant_id: str | None, now: float) -> dict[str, Any]:
    if tenant_id is not None:
        require_tenant(tx, tenant_id)
    return dict(store_messages.stats(tx, now, tenant_id=tenant_id))


async def stats(ctx: ServiceContext, tenant_id: str | None) -> dict[str, Any]:
    """Counts of tenants, accounts and messages by status (reference §5.1)."""
    return await read(ctx, _stats, tenant_id, ctx.now())


_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(core_report.ReportState))


def _sync_view(row: Mapping[str, Any]) -> core_report.TenantReportView:
    # Unset columns keep the dataclass defaults rather than becoming explicit Nones.
    state = core_report.ReportState(**{k: row[k] for k in _STATE_FIELDS if row.get(k) is not None})
    return core_report.TenantReportView(
        id=str(row["id"]),
        name=row.get("name"),
        active=bool(row["active"]),
        client_base_url=row.get("client_base_url"),
        unreported_events=int(row.get("unreported_events") or 0),
        state=state,
    )


async def sync_status(ctx: ServiceContext, tenant_id: str | None) -> dict[str, Any]:
    """``GET /tenants/sync-status`` (without ``ok``): every tenant, or only ``tenant_id``."""
    now = ctx.now()
    interval = int(ctx.settings.sync_interval)

    def work(tx: Tx) -> dict[str, Any]:
        if tenant_id is not None:
            require_tenant(tx, tenant_id)
        views = [_sync_view(row) for row in store_report.sync_status(tx, now, tenant_id)]
        doc = core_report.status_document(views, now=now, interval=interval)
        doc.pop("ok", None)
        return doc

    return await read(ctx, work)
