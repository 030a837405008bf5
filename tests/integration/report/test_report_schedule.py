"""reference §13.4–§13.5 against a real database and real tenant servers, with explicit times.

The clock handed to the report cycle is a plain variable, so back-off, heartbeat and DND rules
are checked on the stored state (``backoff_until``, ``dnd_until``) without waiting for them.
"""

from __future__ import annotations

import time

import pytest

from mailproxyd.drivers.http import ReportClient
from mailproxyd.services.report import run_report_cycle, serve_tenant
from mailproxyd.store import report as store_report
from tests.tenantservers import non_json, not_ok, ok, slow, status


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


async def cycle(env, client, clock, **changes):
    return await run_report_cycle(env.ctx(client, **changes), now_fn=clock, test_mode=True)


@pytest.mark.parametrize(
    "answer",
    [not_ok(), status(500), status(404), non_json(), slow(5)],
    ids=["ok_false", "http_500", "http_404", "non_json", "timeout"],
)
async def test_unacknowledged_items_are_sent_again_after_backoff(
    report_env, tenant_server, sync_client, answer
) -> None:
    srv = tenant_server(ok())
    srv.script(answer)
    report_env.add_tenant("t", srv.base_url)
    clock = Clock()
    report_env.record_sent("t", ["a", "b"], now=clock.now)
    ctx = report_env.ctx(sync_client, sync_timeout=0.5)

    stats = await run_report_cycle(ctx, now_fn=clock)
    assert stats.calls == 1 and stats.items_acknowledged == 0
    assert len(srv.calls) == 1  # it reached the tenant, which gave the scripted answer
    state = report_env.state("t")
    assert state["backoff_until"] == clock.now + 1 and state["consecutive_failures"] == 1
    assert report_env.unreported("t") == 2

    clock.now += 0.5  # still in back-off: not called, events or not
    report_env.record_sent("t", ["c"], now=clock.now)
    assert (await run_report_cycle(ctx, now_fn=clock)).calls == 0

    clock.now += 0.5
    stats = await run_report_cycle(ctx, now_fn=clock)
    assert stats.calls == 1 and stats.items_acknowledged == 3
    first, second = srv.calls
    assert [i["id"] for i in first.items] == ["a", "b"]
    assert second.items[:2] == first.items  # the same items again, in the same order
    assert [i["id"] for i in second.items] == ["a", "b", "c"]
    assert report_env.state("t")["consecutive_failures"] == 0
    assert report_env.state("t")["backoff_until"] is None


async def test_connection_refused_backs_off(report_env, closed_port_url, sync_client) -> None:
    report_env.add_tenant("t", closed_port_url)
    clock = Clock()
    report_env.record_sent("t", ["a"], now=clock.now)
    stats = await cycle(report_env, sync_client, clock)
    assert stats.outcomes == {"network_error": 1}
    state = report_env.state("t")
    assert state["backoff_until"] == clock.now + 1
    assert state["last_error"].startswith("connection failed")
    assert report_env.unreported("t") == 1


async def test_twenty_500s_then_recovery(report_env, tenant_server, sync_client) -> None:
    srv = tenant_server(ok())
    srv.script(*[status(500)] * 20)
    report_env.add_tenant("t", srv.base_url)
    clock = Clock()
    expected_ids = []
    gaps = []
    for n in range(21):
        ids = [f"m{n}-{k}" for k in range(3)]
        report_env.record_sent("t", ids, now=clock.now)
        expected_ids += ids
        before = len(srv.calls)
        stats = await cycle(report_env, sync_client, clock)
        assert stats.calls == 1 and len(srv.calls) == before + 1
        if n == 20:
            break
        state = report_env.state("t")
        gaps.append(state["backoff_until"] - clock.now)
        assert state["consecutive_failures"] == n + 1
        clock.now = state["backoff_until"] - 0.001
        assert (await cycle(report_env, sync_client, clock)).calls == 0
        clock.now = state["backoff_until"]
    assert gaps == [1, 2, 4, 8, 16, 32, 64, 128, 256] + [300] * 11
    calls = srv.calls
    # Every call re-sent everything pending, oldest first; the 21st was acknowledged.
    for n, call in enumerate(calls):
        assert [i["id"] for i in call.items] == expected_ids[: 3 * (n + 1)]
    assert report_env.unreported("t") == 0
    assert report_env.state("t")["backoff_until"] is None


async def test_batches_of_sync_batch_size_in_event_order(
    report_env, tenant_server, sync_client
) -> None:
    srv = tenant_server()
    report_env.add_tenant("t", srv.base_url)
    ids = [f"m{k:04d}" for k in range(250)]
    report_env.record_sent("t", ids)
    stats = await run_report_cycle(report_env.ctx(sync_client, sync_batch_size=100))
    assert stats.calls == 3 and stats.items_acknowledged == 250
    assert [len(c.items) for c in srv.calls] == [100, 100, 50]
    assert [i["id"] for i in srv.reported_items()] == ids


async def test_heartbeats(report_env, tenant_server, sync_client) -> None:
    srv = tenant_server()
    report_env.add_tenant("t", srv.base_url)
    report_env.add_tenant("off", tenant_server().base_url, active=False)
    clock = Clock()
    assert (await cycle(report_env, sync_client, clock)).calls == 1  # never acknowledged
    assert srv.calls[0].items == []
    clock.now += 299
    assert (await cycle(report_env, sync_client, clock)).calls == 0
    clock.now += 1
    assert (await cycle(report_env, sync_client, clock)).calls == 1
    assert report_env.state("t")["last_sync_ts"] == clock.now
    assert report_env.state("off")["last_sync_ts"] is None  # inactive: no heartbeats


async def test_inactive_tenant_still_gets_its_events(
    report_env, tenant_server, sync_client
) -> None:
    srv = tenant_server()
    report_env.add_tenant("off", srv.base_url)
    report_env.record_sent("off", ["a"])  # sent while active; reported while inactive
    report_env.set_active("off", False)
    assert (await run_report_cycle(report_env.ctx(sync_client))).calls == 1
    assert [i["id"] for i in srv.reported_items()] == ["a"]


async def test_queued_follow_ups_capped_at_20(report_env, tenant_server, sync_client) -> None:
    srv = tenant_server(ok(queued=5))
    report_env.add_tenant("t", srv.base_url)
    clock = Clock()
    ctx = report_env.ctx(sync_client)
    stats = await run_report_cycle(ctx, now_fn=clock)
    assert stats.calls == 21  # the heartbeat, then 20 calls only for queued
    assert report_env.state("t")["queued_calls"] == 20
    assert (await run_report_cycle(ctx, now_fn=clock)).calls == 0
    # A call made for another reason (events) is answered: the count starts again.
    report_env.record_sent("t", ["a"], now=clock.now)
    assert (await run_report_cycle(ctx, now_fn=clock)).calls == 21
    assert [len(c.items) for c in srv.calls[21:23]] == [1, 0]


async def test_queued_wish_and_its_cap_survive_a_reporter_restart(
    report_env, tenant_server
) -> None:
    srv = tenant_server(ok(queued=5))
    report_env.add_tenant("t", srv.base_url)
    clock = Clock()
    async with ReportClient() as client:
        # The heartbeat and 10 calls only for queued, then this reporter is gone.
        ctx = report_env.ctx(client, owner="node-a/reporter-1")
        served = await serve_tenant(ctx, "t", now_fn=clock, max_calls=11)
        assert served.stats.calls == 11
    state = report_env.state("t")
    assert state["queued_wanted"] is True and state["queued_calls"] == 10
    # A new process: nothing but the database tells it the tenant asked for more.
    async with ReportClient() as client:
        ctx = report_env.ctx(client, owner="node-a/reporter-2")
        assert (await run_report_cycle(ctx, now_fn=clock)).calls == 10  # up to the cap of 20
        assert report_env.state("t")["queued_calls"] == 20
        assert (await run_report_cycle(ctx, now_fn=clock)).calls == 0
    assert len(srv.calls) == 21


async def test_queued_wish_held_by_dnd_is_followed_after_restart(report_env, tenant_server) -> None:
    srv = tenant_server(ok())
    clock = Clock()
    srv.script(ok(queued=3, next_sync_after=clock.now + 3600))
    report_env.add_tenant("t", srv.base_url)
    hours = {"sync_interval": 7200}  # no heartbeat due in this test: only the wish can call
    async with ReportClient() as client:
        assert (await cycle(report_env, client, clock, **hours)).calls == 1
    assert report_env.state("t")["queued_wanted"] is True
    async with ReportClient() as client:
        clock.now += 1800
        assert (await cycle(report_env, client, clock, **hours)).calls == 0  # DND holds it
        clock.now += 1800  # DND over: the follow-up the tenant asked for is made
        assert (await cycle(report_env, client, clock, **hours)).calls == 1
    state = report_env.state("t")
    assert state["queued_wanted"] is False and state["queued_calls"] == 1
    assert len(srv.calls) == 2


async def test_queued_stops_when_tenant_is_done(report_env, tenant_server, sync_client) -> None:
    srv = tenant_server(ok(queued=0))
    srv.script(ok(queued=2), ok(queued=1))
    report_env.add_tenant("t", srv.base_url)
    assert (await run_report_cycle(report_env.ctx(sync_client))).calls == 3


async def test_dnd_suppresses_heartbeats_not_events_and_survives_restart(
    report_env, tenant_server
) -> None:
    srv = tenant_server(ok())
    clock = Clock()
    srv.script(ok(queued=3, next_sync_after=clock.now + 3600))
    report_env.add_tenant("t", srv.base_url)
    async with ReportClient() as client:
        assert (await cycle(report_env, client, clock)).calls == 1  # queued is not followed
        assert report_env.state("t")["dnd_until"] == clock.now + 3600
    # A "restart": a new client and context over the same database.
    async with ReportClient() as client:
        clock.now += 600  # a heartbeat would be due
        assert (await cycle(report_env, client, clock)).calls == 0
        report_env.record_sent("t", ["e1"], now=clock.now)
        assert (await cycle(report_env, client, clock)).calls == 1
        assert [i["id"] for i in srv.calls[-1].items] == ["e1"]
        # That acknowledgement had no next_sync_after: DND is cleared.
        assert report_env.state("t")["dnd_until"] is None


async def test_non_ack_leaves_dnd_and_run_now_clears_it(
    report_env, tenant_server, sync_client
) -> None:
    srv = tenant_server()
    clock = Clock()
    srv.script(ok(next_sync_after=clock.now + 3600), status(502))
    report_env.add_tenant("t", srv.base_url)
    await cycle(report_env, sync_client, clock)
    report_env.record_sent("t", ["e1"], now=clock.now)
    await cycle(report_env, sync_client, clock)  # 502: back-off, DND unchanged
    state = report_env.state("t")
    assert state["dnd_until"] == clock.now + 3600 and state["backoff_until"] == clock.now + 1
    assert state["last_error"] == "HTTP 502"

    report_env.db.run(store_report.run_now, "t")  # what a tenant-scoped run-now stores
    state = report_env.state("t")
    assert (state["dnd_until"], state["backoff_until"], state["heartbeat_due"]) == (
        None,
        None,
        True,
    )
    assert (await cycle(report_env, sync_client, clock)).calls == 1
    assert report_env.state("t")["heartbeat_due"] is False
    assert report_env.unreported("t") == 0
