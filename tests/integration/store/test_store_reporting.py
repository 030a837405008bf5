"""Events for the reporter and the live stream, sync state and the reporter lock (reference §13, §5.5)."""

from __future__ import annotations

import pytest

from mailproxyd.store import Database, events, leases, queue, tenants
from mailproxyd.store import messages as store_messages
from mailproxyd.store import report as store_report

from .conftest import NOW, make_item, setup_tenant

OWNER = "n/s"
URL = "https://app.example"


def _fail_all(db: Database, tenant_id: str, keys: list[str], now: float = NOW) -> None:
    with db.transaction() as tx:
        queue.enqueue(tx, tenant_id, [make_item(k) for k in keys], [], now)
        for row in queue.claim_batch(tx, tenant_id, "main", OWNER, 100, now, 120):
            leases.complete_error(tx, row["pk"], OWNER, now, error=f"bad {row['id']}")


def test_unreported_in_event_order_and_acknowledge(database: Database) -> None:
    setup_tenant(database, "acme", client_base_url=URL)
    setup_tenant(database, "beta", client_base_url=URL)
    _fail_all(database, "acme", ["a1", "a2", "a3"])
    _fail_all(database, "beta", ["b1"])
    with database.transaction() as tx:
        batch = events.unreported(tx, "acme", 2)
        assert [e["id"] for e in batch] == ["a1", "a2"]
        assert batch[0]["event_id"] < batch[1]["event_id"]
        assert batch[0]["description"] == "bad a1" and batch[0]["metadata"] == {}
        assert events.unreported_count(tx, "acme") == 3
        assert events.acknowledge(tx, [e["event_id"] for e in batch], NOW + 1) == 2
        assert events.acknowledge(tx, [batch[0]["event_id"]], NOW + 2) == 0  # already acked
        assert [e["id"] for e in events.unreported(tx, "acme", 10)] == ["a3"]
        assert [e["id"] for e in events.unreported(tx, "beta", 10)] == ["b1"]
        record = store_messages.get_message(tx, "acme", "a1", NOW)
        assert record is not None and record["reported_ts"] == NOW + 1


def test_acknowledge_in_chunks_counts_each_event_once(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "ACK_CHUNK", 3)  # several statements for seven ids
    setup_tenant(database, "acme", client_base_url=URL)
    keys = [f"m{i}" for i in range(7)]
    _fail_all(database, "acme", keys)
    with database.transaction() as tx:
        ids = [e["event_id"] for e in events.unreported(tx, "acme", 100)]
        assert events.acknowledge(tx, ids[:2], NOW + 1) == 2
        # Already acknowledged, repeated and unknown ids are not counted; the rest are.
        assert events.acknowledge(tx, [*ids, ids[4], ids[4], 10**9], NOW + 2) == 5
        assert events.unreported_count(tx, "acme") == 0
        reported = {k: store_messages.get_message(tx, "acme", k, NOW) for k in keys}
        assert {k: r["reported_ts"] for k, r in reported.items() if r} == {
            k: NOW + 1 if k in ("m0", "m1") else NOW + 2 for k in keys
        }
        assert events.acknowledge(tx, [], NOW + 3) == 0


def test_tail_across_tenants(database: Database) -> None:
    setup_tenant(database, "acme")
    setup_tenant(database, "beta")
    with database.transaction(write=False) as tx:
        start = events.last_event_id(tx)
    assert start == 0
    _fail_all(database, "acme", ["a1"])
    _fail_all(database, "beta", ["b1"])
    _fail_all(database, "acme", ["a2"])
    with database.transaction(write=False) as tx:
        every = events.tail(tx, start)
        assert [(e["tenant_id"], e["id"]) for e in every] == [
            ("acme", "a1"),
            ("beta", "b1"),
            ("acme", "a2"),
        ]
        assert [e["id"] for e in events.tail(tx, start, tenant_id="acme")] == ["a1", "a2"]
        assert events.tail(tx, every[-1]["event_id"]) == []
        assert [e["id"] for e in events.tail(tx, every[0]["event_id"], limit=1)] == ["b1"]
        # Tenants without client_base_url: acknowledged when recorded, still on the stream.
        assert all(e["reported_ts"] == NOW for e in every)
        assert events.last_event_id(tx) == every[-1]["event_id"]


def test_events_after_url_is_configured_are_pushed(database: Database) -> None:
    setup_tenant(database, "acme")
    _fail_all(database, "acme", ["before"])
    with database.transaction() as tx:
        tenants.update(tx, "acme", {"client_base_url": URL}, NOW)
    _fail_all(database, "acme", ["after"])
    with database.transaction(write=False) as tx:
        assert [e["id"] for e in events.unreported(tx, "acme", 10)] == ["after"]


def test_sync_state_round_trip(database: Database) -> None:
    setup_tenant(database, "acme", client_base_url=URL, name="ACME")
    setup_tenant(database, "quiet")
    with database.transaction() as tx:
        assert store_report.get_state(tx, "acme") == {
            "last_sync_ts": None,
            "last_attempt_ts": None,
            "dnd_until": None,
            "consecutive_failures": 0,
            "backoff_until": None,
            "last_error": None,
            "queued_calls": 0,
            "queued_wanted": False,
            "heartbeat_due": False,
        }
        state = store_report.save_state(
            tx, "acme", last_attempt_ts=NOW + 1, consecutive_failures=2, last_error="HTTP 503"
        )
        assert state["consecutive_failures"] == 2 and state["last_error"] == "HTTP 503"
        assert state["last_sync_ts"] is None
        state = store_report.save_state(
            tx, "acme", last_sync_ts=NOW + 5, dnd_until=NOW + 3600, queued_wanted=True
        )
        # Only the given fields change; flags and times read back as they were written.
        assert state["consecutive_failures"] == 2 and state["dnd_until"] == NOW + 3600
        assert store_report.get_state(tx, "acme")["queued_wanted"] is True
        assert store_report.get_state(tx, "acme")["last_sync_ts"] == NOW + 5
        store_report.save_state(tx, "acme", dnd_until=NOW + 99, backoff_until=NOW + 50)
        state = store_report.run_now(tx, "acme")
        assert state["dnd_until"] is None and state["backoff_until"] is None
        assert state["heartbeat_due"] is True
        assert store_report.get_state(tx, "acme")["heartbeat_due"] is True
    _fail_all(database, "acme", ["e1", "e2"])
    with database.transaction(write=False) as tx:
        status = store_report.sync_status(tx, NOW)
        assert [s["id"] for s in status] == ["acme", "quiet"]
        assert status[0]["unreported_events"] == 2 and status[0]["name"] == "ACME"
        assert status[0]["last_sync_ts"] == NOW + 5 and status[0]["client_base_url"] == URL
        assert status[1]["last_sync_ts"] is None and status[1]["unreported_events"] == 0
        assert [s["id"] for s in store_report.sync_status(tx, NOW, "quiet")] == ["quiet"]
        assert [s["id"] for s in store_report.tenants_to_consider(tx, NOW)] == ["acme"]


def test_reporter_lock(acme: Database) -> None:
    with acme.transaction() as tx:
        assert store_report.try_lock(tx, "acme", "reporter-1", NOW + 30, NOW)
        assert store_report.try_lock(
            tx, "acme", "reporter-1", NOW + 60, NOW + 10
        )  # extend own lock
        assert not store_report.try_lock(tx, "acme", "reporter-2", NOW + 90, NOW + 59)
        assert store_report.try_lock(
            tx, "acme", "reporter-2", NOW + 120, NOW + 61
        )  # stale lock taken
        store_report.unlock(tx, "acme", "reporter-1")  # not the holder: no effect
        assert not store_report.try_lock(tx, "acme", "reporter-1", NOW + 130, NOW + 62)
        store_report.unlock(tx, "acme", "reporter-2")
        assert store_report.try_lock(tx, "acme", "reporter-1", NOW + 130, NOW + 62)
        assert not store_report.try_lock(tx, "ghost", "reporter-1", NOW + 130, NOW + 62)


def test_tail_never_skips_an_event_committed_late(database: Database) -> None:
    """Two transactions record events; the one with the lower id commits last."""
    import threading

    setup_tenant(database, "acme")
    with database.transaction() as tx:
        queue.enqueue(tx, "acme", [make_item("early"), make_item("late")], [], NOW)
        rows = queue.claim_batch(tx, "acme", "main", OWNER, 2, NOW, 120)
    pks = {row["id"]: row["pk"] for row in rows}
    first_recorded = threading.Event()
    may_commit = threading.Event()

    def slow_writer() -> None:
        with database.transaction() as tx:
            leases.complete_error(tx, pks["early"], OWNER, NOW, error="x")
            first_recorded.set()
            may_commit.wait(10)

    thread = threading.Thread(target=slow_writer)
    thread.start()
    try:
        assert first_recorded.wait(10)
        if database.backend == "sqlite":
            # SQLite serialises writers: the second transaction waits, so no reordering exists.
            may_commit.set()
            thread.join()
        with database.transaction() as tx:
            leases.complete_error(tx, pks["late"], OWNER, NOW, error="y")
        with database.transaction(write=False) as tx:
            seen = events.tail(tx, 0)
        # PostgreSQL: nothing yet, "early" has the lower id and is not committed (a poller that
        # took "late" now would skip "early" for ever). SQLite: both, in order.
        expected = [] if database.backend == "postgres" else ["early", "late"]
        assert [e["id"] for e in seen] == expected
    finally:
        may_commit.set()
        thread.join()
    with database.transaction(write=False) as tx:
        assert [e["id"] for e in events.tail(tx, 0)] == ["early", "late"]


def test_tail_steps_over_old_gaps(database: Database) -> None:
    """A gap left by a deleted message does not stop the stream once it is old."""
    setup_tenant(database, "acme")
    _fail_all(database, "acme", ["a"])
    _fail_all(database, "acme", ["gone"])
    _fail_all(database, "acme", ["b"])
    with database.transaction() as tx:
        store_messages.delete_messages(tx, "acme", ["gone"])
        ids = [e["id"] for e in events.tail(tx, 0)]
    if database.backend == "postgres":
        # "b" was recorded just now: the hole before it might still fill, so the tail waits.
        assert ids == ["a"]
        with database.transaction() as tx:
            tx.raw("UPDATE events SET recorded_at = recorded_at - 5")
            ids = [e["id"] for e in events.tail(tx, 0)]
    assert ids == ["a", "b"]
