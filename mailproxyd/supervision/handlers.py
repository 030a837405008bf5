"""The control methods of reference §17, as the supervisor serves them.

Two callers share these: CLI clients on the control socket, and workers calling the supervisor
over their link (the API's ``/status`` asks for worker counts, its run-now asks for the wake-up).
Both arrive as typed calls of the one method table (``control.protocol.ControlCall``). Data
operations go through ``services.admin`` — the same use cases the HTTP API runs — with the
supervisor's ``ServiceContext``, whose ``link`` (:class:`LocalLink`) leads straight back here.

The supervisor is seen through :class:`ControlHost`, so this module does not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from mailproxyd.control import protocol as control
from mailproxyd.control.protocol import INVALID_PARAMS, ControlCall, ProtocolError
from mailproxyd.core.ids import is_batch_code, is_identifier

if TYPE_CHECKING:
    from mailproxyd.services.context import ServiceContext
    from mailproxyd.supervision.table import WorkerTable


class ControlHost(Protocol):
    """What the control methods need from the supervisor."""

    table: WorkerTable

    async def status(self) -> dict[str, Any]: ...

    async def reload(self) -> dict[str, Any]: ...

    def request_stop(self, grace: float | None) -> None: ...

    def service_context(self) -> ServiceContext: ...

    async def trigger_run_now(self, tenant_id: str | None = None) -> None: ...

    async def on_wake(self, target: str, reason: str, tenant_id: str | None = None) -> None: ...


def _check_scope(tenant_id: str | None, batch_code: str | None = None) -> None:
    if tenant_id is not None and not is_identifier(tenant_id):
        raise ProtocolError(INVALID_PARAMS, "tenant_id: must be a tenant identifier")
    if batch_code is not None and not is_batch_code(batch_code):
        raise ProtocolError(INVALID_PARAMS, "batch_code: must be a batch code")


async def handle_control(host: ControlHost, call: ControlCall) -> dict[str, Any]:
    """Serve one control-socket request (already validated by ``control.protocol``)."""
    from mailproxyd.services import admin

    match call:
        case control.Status():
            return await host.status()
        case control.Workers():
            return {"workers": host.table.describe()}
        case control.Reload():
            return await host.reload()
        case control.Stop(grace_seconds=grace):
            host.request_stop(float(grace) if grace is not None else None)
            return {"stopping": True}
        case control.Stats(tenant_id=tenant_id):
            _check_scope(tenant_id)
            return dict(await admin.stats(host.service_context(), tenant_id))
        case control.RunNow(tenant_id=tenant_id):
            _check_scope(tenant_id)
            await admin.run_now(host.service_context(), tenant_id)
            return {"triggered": True}
        case control.Suspend() | control.Activate():
            _check_scope(call.tenant_id, call.batch_code)
            activate = isinstance(call, control.Activate)
            ctx = host.service_context()
            if call.tenant_id is None:
                active = await admin.set_scheduler_active(ctx, activate)
                return {"scheduler_active": active, "active": active}
            fn = admin.activate if activate else admin.suspend
            return dict(await fn(ctx, call.tenant_id, call.batch_code))
    raise ProtocolError(control.METHOD_NOT_FOUND, f"unknown method: {control.method_name(call)}")


async def handle_link_call(host: ControlHost, call: ControlCall) -> dict[str, Any]:
    """Serve a worker's ``call``. ``run_now`` here is only the wake-up: the worker has already
    applied the tenant-scoped effects through ``services.admin`` itself."""
    if isinstance(call, control.RunNow):
        await host.trigger_run_now(call.tenant_id)
        return {"triggered": True}
    return await handle_control(host, call)


class LocalLink:
    """The supervisor's own ``services.context.Link``: wake-ups and calls come straight back in."""

    def __init__(self, host: ControlHost) -> None:
        self._host = host

    async def wake(self, target: str, reason: str, tenant_id: str | None = None) -> None:
        await self._host.on_wake(target, reason, tenant_id)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await handle_link_call(self._host, control.make_call(method, params or {}))

    async def cycle_done(self) -> None:
        """The supervisor runs no test-mode cycle step of its own."""
