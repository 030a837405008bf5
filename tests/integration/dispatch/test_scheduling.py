"""Ordering, wake-ups, test mode, shutdown and the delivery log (reference §8.2, §8.6, §8.7,
§18.3 step 2, reference §18.6), through ``sender_loop`` and ``run_dispatch_cycle`` in-process."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import pytest
import trio
import trio.testing

from mailproxyd.services.dispatch import smtp as dispatch_smtp
from mailproxyd.services.dispatch.cycle import run_dispatch_cycle, sender_loop
from mailproxyd.services.dispatch.smtp import close_pool
from mailproxyd.store import meta, queue
from tests.helpers import until
from tests.integration.dispatch.conftest import Harness
from tests.integration.dispatch.scripted_smtp import ScriptedController


def _statuses(harness: Harness, tenant_id: str, ids: list[str]) -> dict[str, str]:
    """Read statuses (the ``pending``/``deferred`` reading of reference §1.2) through the store."""
    return {i: harness.record(tenant_id, i)["status"] for i in ids}


async def test_immediate_overtakes_a_backlog_of_low_messages(
    harness: Harness, smtp: ScriptedController, pool: Any
) -> None:
    # One session, so arrival order is admission order and the assertion is exact.
    harness.account("acme", "main", max_concurrent=1)
    lows = [f"low{i:04d}" for i in range(1000)]
    harness.enqueue("acme", lows, priority=3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: sender_loop(harness, harness.wake, pool=pool))
        await until(lambda: len(smtp.scripted.ids()) >= 20)
        harness.enqueue("acme", ["urgent"], priority=0)
        harness.wake.ring()
        # Not yet claimed once "urgent" is committed: every one of these must come after it.
        waiting = harness.with_status("pending")
        await until(lambda: "urgent" in smtp.scripted.ids(), timeout=30)
        harness.request_stop(5)
    order = smtp.scripted.ids()
    before = set(order[: order.index("urgent")])
    assert len(waiting) > 800  # the backlog really was there when "urgent" arrived
    assert not before & waiting
    # Only what was already claimed (at most one batch) went out ahead of it.
    assert len(before) <= 20 + harness.settings.batch_size_per_account


async def test_limit_one_per_minute_sends_the_immediate_first(
    harness: Harness, smtp: ScriptedController, pool: Any
) -> None:
    """reference §8.2's consequence: three low, then one immediate, queued while dispatch is held."""
    harness.account("acme", "main", limit_per_minute=1)
    with harness.database.transaction() as tx:
        meta.set_scheduler_active(tx, False)
    harness.enqueue("acme", ["low1", "low2", "low3"], priority=3)
    harness.enqueue("acme", ["now"], priority=0)
    assert await run_dispatch_cycle(harness, pool=pool) == 0  # held
    with harness.database.transaction() as tx:
        meta.set_scheduler_active(tx, True)
    await run_dispatch_cycle(harness, pool=pool)
    assert smtp.scripted.ids() == ["now"]
    for low in ("low1", "low2", "low3"):
        assert harness.record("acme", low)["deferred_reason"] == "rate_limit"


async def test_wake_up_starts_delivery_at_once(
    harness: Harness, smtp: ScriptedController, pool: Any
) -> None:
    """An enqueue wake-up is served without waiting for the (here very long) poll tick."""
    harness.settings = dataclasses.replace(harness.settings, send_loop_interval=30.0)
    async with trio.open_nursery() as nursery:
        harness.enqueue("acme", ["m0"])
        nursery.start_soon(lambda: sender_loop(harness, harness.wake, pool=pool))
        # Once m0 is out, the loop has nothing to do and would sleep for 30 s.
        await until(lambda: smtp.scripted.ids() == ["m0"], timeout=5)
        await until(lambda: harness.with_status("sending") == set(), timeout=5)
        harness.enqueue("acme", ["m1"])
        queued = time.monotonic()
        harness.wake.ring()
        await until(lambda: smtp.scripted.ids() == ["m0", "m1"], timeout=5)
        latency = time.monotonic() - queued
        harness.enqueue("acme", ["m2"], deferred_ts=time.time() + 1.0)
        harness.wake.ring()
        await until(lambda: len(smtp.scripted.ids()) == 3, timeout=5)
        harness.request_stop(5)
    assert latency < 1.0
    m2 = harness.record("acme", "m2")
    # The idle sleep ends at the earliest deferred_ts, not at the 30 s tick (reference §8.6).
    assert m2["sent_ts"] - m2["created_at"] < 2.5


async def test_test_mode_runs_only_on_request(
    harness: Harness,
    smtp: ScriptedController,
    pool: Any,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mailproxyd.services.dispatch.cycle import Dispatcher

    started: list[float] = []
    real_cycle = Dispatcher.cycle

    async def counted(self: Dispatcher, *, expire: bool) -> int:
        started.append(trio.current_time())
        return await real_cycle(self, expire=expire)

    monkeypatch.setattr(Dispatcher, "cycle", counted)
    harness.settings = dataclasses.replace(harness.settings, test_mode=True)
    harness.enqueue("acme", ["m1", "m2"])
    harness.enqueue("acme", ["retry"], to=["data451@example.org"])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: sender_loop(harness, harness.wake, pool=pool))
        harness.wake.ring()  # wake-ups do nothing in test mode
        # The loop runs on the trio clock, which jumps (autojump_clock) whenever every task
        # waits: an hour of the loop's time, many poll ticks, passes at once. No cycle starts.
        await trio.sleep(3600)
        assert started == [] and smtp.scripted.ids() == []
        # From here on the clock runs as a real one: the cycle waits for SMTP in threads.
        autojump_clock.autojump_threshold = math.inf
        autojump_clock.rate = 1.0
        harness.cycles.ring()
        await until(lambda: harness.cycles_done == 1)
        harness.request_stop(5)
    assert sorted(smtp.scripted.ids()) == ["m1", "m2"]
    record = harness.record("acme", "retry")
    # Deferred during the cycle: not ready again within it.
    assert record["status"] == "deferred" and record["retry_count"] == 1


async def test_shutdown_releases_claimed_messages_that_did_not_start(
    harness: Harness, smtp: ScriptedController, pool: Any
) -> None:
    harness.account("acme", "main", max_concurrent=1, batch_size=10)
    ids = [f"m{i}" for i in range(10)]
    harness.enqueue("acme", ids, to=["slow400@example.org"])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: sender_loop(harness, harness.wake, pool=pool))
        await until(lambda: len(harness.leases()) == 10)  # the whole batch is claimed
        await until(lambda: smtp.scripted.sessions == 1)  # and the first is on the wire
        harness.request_stop(10)
    statuses = _statuses(harness, "acme", ids)
    assert statuses["m0"] == "sent"  # the transaction in progress finished within the grace
    assert {statuses[i] for i in ids[1:]} == {"pending"}
    events = harness.events()
    assert [e["id"] for e in events] == ["m0"]  # released without an event
    with harness.database.transaction(write=False) as tx:
        cursor = tx._cursor
        cursor.execute("SELECT id, expiry_count, lease_owner FROM messages")
        rows = {r["id"]: r for r in cursor.fetchall()}
    assert all(rows[i]["expiry_count"] == 0 and rows[i]["lease_owner"] is None for i in ids[1:])
    with harness.database.transaction(write=False) as tx:
        assert queue.ready_accounts(tx, time.time())  # ready again at once, not after a lease


async def test_shutdown_deadline_aborts_a_stalled_transaction_as_uncertain(
    harness: Harness, smtp: ScriptedController, pool: Any
) -> None:
    harness.account("acme", "main", max_concurrent=1)
    harness.enqueue("acme", ["stuck"], to=["slow4000@example.org"])
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: sender_loop(harness, harness.wake, pool=pool))
        # The data is in and the reply is 4 s out when the stop comes.
        await until(lambda: smtp.scripted.data_received == 1)
        harness.request_stop(1.5)
    assert time.monotonic() - started < 3.5  # cut off at the deadline, not after the reply
    record = harness.record("acme", "stuck")
    assert record["status"] == "deferred"
    assert record["outcome_uncertain"] is True
    assert record["retry_count"] == 1


async def test_sender_loop_closes_its_pool_with_quit(
    harness: Harness, smtp: ScriptedController, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Any] = []
    real_make = dispatch_smtp.make_pool

    def make(settings: Any) -> Any:
        made.append(real_make(settings))
        return made[-1]

    monkeypatch.setattr("mailproxyd.services.dispatch.smtp.make_pool", make)
    harness.enqueue("acme", ["m1"])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: sender_loop(harness, harness.wake))
        await until(lambda: smtp.scripted.ids() == ["m1"])
        harness.request_stop(5)
    assert len(made) == 1
    await until(lambda: smtp.scripted.sessions == 0, timeout=5)
    await close_pool(made[0])  # idempotent


async def test_delivery_log_lines(
    harness: Harness, pool: Any, caplog: pytest.LogCaptureFixture
) -> None:
    harness.enqueue("acme", ["ok"], to=["ann@example.org", "bob@example.org"])
    harness.enqueue("acme", ["later"], to=["data451@example.org"])
    harness.enqueue("acme", ["bad"], to=["data554@example.org"])
    with caplog.at_level(logging.INFO, logger="tests.dispatch"):
        await run_dispatch_cycle(harness, pool=pool)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("delivery ")]
    sent = next(line for line in lines if " id=ok " in line)
    assert sent.startswith("delivery sent tenant=acme id=ok account=main rcpts=2 attempt=1 ")
    assert sent.split()[-1].startswith("duration_ms=")
    later = next(line for line in lines if " id=later " in line)
    until = time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(harness.record("acme", "later")["deferred_ts"])
    )
    assert later == (
        f"delivery deferred tenant=acme id=later account=main attempt=1 until={until} "
        'reason="DATA: 451 4.3.0 Temporary failure, try again later"'
    )
    bad = next(line for line in lines if " id=bad " in line)
    assert bad == (
        "delivery failed tenant=acme id=bad account=main attempt=1 "
        'reason="DATA: 554 5.7.1 Message rejected"'
    )
    assert harness.link.wakes("reporter") >= 1  # recorded events wake the reporter


async def test_cycle_without_a_pool_keeps_one_per_context(
    harness: Harness, smtp: ScriptedController
) -> None:
    """How ``workers/sender.py`` calls it: ``run_dispatch_cycle(ctx)`` with no pool; the pool it
    makes is kept for the next cycle and closed with ``QUIT`` by ``close_dispatch_pool``."""
    from mailproxyd.services.dispatch.cycle import close_dispatch_pool

    harness.enqueue("acme", ["m1"])
    assert await run_dispatch_cycle(harness) == 1
    harness.enqueue("acme", ["m2"])
    assert await run_dispatch_cycle(harness) == 1
    assert smtp.scripted.ids() == ["m1", "m2"]
    await close_dispatch_pool(harness)
    await until(lambda: smtp.scripted.sessions == 0, timeout=5)


async def test_one_session_carries_a_batch_with_mixed_outcomes(
    harness: Harness, smtp: ScriptedController, pool: Any
) -> None:
    # One session, one batch: sent, refused and temporarily failed messages share it, each
    # gets its own outcome, in claim order, and the connection is opened once.
    harness.account("acme", "main", max_concurrent=1, batch_size=20)
    harness.enqueue("acme", ["a0", "a1"])
    harness.enqueue("acme", ["b550"], to=["rcpt550@example.org"])
    harness.enqueue("acme", ["c451"], to=["data451@example.org"])
    harness.enqueue("acme", ["d0", "d1"])
    before = smtp.scripted.connections  # the controller's own start-up probe counts too
    handled = await run_dispatch_cycle(harness, pool=pool)
    assert handled == 6
    assert smtp.scripted.ids() == ["a0", "a1", "d0", "d1"]
    assert smtp.scripted.connections - before == 1
    statuses = _statuses(harness, "acme", ["a0", "a1", "b550", "c451", "d0", "d1"])
    assert statuses == {
        "a0": "sent",
        "a1": "sent",
        "b550": "error",
        "c451": "deferred",
        "d0": "sent",
        "d1": "sent",
    }
    assert {e["id"]: e["event_type"] for e in harness.events()} == statuses


async def test_kick_counts_are_kept_only_while_a_drain_runs(harness: Harness, pool: Any) -> None:
    """The per-account kick counts do not outlive the drains (defect 15.9)."""
    import trio

    from mailproxyd.services.dispatch.cycle import Dispatcher, _env_for

    for n in range(3):
        harness.account("acme", f"acc{n}")
    env = _env_for(harness, None, pool, None, None)
    dispatcher = Dispatcher(env)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dispatcher.normal_loop, harness.wake)
        for round_ in range(3):
            for n in range(3):
                harness.enqueue("acme", [f"m{round_}-{n}"], account_id=f"acc{n}")
            harness.wake.ring()
            await trio.sleep(0.3)
            harness.wake.ring()  # a second look while the drains linger: kicks
        with trio.fail_after(30):
            while len(harness.with_status("sent")) < 9 or env.kick_counts:
                await trio.sleep(0.2)
        harness.request_stop(1.0)
    assert env.kick_counts == {}
