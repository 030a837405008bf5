"""The control methods of reference §17, as the supervisor serves them.

Two callers share these: CLI clients on the control socket, and workers calling the supervisor
over their link (the API's ``/status`` asks for worker counts, its run-now asks for the wake-up).
Data operations go through ``services.admin`` — the same use cases the HTTP API runs — with a
supervisor-side context whose ``link`` leads straight back into the supervisor.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from mailproxyd.control.protocol import INVALID_PARAMS, METHOD_NOT_FOUND, ProtocolError
from mailproxyd.core.ids import is_batch_code, is_identifier

if TYPE_CHECKING:
    from mailproxyd.settings import Settings
    from mailproxyd.store import AsyncDatabase
    from mailproxyd.supervision.channel import Message
    from mailproxyd.supervisor import Supervisor


async def handle_control(sup: Supervisor, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Serve one control-socket request (already validated by ``control.protocol``)."""
    if method == "status":
        return await sup.status()
    if method == "workers":
        return {"workers": sup.table.describe()}
    if method == "reload":
        return await sup.reload()
    if method == "stop":
        grace = params.get("grace_seconds")
        sup.request_stop(float(grace) if grace is not None else None)
        return {"stopping": True}
    from mailproxyd.services import admin

    ctx = sup.service_context()
    tenant_id = params.get("tenant_id")
    if tenant_id is not None and not (isinstance(tenant_id, str) and is_identifier(tenant_id)):
        raise ProtocolError(INVALID_PARAMS, "tenant_id: must be a tenant identifier")
    batch_code = params.get("batch_code")
    if batch_code is not None and not (isinstance(batch_code, str) and is_batch_code(batch_code)):
        raise ProtocolError(INVALID_PARAMS, "batch_code: must be a batch code")
    if method == "stats":
        return dict(await admin.stats(ctx, tenant_id))
    if method == "run_now":
        await admin.run_now(ctx, tenant_id)
        return {"triggered": True}
    if method in ("suspend", "activate"):
        if tenant_id is None:
            active = await admin.set_scheduler_active(ctx, method == "activate")
            return {"scheduler_active": active, "active": active}
        fn = admin.suspend if method == "suspend" else admin.activate
        return dict(await fn(ctx, tenant_id, batch_code))
    raise ProtocolError(METHOD_NOT_FOUND, f"unknown method: {method}")


async def handle_link_call(sup: Supervisor, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Serve a worker's ``call``. ``run_now`` here is only the wake-up: the worker has already
    applied the tenant-scoped effects through ``services.admin`` itself."""
    if method == "run_now":
        tenant_id = params.get("tenant_id")
        if tenant_id is not None and not isinstance(tenant_id, str):
            raise ProtocolError(INVALID_PARAMS, "tenant_id: must be a string")
        await sup.trigger_run_now(tenant_id)
        return {"triggered": True}
    return await handle_control(sup, method, params)


@dataclasses.dataclass
class ServiceContext:
    """What ``services.admin`` needs, as the supervisor provides it."""

    settings: Settings
    db: AsyncDatabase
    link: LocalLink
    log: Any

    @staticmethod
    def now() -> float:
        return time.time()


class LocalLink:
    """The supervisor's own stand-in for a worker link: calls come straight back in."""

    def __init__(self, sup: Supervisor) -> None:
        self._sup = sup

    async def send(self, message: Message) -> None:
        await self._sup.on_wake_message(message)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await handle_link_call(self._sup, method, params or {})
