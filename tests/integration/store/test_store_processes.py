"""Several OS processes on one database: exclusive claims, exact rate limits, crashed claimers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mailproxyd.core.ratelimit import whole_second
from mailproxyd.store import Database, leases, queue, ratelimit
from mailproxyd.store import messages as store_messages
from tests.helpers import wait_for

from .conftest import NOW, make_item, rate_windows

ROOT = Path(__file__).resolve().parents[3]


def _spawn(mode: str, url: str, sync: Path, name: str, key: bytes, *args: str) -> subprocess.Popen:
    env = {**os.environ, "MAIL_PROXY_TEST_KEY": key.hex(), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.store.store_worker",
            mode,
            url,
            str(sync),
            name,
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_together(procs: list[subprocess.Popen], sync: Path, names: list[str]) -> list[Any]:
    def ready() -> bool:
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read() if proc.stderr else "worker died")
        return all((sync / f"{name}.ready").exists() for name in names)

    wait_for(ready, timeout=60, interval=0.01, what="workers ready")
    (sync / "go").touch()
    outputs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        outputs.append(json.loads(stdout))
    return outputs


@pytest.mark.slow
def test_four_processes_claim_each_message_exactly_once(
    acme: Database, db_url: str, instance_key: bytes, tmp_path: Path
) -> None:
    items = [make_item(f"m{i:05d}") for i in range(10_000)]
    with acme.transaction() as tx:
        for start in range(0, len(items), 1000):
            queue.enqueue(tx, "acme", items[start : start + 1000], [], NOW)
        expected = {r["pk"] for r in store_messages.list_messages(tx, "acme", NOW, limit=10_000)[0]}
    assert len(expected) == 10_000
    names = [f"claimer{i}" for i in range(4)]
    procs = [_spawn("claim", db_url, tmp_path, name, instance_key) for name in names]
    claimed_lists = _run_together(procs, tmp_path, names)
    counts = Counter(pk for claimed in claimed_lists for pk in claimed)
    assert set(counts) == expected
    assert max(counts.values()) == 1, "a message was claimed twice"
    assert sum(1 for claimed in claimed_lists if claimed) >= 2, "no concurrency happened"
    with acme.transaction(write=False) as tx:
        stats = store_messages.stats(tx, NOW, "acme")
    assert stats["messages"]["sending"] == 10_000


def test_rate_limit_holds_exactly_across_four_processes(
    acme: Database, db_url: str, instance_key: bytes, tmp_path: Path
) -> None:
    names = [f"reserver{i}" for i in range(4)]
    procs = [_spawn("reserve", db_url, tmp_path, name, instance_key, "6") for name in names]
    outcomes = [o for out in _run_together(procs, tmp_path, names) for o in out]
    assert len(outcomes) == 24
    assert sum(1 for o in outcomes if o["granted"]) == 10
    with acme.transaction() as tx:
        slots = [
            row["slot_ts"] for row in tx.raw("SELECT slot_ts FROM rate_slots ORDER BY slot_ts")
        ]
        late = ratelimit.reserve(
            tx, "acme", "main", None, time.time(), rate_windows(limit_per_minute=10)
        )
    assert len(slots) == 10
    oldest = slots[0]
    assert not late.granted and late.blocking == ("limit_per_minute",)
    assert late.free_at == whole_second(oldest + 60)
    for outcome in outcomes:
        if not outcome["granted"]:
            assert outcome["free_at"] == whole_second(oldest + 60)


def test_dead_claimer_messages_come_back_after_lease_expiry(
    acme: Database, db_url: str, instance_key: bytes, tmp_path: Path
) -> None:
    with acme.transaction() as tx:
        queue.enqueue(tx, "acme", [make_item(f"d{i}") for i in range(5)], [], NOW)
    dead_owner = "dying-node/sender-0"
    proc = _spawn("claim-and-hang", db_url, tmp_path, "dying", instance_key, dead_owner, str(NOW))
    try:

        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            return (tmp_path / "dying.ready").exists()

        wait_for(ready, timeout=60, interval=0.01, what="the claimer ready")
        (tmp_path / "go").touch()
        assert proc.stdout is not None
        claimed = json.loads(proc.stdout.readline())
        assert len(claimed) == 5
    finally:
        proc.kill()
        proc.communicate(timeout=10)  # reaps it and closes its pipes
    with acme.transaction() as tx:
        # Still leased to the dead process until its lease expires.
        assert queue.claim_batch(tx, "acme", "main", "node-b/sender-0", 10, NOW + 100, 120) == []
    with acme.transaction() as tx:
        back = queue.claim_batch(tx, "acme", "main", "node-b/sender-0", 10, NOW + 121, 120)
    assert sorted(row["pk"] for row in back) == sorted(claimed)
    assert all(row["expiry_count"] == 1 for row in back)
    with acme.transaction() as tx:
        # A late completion carrying the dead claimer's lease is refused.
        assert not leases.complete_sent(tx, claimed[0], dead_owner, NOW + 122)
        assert leases.complete_sent(tx, claimed[0], "node-b/sender-0", NOW + 122)
