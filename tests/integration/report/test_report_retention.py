"""The sweep at the end of a report cycle (reference §13.7) and the shutdown flush (reference §18.3 step 3)."""

from __future__ import annotations

import time

from mailproxyd.services.report import flush_before_exit, run_report_cycle
from tests.tenantservers import ok, status

RETENTION = 604800


async def test_retention_deletes_only_acknowledged_and_old_enough(
    report_env, tenant_server, sync_client
) -> None:
    srv = tenant_server(ok())
    srv.script(status(500))
    report_env.add_tenant("t", srv.base_url)
    now = float(int(time.time()))
    report_env.record_sent("t", ["a"], now=now)
    ctx = report_env.ctx(sync_client)

    # Unacknowledged (the tenant answered 500): kept, however old it gets.
    stats = await run_report_cycle(ctx, now_fn=lambda: now)
    assert stats.items_acknowledged == 0
    stats = await run_report_cycle(ctx, now_fn=lambda: now + 10 * RETENTION, retention=True)
    assert stats.items_acknowledged == 1  # acknowledged only now, at now + 10 * RETENTION
    assert stats.retention["messages"] == 0 and report_env.unreported("t") == 0
    acked_at = now + 10 * RETENTION

    report_env.record_sent("t", ["b"], now=acked_at)  # b: sent, acknowledged at acked_at + 1
    await run_report_cycle(ctx, now_fn=lambda: acked_at + 1)
    stats = await run_report_cycle(ctx, now_fn=lambda: acked_at + RETENTION - 1)
    assert stats.retention["messages"] == 0
    stats = await run_report_cycle(ctx, now_fn=lambda: acked_at + RETENTION)
    assert stats.retention["messages"] == 1  # a: acknowledged RETENTION seconds ago
    stats = await run_report_cycle(ctx, now_fn=lambda: acked_at + RETENTION + 1)
    assert stats.retention["messages"] == 1  # b


async def test_flush_before_exit_makes_one_post_per_tenant_with_events(
    report_env, tenant_server, sync_client
) -> None:
    with_events, idle, backing_off = tenant_server(), tenant_server(), tenant_server()
    report_env.add_tenant("busy", with_events.base_url)
    report_env.add_tenant("idle", idle.base_url)
    report_env.add_tenant("backoff", backing_off.base_url)
    now = time.time()
    report_env.record_sent("busy", [f"e{k}" for k in range(5)])
    report_env.record_sent("backoff", ["x"])
    report_env.set_state("backoff", consecutive_failures=3, backoff_until=now + 60)
    report_env.set_state("busy", heartbeat_due=True)  # a run-now pending: still one POST only

    stats = await flush_before_exit(report_env.ctx(sync_client, sync_batch_size=2))
    assert stats.calls == 1
    assert [i["id"] for i in with_events.reported_items()] == ["e0", "e1"]
    assert idle.calls == [] and backing_off.calls == []  # no heartbeats, back-off respected
    assert report_env.unreported("busy") == 3


async def test_extra_sweeps_run_after_retention_even_if_one_fails(report_env, sync_client) -> None:
    seen: list[float] = []

    async def broken(now: float) -> None:
        raise RuntimeError("storage unreachable")

    async def large_files(now: float) -> None:
        seen.append(now)

    ctx = report_env.ctx(sync_client)
    assert ctx.reporting is not None
    ctx.reporting.extra_sweeps += [broken, large_files]
    stats = await run_report_cycle(ctx, now_fn=lambda: 1767225600.0)
    assert seen == [1767225600.0] and stats.retention is not None
