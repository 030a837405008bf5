"""The sender worker process: ``python -m mailproxyd.workers.sender --index N``.

The sender's life is ``services.dispatch.sender_loop``: claim → admit → build → send → record,
woken by ``ctx.wake`` (enqueue and run-now relayed by the supervisor), polling every
``GMP_SEND_LOOP_INTERVAL``, in test mode one cycle per ``ctx.cycles`` ring followed by
``ctx.cycle_done()``, and on ``ctx.stopping`` the ordered wind-down of reference §18.3 step 2 within
``ctx.stop_deadline``. This module only puts it in a process.
"""

from __future__ import annotations

import trio

from mailproxyd.services.attachments import AttachmentService
from mailproxyd.services.attachments.service import CACHE_EXPIRY_INTERVAL
from mailproxyd.services.context import ServiceContext
from mailproxyd.services.dispatch.cycle import sender_loop
from mailproxyd.workers._runtime import run_worker


async def sender_body(
    ctx: ServiceContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    service = AttachmentService(
        settings=lambda: ctx.settings, db=ctx.db, instance_key=ctx.instance_key, now=ctx.now
    )
    async with service, trio.open_nursery() as nursery:
        nursery.start_soon(_expire_cache, ctx, service)
        await sender_loop(ctx, attachments=service.prepare, task_status=task_status)
        nursery.cancel_scope.cancel()


async def _expire_cache(ctx: ServiceContext, service: AttachmentService) -> None:
    """Expired cache entries go at least every 10 minutes (reference §11.7), whatever the traffic."""
    while True:
        await trio.sleep(CACHE_EXPIRY_INTERVAL)
        try:
            await service.expire_cache()
        except OSError as exc:
            ctx.log.warning("attachment cache expiry failed: %s", exc)


def main() -> None:
    run_worker("sender", sender_body)


if __name__ == "__main__":
    main()
