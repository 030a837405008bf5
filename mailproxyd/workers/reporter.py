"""The reporter worker process: ``python -m mailproxyd.workers.reporter``.

Delivery reports (reference §13) through ``services.report``: in normal mode its ``reporter_loop`` runs,
woken by event wake-ups relayed from the supervisor; in test mode one ``run_report_cycle`` runs
per run-now, after the senders have finished (the supervisor orders that, reference §8.7). At a stop the
loop is cancelled and ``flush_before_exit`` makes the last POSTs within the grace (reference §18.3 step 3).

The bounce poller (``services.bounce``, reference §12) lives here too: ``bounce_loop`` next to the report
loop in normal mode (a ``reload_bounce`` wake-up makes it poll at once), one ``poll_once`` after
each test-mode report cycle (reference §8.7 step 3). Its recorded bounces ring the context's ``wake``,
the report loop's bell.
"""

from __future__ import annotations

import trio

from mailproxyd.core.redact import escape_control
from mailproxyd.drivers import metrics
from mailproxyd.drivers.http import ReportClient
from mailproxyd.services import bounce, report
from mailproxyd.services.attachments import large
from mailproxyd.services.context import Doorbell, Reporting, ServiceContext
from mailproxyd.workers._runtime import run_worker


async def reporter_body(
    ctx: ServiceContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    async with ReportClient(max_connections=max(10, ctx.settings.sync_concurrency)) as client:

        async def expired_large_files(now: float) -> int:
            return await large.sweep_expired(ctx.db, now)

        ctx.reporting = Reporting(
            client=client, observe=metrics.sync_call, extra_sweeps=[expired_large_files]
        )
        # Recorded bounces are new events: the report loop looks at once.
        ctx.bounce.on_recorded = ctx.wake.ring
        task_status.started()
        if ctx.settings.test_mode:
            await _test_mode(ctx)
        else:
            await _normal_mode(ctx)
        # Shutdown step 3: last POSTs for tenants with unacknowledged events, within the grace.
        # Shielded from the caller's cancellation, but not from our own deadline.
        with trio.CancelScope(shield=True), trio.move_on_at(ctx.stop_deadline):
            try:
                await report.flush_before_exit(ctx, now_fn=ctx.now)
            except Exception as exc:
                ctx.log.warning("final report flush failed: %s", escape_control(exc))


async def _normal_mode(ctx: ServiceContext) -> None:
    reload_bell = Doorbell()
    ctx.on_wake.append(lambda reason: reload_bell.ring() if reason == "reload_bounce" else None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bounce.bounce_loop, ctx, reload_bell)
        # The loop returns once ``stopping`` is set and its POSTs in flight have finished
        # (reference §18.3 step 3); the final flush below then covers what is still unacknowledged.
        await report.reporter_loop(ctx, ctx.wake, now_fn=ctx.now, stopping=ctx.stopping)
        nursery.cancel_scope.cancel()


async def _test_mode(ctx: ServiceContext) -> None:
    while not ctx.stopping.is_set():
        await ctx.cycles.wait()
        if ctx.stopping.is_set():
            break
        try:
            with trio.move_on_at(ctx.stop_deadline):
                await report.run_report_cycle(ctx, now_fn=ctx.now, test_mode=True)
        except Exception:
            # One failed cycle (say, the database briefly away) must not end the worker.
            ctx.log.exception("report cycle failed")
        try:
            with trio.move_on_at(ctx.stop_deadline):
                await bounce.poll_once(ctx, now_fn=ctx.now, force=True)  # reference §8.7 step 3
        except Exception:
            ctx.log.exception("bounce poll failed")
        await ctx.cycle_done()


def main() -> None:
    run_worker("reporter", reporter_body)


if __name__ == "__main__":
    main()
