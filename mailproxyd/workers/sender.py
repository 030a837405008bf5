"""The sender worker process: ``python -m mailproxyd.workers.sender --index N``.

The sender's life is ``services.dispatch.sender_loop``: claim → admit → build → send → record,
woken by ``ctx.wake`` (enqueue and run-now relayed by the supervisor), polling every
``GMP_SEND_LOOP_INTERVAL``, in test mode one cycle per ``ctx.cycles`` ring followed by
``ctx.cycle_done()``, and on ``ctx.stopping`` the ordered wind-down of §18.3 step 2 within
``ctx.stop_deadline``. This module only puts it in a process.
"""

from __future__ import annotations

import trio

from mailproxyd.services.dispatch.cycle import sender_loop
from mailproxyd.workers._runtime import WorkerContext, run_worker


async def sender_body(
    ctx: WorkerContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    await sender_loop(ctx, ctx.wake, task_status=task_status)


def main() -> None:
    run_worker("sender", sender_body)


if __name__ == "__main__":
    main()
