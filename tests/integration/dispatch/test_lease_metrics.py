"""Messages failed by their third lease expiry count in ``gmp_errors_total`` (reference §8.3, §14).

A lease ends in an error in four places: inside a claim of the account (the only place in
test mode, which runs no expiry sweep, reference §8.7), in the sender's periodic sweep, and in
the supervisor's release of a dead worker run or of its node's previous run. Each message here
is claimed and abandoned twice by a sender that "crashed", so the next expiry is its third.
The counts are read from this process's metrics (in memory: ``metrics.activate`` is not called).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mailproxyd.drivers import metrics
from mailproxyd.services.dispatch.cycle import run_dispatch_cycle
from mailproxyd.store import queue
from mailproxyd.store.leases import INTERRUPTED
from mailproxyd.supervision import startup
from tests.integration.dispatch.conftest import Harness

CRASHED = "test-node/sender-9-4242"
LABELS = {
    "tenant_id": "acme",
    "tenant_name": "ACME Corp",
    "account_id": "main",
    "account_name": "main",
}


def errors(**labels: str) -> float:
    wanted = labels or LABELS
    for family in text_string_to_metric_families(metrics.render(None).decode()):
        for s in family.samples:
            if s.name == "gmp_errors_total" and s.labels == wanted:
                return s.value
    return 0.0


def abandon_twice(harness: Harness, ids: list[str], *, lease_until: float) -> None:
    """Claim ``ids`` three times as a sender that never finishes: two expiries so far, the
    third lease running until ``lease_until``."""
    lease = 100.0
    start = lease_until - 3 * (lease + 1) + 1
    for n in range(3):
        now = start + n * (lease + 1)
        with harness.database.transaction() as tx:
            rows = queue.claim_batch(tx, "acme", "main", CRASHED, 100, now, lease)
        assert sorted(r["id"] for r in rows) == sorted(ids)


async def test_the_claim_counts_the_messages_it_fails(harness: Harness, pool: Any) -> None:
    # Test mode: no sweep, so the claim of the account is what finds the expired leases.
    harness.settings = dataclasses.replace(harness.settings, test_mode=True)
    harness.tenant("acme", name="ACME Corp")
    harness.enqueue("acme", ["m1", "m2"])
    abandon_twice(harness, ["m1", "m2"], lease_until=time.time() - 5)
    harness.enqueue("acme", ["fresh"])
    before = errors()

    await run_dispatch_cycle(harness, pool=pool)

    assert harness.record("acme", "m1")["status"] == "error"
    assert harness.record("acme", "m1")["error"] == INTERRUPTED
    assert harness.record("acme", "fresh")["status"] == "sent"
    assert errors() - before == 2


async def test_the_sweep_counts_the_messages_it_fails(harness: Harness, pool: Any) -> None:
    harness.tenant("acme", name="ACME Corp")
    harness.enqueue("acme", ["m1"])
    abandon_twice(harness, ["m1"], lease_until=time.time() - 5)
    before = errors()

    await run_dispatch_cycle(harness, pool=pool)

    assert harness.record("acme", "m1")["status"] == "error"
    assert errors() - before == 1


def test_releasing_a_dead_run_names_what_failed(harness: Harness) -> None:
    # A tenant without a name is labelled with its id (reference §14).
    harness.enqueue("acme", ["m1", "m2"])
    abandon_twice(harness, ["m1", "m2"], lease_until=time.time() + 60)
    with harness.database.transaction() as tx:
        released, failed = startup.release_owner_prefix(tx, CRASHED, time.time())
    assert released == 2
    assert sorted(r["id"] for r in failed) == ["m1", "m2"]
    assert {(r["tenant_id"], r["tenant_name"], r["account_id"]) for r in failed} == {
        ("acme", None, "main")
    }
    before = errors(**{**LABELS, "tenant_name": "acme"})
    metrics.lease_failures(failed)
    assert errors(**{**LABELS, "tenant_name": "acme"}) - before == 2


def test_a_node_releasing_its_previous_run_names_what_failed(harness: Harness) -> None:
    harness.tenant("acme", name="ACME Corp")
    harness.enqueue("acme", ["m1"])
    abandon_twice(harness, ["m1"], lease_until=time.time() + 60)
    with harness.database.transaction() as tx:
        released, failed = startup._release_node_leases(tx, "test-node")
    assert released == 1
    assert [(r["id"], r["tenant_name"], r["account_id"]) for r in failed] == [
        ("m1", "ACME Corp", "main")
    ]
    assert harness.record("acme", "m1")["error"] == INTERRUPTED
