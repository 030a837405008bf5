"""Listing, reading, deleting and cleaning up message records; stats (reference §5.1, §5.3)."""

from __future__ import annotations

from typing import Any

from mailproxyd.store import Database, events, leases, queue, tenants
from mailproxyd.store import messages as store_messages

from .conftest import NOW, make_item, setup_tenant

OWNER = "n/s"


def _seed(db: Database) -> dict[str, int]:
    """Messages in every state: p (pending), d (deferred), s (sending), x (sent), e (error)."""
    with db.transaction() as tx:
        queue.enqueue(
            tx,
            "acme",
            [
                make_item("p", priority=3),
                make_item("d", deferred_ts=NOW + 600, batch_code="b1"),
                make_item("s", priority=1),
                make_item("x", priority=0),
                make_item("e", priority=0, account_id="other"),
            ],
            [],
            NOW,
        )
        pks = {
            row["id"]: row["pk"]
            for row in queue.claim_batch(tx, "acme", "main", OWNER, 2, NOW, 120)
        }
        pks.update(
            {
                row["id"]: row["pk"]
                for row in queue.claim_batch(tx, "acme", "other", OWNER, 1, NOW, 120)
            }
        )
        leases.complete_sent(tx, pks["x"], OWNER, NOW + 1)
        leases.complete_error(tx, pks["e"], OWNER, NOW + 2, error="DATA: 550 no", smtp_code=550)
    return pks


def test_listing_filters_and_order(database: Database) -> None:
    setup_tenant(database, "acme", ("main", "other"), name="ACME Corp")
    _seed(database)
    with database.transaction(write=False) as tx:
        every, cursor = store_messages.list_messages(tx, "acme", NOW + 10)
        assert cursor is None
        assert [r["id"] for r in every] == ["x", "e", "s", "d", "p"]
        assert {r["id"]: r["status"] for r in every} == {
            "e": "error",
            "x": "sent",
            "s": "sending",
            "d": "deferred",
            "p": "pending",
        }
        assert every[0]["tenant_name"] == "ACME Corp"
        assert every[1]["error"] == "DATA: 550 no" and every[1]["error_ts"] == NOW + 2
        assert every[0]["sent_ts"] == NOW + 1 and every[0]["error"] is None
        active = [
            r["id"]
            for r in store_messages.list_messages(
                tx, "acme", NOW + 10, statuses=["pending", "deferred", "sending"]
            )[0]
        ]
        assert active == ["s", "d", "p"]
        assert [
            r["id"]
            for r in store_messages.list_messages(tx, "acme", NOW + 10, account_id="other")[0]
        ] == ["e"]
        assert [
            r["id"] for r in store_messages.list_messages(tx, "acme", NOW + 10, batch_code="b1")[0]
        ] == ["d"]
        # Read status: past its time "d" reads pending, and "s" with an expired lease too.
        later = store_messages.list_messages(tx, "acme", NOW + 700, statuses=["pending"])[0]
        assert [r["id"] for r in later] == ["s", "d", "p"]
        assert later[1]["deferred_ts"] is None
        assert store_messages.list_messages(tx, "acme", NOW, statuses=[])[0] == []
        assert store_messages.list_messages(tx, "beta", NOW)[0] == []


def test_cursor_and_offset_pagination(acme: Database) -> None:
    with acme.transaction() as tx:
        queue.enqueue(tx, "acme", [make_item(f"m{i}", priority=i % 2) for i in range(7)], [], NOW)
    seen: list[str] = []
    cursor = None
    pages = 0
    with acme.transaction(write=False) as tx:
        while True:
            page, cursor = store_messages.list_messages(tx, "acme", NOW, limit=3, after=cursor)
            seen.extend(r["id"] for r in page)
            pages += 1
            if cursor is None:
                break
        assert seen == ["m0", "m2", "m4", "m6", "m1", "m3", "m5"] and pages == 3
        page, _ = store_messages.list_messages(tx, "acme", NOW, limit=2, offset=3)
        assert [r["id"] for r in page] == ["m6", "m1"]


def test_history_and_get_message(acme: Database) -> None:
    with acme.transaction() as tx:
        tenants.update(tx, "acme", {"client_base_url": "https://app.acme.example"}, NOW)
        queue.enqueue(tx, "acme", [make_item("h")], [], NOW)
        (row,) = queue.claim_batch(tx, "acme", "main", OWNER, 1, NOW, 120)
        leases.complete_deferred(
            tx,
            row["pk"],
            OWNER,
            NOW + 5,
            deferred_ts=NOW + 65,
            reason="RCPT TO: 451 later",
            smtp_code=451,
        )
        (row,) = queue.claim_batch(tx, "acme", "main", OWNER, 1, NOW + 65, 120)
        leases.complete_sent(tx, row["pk"], OWNER, NOW + 70)
        first_event = events.unreported(tx, "acme", 1)[0]["event_id"]
        events.acknowledge(tx, [first_event], NOW + 71)
    with acme.transaction(write=False) as tx:
        record = store_messages.get_message(tx, "acme", "h", NOW + 80)
        listed = store_messages.list_messages(tx, "acme", NOW + 80, include_history=True)[0]
        assert store_messages.get_message(tx, "acme", "nope", NOW) is None
    assert record is not None
    assert record["status"] == "sent" and record["retry_count"] == 1 and record["smtp_code"] is None
    assert record["reported_ts"] == NOW + 71
    assert [(h["event_type"], h["event_ts"], h["reported_ts"]) for h in record["history"]] == [
        ("deferred", NOW + 5, NOW + 71),
        ("sent", NOW + 70, None),
    ]
    assert record["history"][0]["metadata"] == {
        "deferred_ts": NOW + 65,
        "deferred_reason": "RCPT TO: 451 later",
        "retry_count": 1,
        "smtp_code": 451,
    }
    assert listed[0]["history"] == record["history"]


def test_delete_messages(database: Database) -> None:
    setup_tenant(database, "acme", ("main", "other"))
    setup_tenant(database, "beta")
    _seed(database)
    with database.transaction() as tx:
        queue.enqueue(tx, "beta", [make_item("p")], [], NOW)
        result = store_messages.delete_messages(tx, "acme", ["p", "s", "x", "zz", "p"])
        assert result == {"removed": 2, "not_found": ["zz"], "unauthorized": [], "in_flight": ["s"]}
        assert store_messages.get_message(tx, "beta", "p", NOW) is not None
        rows = tx.raw("SELECT count(*) AS n FROM events WHERE tenant_id = 'acme' AND id = 'x'")
        assert rows[0]["n"] == 0


def test_cleanup_only_fully_acknowledged_terminal_messages(database: Database) -> None:
    setup_tenant(database, "acme", ("main", "other"), client_base_url="https://app.acme.example")
    _seed(database)
    with database.transaction() as tx:
        unacked = events.unreported(tx, "acme", 10)
        assert [e["id"] for e in unacked] == ["x", "e"]
        events.acknowledge(tx, [unacked[0]["event_id"]], NOW + 100)
        assert (
            store_messages.cleanup_messages(tx, "acme", 50, NOW + 149) == 0
        )  # acked 49 s ago only
        assert (
            store_messages.cleanup_messages(tx, "acme", 50, NOW + 150) == 1
        )  # "x" goes, "e" is unacked
        assert store_messages.cleanup_messages(tx, "acme", 0, NOW + 1000) == 0
        assert {r["id"] for r in store_messages.list_messages(tx, "acme", NOW)[0]} == {
            "p",
            "d",
            "s",
            "e",
        }


def test_stats_by_read_status(database: Database) -> None:
    setup_tenant(database, "acme", ("main", "other"))
    setup_tenant(database, "beta")
    _seed(database)
    with database.transaction(write=False) as tx:
        now_stats = store_messages.stats(tx, NOW + 10, "acme")
        later = store_messages.stats(tx, NOW + 700)
    assert now_stats == {
        "tenants": 1,
        "accounts": 2,
        "messages": {"pending": 1, "deferred": 1, "sending": 1, "sent": 1, "error": 1},
    }
    assert later["tenants"] == 2 and later["accounts"] == 3
    assert later["messages"] == {"pending": 3, "deferred": 0, "sending": 0, "sent": 1, "error": 1}


def test_bounce_recording(acme: Database) -> None:
    with acme.transaction() as tx:
        queue.enqueue(tx, "acme", [make_item("bm", message_id="<bm@acme.example>")], [], NOW)
        (row,) = queue.claim_batch(tx, "acme", "main", OWNER, 1, NOW, 120)
        leases.complete_sent(tx, row["pk"], OWNER, NOW)
        (match,) = store_messages.find_by_header(tx, "<bm@acme.example>")
        assert store_messages.find_by_client_id(tx, "bm")[0]["pk"] == match["pk"]
        kwargs = {
            "bounce_type": "hard",
            "bounce_code": "5.1.1",
            "bounce_reason": "smtp; 550 5.1.1",
            "recipient": "ann@example.org",
        }
        assert events.record_bounce(tx, match["pk"], NOW + 3600, **kwargs)
        assert not events.record_bounce(tx, match["pk"], NOW + 3700, **kwargs)  # same bounce again
        record = store_messages.get_message(tx, "acme", "bm", NOW)
    assert record is not None and record["status"] == "sent"
    assert (record["bounce_type"], record["bounce_code"], record["bounce_ts"]) == (
        "hard",
        "5.1.1",
        NOW + 3600,
    )
    assert [h["event_type"] for h in record["history"]] == ["sent", "bounce"]
    assert record["history"][1]["metadata"]["bounce_reason"] == "smtp; 550 5.1.1"


def _base64_attachment(size: int) -> dict[str, Any]:
    import base64

    data = base64.b64encode(b"x" * size).decode()
    return {"filename": "a.bin", "fetch_mode": "base64", "storage_path": data, "size": size}


def test_records_show_no_attachment_data_and_a_page_holds_none_of_it(acme: Database) -> None:
    """reference §5.3: base64 attachments without ``storage_path`` but with ``size``; listing 200
    records of 100 kB attachments stays far below their 27 MB of data (defect 15.7)."""
    import tracemalloc

    items = [make_item(f"m{i}", attachments=[_base64_attachment(100_000)]) for i in range(200)]
    small = make_item("small", attachments=[_base64_attachment(10)])
    with acme.transaction() as tx:
        queue.enqueue(tx, "acme", [*items, small], [], NOW)
    with acme.transaction(write=False) as tx:
        one = store_messages.get_message(tx, "acme", "small", NOW)
        assert one is not None
        assert one["message"]["attachments"] == [
            {"filename": "a.bin", "fetch_mode": "base64", "size": 10}
        ]
        tracemalloc.start()
        try:
            records, _ = store_messages.list_messages(tx, "acme", NOW, limit=1000)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(records) == 201
    assert all("storage_path" not in r["message"]["attachments"][0] for r in records)
    assert records[0]["message"]["attachments"][0]["size"] == 100_000
    assert peak < 5_000_000, peak
