"""A message whose account is deleted while it is being sent counts as the error it becomes
(reference §5.4, §14): not as a deferral when its attempt ends in one, and counted at all when
it is handed back unattempted (release at stop).

A real SMTP server (``scripted_smtp``) and a real database on each backend; the counts are
read from this process's metrics (in memory: ``metrics.activate`` is not called).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio
from prometheus_client.parser import text_string_to_metric_families

from mailproxyd.drivers import metrics
from mailproxyd.services.dispatch.cycle import run_dispatch_cycle
from mailproxyd.services.dispatch.record import Committer, Completion, Recorder
from mailproxyd.store import accounts, queue
from tests.integration.dispatch.conftest import Harness
from tests.integration.dispatch.scripted_smtp import ScriptedController

LABELS = {"tenant_id": "acme", "tenant_name": "acme", "account_id": "main", "account_name": "main"}


def counts() -> dict[str, float]:
    found = {"gmp_errors_total": 0.0, "gmp_deferred_total": 0.0, "gmp_sent_total": 0.0}
    for family in text_string_to_metric_families(metrics.render(None).decode()):
        for sample in family.samples:
            if sample.name in found and sample.labels == LABELS:
                found[sample.name] = sample.value
    return found


def delta(before: dict[str, float]) -> dict[str, float]:
    return {name: value - before[name] for name, value in counts().items()}


async def wait_for_data(smtp: ScriptedController, n: int, timeout: float = 10.0) -> None:
    """Poll until the server holds the data of ``n`` messages (their replies still to come)."""
    with trio.fail_after(timeout):
        while smtp.scripted.data_received < n:
            await trio.sleep(0.01)


def delete_account(harness: Harness) -> None:
    with harness.database.transaction() as tx:
        accounts.delete(tx, "acme", "main", harness.now())


async def test_a_deferral_after_the_account_was_deleted_counts_as_an_error(
    harness: Harness, smtp: ScriptedController, pool: Any
) -> None:
    harness.enqueue("acme", ["m1"], to=["slow1000@example.org", "data451@example.org"])
    before = counts()

    async def delete_during_the_attempt() -> None:
        await wait_for_data(smtp, 1)
        delete_account(harness)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(delete_during_the_attempt)
        await run_dispatch_cycle(harness, pool=pool)
    record = harness.record("acme", "m1")
    assert record["status"] == "error" and record["error"] == "account deleted"
    assert delta(before) == {
        "gmp_errors_total": 1.0,
        "gmp_deferred_total": 0.0,
        "gmp_sent_total": 0.0,
    }


async def test_messages_handed_back_at_stop_after_the_account_was_deleted_count_as_errors(
    harness: Harness, smtp: ScriptedController, pool: Any
) -> None:
    # One session: m2 and m3 wait behind m1, whose reply comes late; the stop arrives meanwhile.
    harness.account("acme", "main", max_concurrent=1)
    harness.enqueue("acme", ["m1"], to=["slow1000@example.org"], priority=0)
    harness.enqueue("acme", ["m2", "m3"], priority=3)
    before = counts()

    async def delete_then_stop() -> None:
        await wait_for_data(smtp, 1)
        delete_account(harness)
        harness.request_stop(60.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(delete_then_stop)
        await run_dispatch_cycle(harness, pool=pool)
    assert harness.record("acme", "m1")["status"] == "sent"
    for key in ("m2", "m3"):
        record = harness.record("acme", key)
        assert record["status"] == "error" and record["error"] == "account deleted"
    assert smtp.scripted.data_received == 1
    assert delta(before) == {
        "gmp_errors_total": 2.0,
        "gmp_deferred_total": 0.0,
        "gmp_sent_total": 1.0,
    }


async def test_the_recorder_counts_a_release_that_failed(harness: Harness) -> None:
    harness.enqueue("acme", ["kept", "gone"])
    with harness.database.transaction() as tx:
        rows = {
            r["id"]: r
            for r in queue.claim_batch(tx, "acme", "main", harness.owner, 10, time.time(), 120)
        }
    recorder = Recorder(
        Committer(harness.db),
        harness.owner,
        logging.getLogger("tests.dispatch"),
        delivery_log=lambda: False,
        on_events=_nothing,
    )
    before = counts()
    assert await recorder.record(Completion(rows["kept"], "release", time.time()))
    assert delta(before)["gmp_errors_total"] == 0.0
    assert harness.record("acme", "kept")["status"] == "pending"
    delete_account(harness)
    held = await recorder.record_many([Completion(rows["gone"], "release", time.time())])
    assert held == [True]
    assert harness.record("acme", "gone")["error"] == "account deleted"
    assert delta(before) == {
        "gmp_errors_total": 1.0,
        "gmp_deferred_total": 0.0,
        "gmp_sent_total": 0.0,
    }


async def test_the_recorder_counts_a_deferral_that_failed(harness: Harness) -> None:
    harness.enqueue("acme", ["m1"])
    with harness.database.transaction() as tx:
        (row,) = queue.claim_batch(tx, "acme", "main", harness.owner, 10, time.time(), 120)
    delete_account(harness)
    woken: list[int] = []

    async def on_events() -> None:
        woken.append(1)

    recorder = Recorder(
        Committer(harness.db),
        harness.owner,
        logging.getLogger("tests.dispatch"),
        delivery_log=lambda: False,
        on_events=on_events,
    )
    before = counts()
    item = Completion(
        row, "deferred", time.time(), text="451 later", deferred_ts=time.time() + 60, attempt=1
    )
    assert await recorder.record(item)
    assert harness.record("acme", "m1")["error"] == "account deleted"
    assert delta(before)["gmp_errors_total"] == 1.0
    assert delta(before)["gmp_deferred_total"] == 0.0
    assert woken  # the error event wakes the reporter


async def _nothing() -> None:
    return None
