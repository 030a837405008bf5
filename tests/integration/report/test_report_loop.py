"""The normal-mode reporter loop: wake-ups, isolation between tenants, two reporters at once."""

from __future__ import annotations

import functools
import time

import trio

from mailproxyd.drivers.http import ReportClient
from mailproxyd.services.context import Doorbell
from mailproxyd.services.report import reporter_loop, run_report_cycle
from mailproxyd.store import AsyncDatabase, open_database
from mailproxyd.store import report as store_report
from tests.helpers import until
from tests.tenantservers import ok, slow


async def test_events_reported_within_a_second_of_the_wake(
    report_env, tenant_server, sync_client
) -> None:
    srv = tenant_server()
    report_env.add_tenant("t", srv.base_url)
    wake = Doorbell()
    async with trio.open_nursery() as nursery:
        # A long poll interval: only the wake-up can explain a fast report.
        loop = functools.partial(reporter_loop, poll_interval=30)
        await nursery.start(loop, report_env.ctx(sync_client), wake)
        await until(lambda: len(srv.calls) == 1)  # first heartbeat: never acknowledged
        for n in range(3):
            recorded = time.time()
            report_env.record_sent("t", [f"e{n}"])
            wake.ring()
            await until(lambda n=n: len(srv.calls) == n + 2, timeout=1.0)
            assert srv.calls[-1].time - recorded < 1.0
            assert [i["id"] for i in srv.calls[-1].items] == [f"e{n}"]
        nursery.cancel_scope.cancel()


class LateOverview(AsyncDatabase):
    """The real database, but the loop's overview of the tenants comes back ``delay`` seconds
    after it was read, as a slow thread hop under load makes it: by then it may be stale."""

    def __init__(self, inner: AsyncDatabase, delay: float) -> None:
        super().__init__(inner.db)
        self.limiter = inner.limiter
        self.delay = delay

    async def run(self, fn, /, *args, write=True, **kwargs):
        result = await super().run(fn, *args, write=write, **kwargs)
        if fn is store_report.tenants_to_consider:
            await trio.sleep(self.delay)
        return result


async def test_an_overview_older_than_the_serving_does_not_hold_the_tenant(
    report_env, tenant_server, sync_client
) -> None:
    """A serving that ends while the loop reads its overview: the overview still shows the
    events that serving reported. Starting another serving from it finds nothing to do, and
    must not hold the tenant so that the next wake-up is ignored."""
    srv = tenant_server()
    report_env.add_tenant("t", srv.base_url)
    ctx = report_env.ctx(sync_client)
    ctx.db = LateOverview(report_env.adb, delay=1.0)
    wake = Doorbell()
    async with trio.open_nursery() as nursery:
        loop = functools.partial(reporter_loop, poll_interval=30)
        await nursery.start(loop, ctx, wake)
        await until(lambda: len(srv.calls) == 1)  # the first heartbeat
        for n in range(3):
            # Pacing: the serving before has ended and the loop has nothing in flight.
            await trio.sleep(1.5)
            # One event; a second while its serving runs: the loop reads an overview that
            # shows the second, and gets it back after that serving has reported it and ended.
            report_env.record_sent("t", [f"a{n}"])
            wake.ring()
            await until(lambda n=n: len(srv.reported_items()) == 2 * n + 1, timeout=3.0)
            report_env.record_sent("t", [f"b{n}"])
            wake.ring()
            await until(lambda n=n: len(srv.reported_items()) == 2 * n + 2, timeout=3.0)
        nursery.cancel_scope.cancel()
    assert [i["id"] for i in srv.reported_items()] == ["a0", "b0", "a1", "b1", "a2", "b2"]


async def test_polling_finds_events_without_a_wake(report_env, tenant_server, sync_client) -> None:
    srv = tenant_server()
    report_env.add_tenant("t", srv.base_url)
    async with trio.open_nursery() as nursery:
        await nursery.start(reporter_loop, report_env.ctx(sync_client), Doorbell())
        await until(lambda: len(srv.calls) == 1)
        report_env.record_sent("t", ["e"])  # as if recorded on another node: nobody rings
        await until(lambda: len(srv.calls) == 2, timeout=1.0)
        nursery.cancel_scope.cancel()


async def test_a_hanging_tenant_does_not_delay_twenty_others(
    report_env, tenant_server, sync_client
) -> None:
    hanging = tenant_server(slow(60))
    report_env.add_tenant("hang", hanging.base_url)
    others = {f"t{k:02d}": tenant_server() for k in range(20)}
    for tenant_id, srv in others.items():
        report_env.add_tenant(tenant_id, srv.base_url)
    report_env.record_sent("hang", ["h1"])
    wake = Doorbell()
    async with trio.open_nursery() as nursery:
        # The default GMP_SYNC_TIMEOUT (10 s): the hanging call stays in flight throughout.
        await nursery.start(reporter_loop, report_env.ctx(sync_client), wake)
        # The hanging call is in flight; its server may record it after the others answered.
        await until(lambda: all(len(s.calls) == 1 for s in [hanging, *others.values()]))
        await report_env.arecord_sent({t: [f"{t}-e"] for t in others})
        recorded = time.time()
        wake.ring()
        await until(lambda: all(len(s.calls) == 2 for s in others.values()), timeout=2.0)
        for tenant_id, srv in others.items():
            assert [i["id"] for i in srv.calls[1].items] == [f"{tenant_id}-e"]
            assert srv.calls[1].time - recorded < 2.0
        assert len(hanging.calls) == 1 and report_env.unreported("hang") == 1
        nursery.cancel_scope.cancel()


async def test_two_reporters_never_push_one_tenant_concurrently(
    report_env, tenant_server, db_url, secret_box
) -> None:
    """Two reporter processes' worth of state: separate databases handles, clients and owners."""
    servers = {f"t{k}": tenant_server(slow(0.02, ok())) for k in range(4)}
    for tenant_id, srv in servers.items():
        report_env.add_tenant(tenant_id, srv.base_url)
    second_db = open_database(db_url, box=secret_box, pool_size=4)
    expected: dict[str, list[str]] = {t: [] for t in servers}
    try:
        env_b = AsyncDatabase(second_db, limiter_tokens=8)
        wake_a, wake_b = Doorbell(), Doorbell()
        async with ReportClient() as client_a, ReportClient() as client_b, trio.open_nursery() as n:
            ctx_a = report_env.ctx(client_a, owner="node-a/reporter", sync_batch_size=7)
            ctx_b = report_env.ctx(client_b, owner="node-b/reporter", sync_batch_size=7)
            ctx_b.db = env_b
            await n.start(reporter_loop, ctx_a, wake_a)
            await n.start(reporter_loop, ctx_b, wake_b)
            for rnd in range(20):
                batch = {t: [f"{t}-{rnd}-{k}" for k in range(5)] for t in servers}
                await report_env.arecord_sent(batch)
                for tenant_id, ids in batch.items():
                    expected[tenant_id] += ids
                wake_a.ring()
                wake_b.ring()
                await trio.sleep(0.03)  # pace the producer so both reporters get turns
            await until(lambda: all(report_env.unreported(t) == 0 for t in servers), timeout=10)
            n.cancel_scope.cancel()
    finally:
        second_db.close()
    for tenant_id, srv in servers.items():
        assert srv.max_in_flight == 1, "two POSTs to one tenant overlapped"
        got = [i["id"] for i in srv.reported_items()]
        assert got == expected[tenant_id]  # every event once, in order: none skipped


async def test_two_overlapping_cycles_share_tenants_without_overlap(
    report_env, tenant_server, db_url, secret_box
) -> None:
    """Two report cycles started together (a restart, or two nodes in test mode)."""
    servers = {f"t{k}": tenant_server(slow(0.02, ok())) for k in range(6)}
    for tenant_id, srv in servers.items():
        report_env.add_tenant(tenant_id, srv.base_url)
    second_db = open_database(db_url, box=secret_box, pool_size=4)
    expected: dict[str, list[str]] = {t: [] for t in servers}
    calls = {"a": 0, "b": 0}
    try:
        async with ReportClient() as client_a, ReportClient() as client_b:
            ctx_a = report_env.ctx(client_a, owner="node-a/reporter", sync_batch_size=4)
            ctx_b = report_env.ctx(client_b, owner="node-b/reporter", sync_batch_size=4)
            ctx_b.db = AsyncDatabase(second_db, limiter_tokens=8)
            for rnd in range(6):
                batch = {t: [f"{t}-{rnd}-{k}" for k in range(9)] for t in servers}
                await report_env.arecord_sent(batch)
                for tenant_id, ids in batch.items():
                    expected[tenant_id] += ids
                order = [("a", ctx_a), ("b", ctx_b)][:: 1 if rnd % 2 else -1]

                async def cycle(name, ctx):
                    stats = await run_report_cycle(ctx, retention=False)
                    calls[name] += stats.calls

                async with trio.open_nursery() as nursery:
                    for name, ctx in order:
                        nursery.start_soon(cycle, name, ctx)
                # Whoever lost a tenant's lock left it to the other: nothing is left behind.
                assert all(report_env.unreported(t) == 0 for t in servers)
    finally:
        second_db.close()
    assert calls["a"] > 0 and calls["b"] > 0, f"both reporters must take part: {calls}"
    for tenant_id, srv in servers.items():
        assert srv.max_in_flight == 1, "two POSTs to one tenant overlapped"
        assert [i["id"] for i in srv.reported_items()] == expected[tenant_id]


async def test_stopping_lets_the_post_in_flight_finish(
    report_env, tenant_server, sync_client
) -> None:
    srv = tenant_server(slow(0.5, ok()))
    report_env.add_tenant("t", srv.base_url)
    report_env.record_sent("t", ["a"])
    stopping = trio.Event()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            loop = functools.partial(reporter_loop, stopping=stopping)
            await nursery.start(loop, report_env.ctx(sync_client), Doorbell())
            await until(lambda: len(srv.calls) == 1)
            report_env.record_sent("t", ["b"])
            stopping.set()
        # The loop returned on its own once the POST in flight was answered, and started no
        # other: "a" is acknowledged, "b" waits for the shutdown flush or the next start.
    assert len(srv.calls) == 1 and report_env.unreported("t") == 1
