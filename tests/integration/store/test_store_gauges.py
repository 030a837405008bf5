"""The database side of the reference §14 gauges: pending count, queue age, unreported events, the
accounts whose series exist — on both backends (PostgreSQL keeps the count in triggers)."""

from __future__ import annotations

from mailproxyd.store import Database, gauges, leases, queue, tenants
from mailproxyd.store import messages as store_messages

from .conftest import NOW, make_item, setup_tenant

OWNER = "node-1/sender-0"


def _gauges(db: Database, now: float) -> dict:
    with db.transaction(write=False) as tx:
        return gauges.queue_gauges(tx, now)


def test_pending_counts_queued_and_in_flight_and_follows_every_change(acme: Database) -> None:
    assert _gauges(acme, NOW) == {"pending": 0, "queue_age": 0.0, "unreported": {"acme": 0}}
    with acme.transaction() as tx:
        queue.enqueue(tx, "acme", [make_item(f"m{i}") for i in range(5)], [], NOW)
        queue.enqueue(tx, "acme", [make_item("later", deferred_ts=NOW + 600)], [], NOW)
    assert _gauges(acme, NOW + 10)["pending"] == 6
    with acme.transaction() as tx:
        claimed = queue.claim_batch(tx, "acme", "main", OWNER, 3, NOW + 10, 120)
    assert _gauges(acme, NOW + 10)["pending"] == 6  # sending is still pending
    by_id = {row["id"]: row for row in claimed}
    with acme.transaction() as tx:
        assert leases.complete_sent(tx, by_id["m0"]["pk"], OWNER, NOW + 11)
        assert leases.complete_error(tx, by_id["m1"]["pk"], OWNER, NOW + 11, error="550 no")
        assert leases.complete_deferred(
            tx, by_id["m2"]["pk"], OWNER, NOW + 11, deferred_ts=NOW + 3600, reason="451 later"
        )
    found = _gauges(acme, NOW + 20)
    assert found["pending"] == 4
    # acme has no sync URL: its events need no acknowledgement (reference §13.6).
    assert found["unreported"] == {"acme": 0}
    with acme.transaction() as tx:
        store_messages.delete_messages(tx, "acme", ["m3", "later"])
    assert _gauges(acme, NOW + 20)["pending"] == 2
    with acme.transaction() as tx:
        tenants.delete(tx, "acme")
    assert _gauges(acme, NOW + 20) == {"pending": 0, "queue_age": 0.0, "unreported": {}}


def test_queue_age_is_the_oldest_ready_message(acme: Database) -> None:
    setup_tenant(acme, "beta", ("b1", "b2"))
    with acme.transaction() as tx:
        queue.enqueue(tx, "acme", [make_item("new", priority=0)], [], NOW + 50)
        queue.enqueue(tx, "beta", [make_item("old", account_id="b2", priority=3)], [], NOW + 20)
        queue.enqueue(tx, "acme", [make_item("deferred", deferred_ts=NOW + 30)], [], NOW)
    # At NOW+60: "deferred" has been ready since NOW+30, "old" pending since NOW+20.
    assert _gauges(acme, NOW + 60)["queue_age"] == 40.0
    # A deferral not yet due is not ready; pending messages still are.
    assert _gauges(acme, NOW + 25)["queue_age"] == 5.0
    with acme.transaction() as tx:
        store_messages.delete_messages(tx, "beta", ["old"])
    assert _gauges(acme, NOW + 60)["queue_age"] == 30.0
    assert _gauges(acme, NOW + 10) == {
        "pending": 2,
        "queue_age": 0.0,
        "unreported": {"acme": 0, "beta": 0},
    }


def test_many_changes_fold_into_one_count(acme: Database) -> None:
    for n in range(gauges.FOLD_AT + 20):
        with acme.transaction() as tx:
            queue.enqueue(tx, "acme", [make_item(f"m{n}")], [], NOW)
    assert _gauges(acme, NOW)["pending"] == gauges.FOLD_AT + 20
    assert _gauges(acme, NOW)["pending"] == gauges.FOLD_AT + 20
    if acme.backend == "postgres":
        with acme.transaction(write=False) as tx:
            assert tx.raw("SELECT count(*) AS n FROM queue_count")[0]["n"] == 1


def test_unreported_events_per_tenant(acme: Database) -> None:
    setup_tenant(acme, "web", ("w1",), client_base_url="https://app.web.example")
    with acme.transaction() as tx:
        queue.enqueue(tx, "web", [make_item(f"m{i}", account_id="w1") for i in range(3)], [], NOW)
        claimed = queue.claim_batch(tx, "web", "w1", OWNER, 3, NOW, 120)
        for row in claimed[:2]:
            assert leases.complete_sent(tx, row["pk"], OWNER, NOW + 1)
    found = _gauges(acme, NOW + 2)
    assert found["unreported"] == {"acme": 0, "web": 2}
    assert found["pending"] == 1


def test_metric_accounts_carry_the_tenant_name(acme: Database) -> None:
    setup_tenant(acme, "beta", ("b1",), name="Beta Ltd")
    with acme.transaction(write=False) as tx:
        found = sorted(gauges.metric_accounts(tx), key=lambda r: (r["tenant_id"], r["account_id"]))
    assert found == [
        {"tenant_id": "acme", "tenant_name": None, "account_id": "main"},
        {"tenant_id": "beta", "tenant_name": "Beta Ltd", "account_id": "b1"},
    ]
