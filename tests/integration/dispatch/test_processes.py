"""Dispatch across several sender OS processes on one database (reference §8.3, §8.4, §9).

Each sender is ``sender_proc`` running the real cycle; the SMTP server is the scripted aiosmtpd
server of this test process, reached over TCP. These are the multi-process items of the
engine's acceptance list: rate limits that hold across processes, ``max_concurrent`` counted
across processes, and a sender killed with SIGKILL in the middle of a batch.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio

from mailproxyd.services.dispatch.cycle import run_dispatch_cycle
from tests.integration.dispatch.conftest import Harness
from tests.integration.dispatch.procs import Senders
from tests.integration.dispatch.scripted_smtp import ScriptedController

pytestmark = pytest.mark.slow


@pytest.fixture
async def senders(db_url: str, instance_key: bytes, tmp_path: Path) -> Any:
    group = Senders(db_url, instance_key, tmp_path / "sync")
    group.sync.mkdir()
    try:
        yield group
    finally:
        await group.reap()


def _statuses(harness: Harness, ids: list[str]) -> Counter[str]:
    return Counter(harness.record("acme", i)["status"] for i in ids)


async def test_rate_limit_holds_across_two_processes(
    harness: Harness, smtp: ScriptedController, senders: Senders, pool: Any
) -> None:
    # Small claims so both processes really take part in the same window.
    harness.account("acme", "main", limit_per_minute=3, batch_size=2)
    ids = [f"m{i:02d}" for i in range(10)]
    harness.enqueue("acme", ids)
    for name in ("a", "b"):
        await senders.start(name, "--mode", "cycle")
    await senders.go()
    handled = [(await senders.result(n))["handled"] for n in ("a", "b")]
    assert sum(handled) == 10

    # Exactly three sent in the first window; seven deferred to the exact free time.
    assert (
        sorted(smtp.scripted.ids()) == sorted(smtp.scripted.ids()[:3])
        and len(smtp.scripted.ids()) == 3
    )
    assert _statuses(harness, ids) == {"sent": 3, "deferred": 7}
    sent_ts = sorted(harness.record("acme", i)["sent_ts"] for i in ids if i in smtp.scripted.ids())
    events = harness.events()
    deferrals = [e for e in events if e["event_type"] == "deferred"]
    assert len(deferrals) == 7
    # Slots are stamped at admission, just before each send: the free time is the first
    # slot + 60 s rounded up, which is within the same second as the first send + 60.
    expected = {math.ceil(sent_ts[0] - 0.5 + 60), math.ceil(sent_ts[0] + 60)}
    for event in deferrals:
        meta = event["metadata"]
        assert meta["deferred_reason"] == "rate_limit"
        assert meta["retry_count"] == 0
        assert meta["deferred_ts"] == float(int(meta["deferred_ts"]))  # a whole second
        assert meta["deferred_ts"] in expected
        record = harness.record("acme", event["id"])
        assert record["retry_count"] == 0
        assert record["deferred_ts"] == meta["deferred_ts"]

    # "All sent later": advance the senders' clocks window by window instead of waiting.
    for window in range(1, 5):
        harness.now = lambda w=window: sent_ts[0] + 61 * w + 1
        while await run_dispatch_cycle(harness, pool=pool):
            pass
    received = smtp.scripted.ids()
    assert sorted(received) == ids  # every message, each exactly once
    assert _statuses(harness, ids) == {"sent": 10}


async def test_two_tenants_with_an_account_named_main_never_share_a_budget(
    harness: Harness, smtp: ScriptedController, pool: Any
) -> None:
    harness.account("acme", "main", limit_per_minute=2)
    harness.tenant("beta")
    harness.account("beta", "main", limit_per_minute=2)
    harness.enqueue("acme", ["a1", "a2", "a3"])
    harness.enqueue("beta", ["b1", "b2", "b3"])
    await run_dispatch_cycle(harness, pool=pool)
    assert sorted(smtp.scripted.ids()) == ["a1", "a2", "b1", "b2"]
    assert harness.record("acme", "a3")["deferred_reason"] == "rate_limit"
    assert harness.record("beta", "b3")["deferred_reason"] == "rate_limit"


async def test_max_concurrent_is_counted_across_processes(
    harness: Harness, smtp: ScriptedController, senders: Senders
) -> None:
    harness.account("acme", "main", max_concurrent=2, batch_size=4)
    ids = [f"m{i:02d}" for i in range(24)]
    harness.enqueue("acme", ids, to=["slow60@example.org"])
    for name in ("a", "b"):
        await senders.start(name, "--mode", "cycle")
    await senders.go()
    results = [await senders.result(n) for n in ("a", "b")]
    assert sum(r["handled"] for r in results) == 24
    assert sorted(smtp.scripted.ids()) == ids
    # Never more than two simultaneous sessions, and the limit was actually reached.
    assert smtp.scripted.max_sessions == 2


async def test_sigkill_mid_batch_loses_nothing(
    harness: Harness, smtp: ScriptedController, senders: Senders, capsys: Any
) -> None:
    """Kill one of two senders mid-batch: everything is sent, duplicates only among the
    messages the dead sender had in flight (reference §8.3: at least once)."""
    # Claims of 3 with 6 sessions: each sender gets three sessions, so both are busy.
    harness.account("acme", "main", max_concurrent=6, batch_size=3)
    ids = [f"m{i:03d}" for i in range(120)]
    harness.enqueue("acme", ids, to=["slow25@example.org"])
    for name in ("victim", "survivor"):
        await senders.start(name, "--mode", "loop", "--lease", "2")
    await senders.go()
    with trio.fail_after(30):
        # Mid-batch: well under way, and the victim holding claims right now.
        while len(smtp.scripted.ids()) < 30 or len(_held_by(harness, "victim/")) < 2:
            await trio.sleep(0.002)
    senders.kill("victim")
    await senders.procs["victim"].wait()
    in_flight = _held_by(harness, "victim/")
    assert in_flight, "the victim held no claim when killed; the test proves nothing"

    with trio.fail_after(60):
        while _statuses(harness, ids).get("sent", 0) < len(ids):
            await trio.sleep(0.05)
    senders.terminate("survivor")
    await senders.result("survivor")

    counts = Counter(smtp.scripted.ids())
    assert set(counts) == set(ids)  # none lost
    duplicates = {i for i, n in counts.items() if n > 1}
    assert duplicates <= in_flight
    with capsys.disabled():
        print(
            f"\n[sigkill] {len(in_flight)} message(s) in flight at the kill, "
            f"{len(duplicates)} delivered twice"
        )


def _held_by(harness: Harness, owner_prefix: str) -> set[str]:
    """Ids of the messages whose lease an owner starting with ``owner_prefix`` holds."""
    return {mid for mid, owner in harness.leases().items() if owner.startswith(owner_prefix)}
