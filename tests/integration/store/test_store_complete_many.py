"""Set-based completion of many sends (``leases.complete_sent_many``), fenced per row (reference §8.3)."""

from __future__ import annotations

from mailproxyd.store import Database, events, leases, queue, tenants
from mailproxyd.store import messages as store_messages

from .conftest import NOW, make_item

OWNER = "node-1/sender-0"
OTHER = "node-2/sender-0"


def _enqueue(db: Database, keys: list[str]) -> None:
    with db.transaction() as tx:
        queue.enqueue(tx, "acme", [make_item(key, batch_code="b") for key in keys], [], NOW)


def _claim(db: Database, owner: str, now: float, limit: int = 100) -> list[dict]:
    with db.transaction() as tx:
        return queue.claim_batch(tx, "acme", "main", owner, limit, now, 120)


def _record(db: Database, key: str) -> dict:
    with db.transaction(write=False) as tx:
        record = store_messages.get_message(tx, "acme", key, NOW + 200)
    assert record is not None
    return record


def test_batch_records_held_rows_and_refuses_the_lost_lease(acme: Database) -> None:
    with acme.transaction() as tx:
        tenants.update(tx, "acme", {"client_base_url": "https://app.acme.example"}, NOW)
    _enqueue(acme, ["a", "b", "c", "lost"])
    rows = {row["id"]: row for row in _claim(acme, OWNER, NOW)}
    # "lost": OWNER's lease expires and another sender claims the message.
    with acme.transaction() as tx:
        assert leases.renew_leases(tx, OWNER, [rows[k]["pk"] for k in "abc"], NOW + 500) == 3
    (taken,) = _claim(acme, OTHER, NOW + 121)
    assert taken["id"] == "lost"
    refused = {"nobody@example.org": {"code": 550, "message": "5.1.1 User unknown"}}
    with acme.transaction() as tx:
        answers = leases.complete_sent_many(
            tx,
            OWNER,
            [
                {"pk": rows["a"]["pk"], "now": NOW + 130},
                {"pk": rows["lost"]["pk"], "now": NOW + 131},
                {"pk": rows["b"]["pk"], "refused_recipients": refused, "smtp_code": 250},
                {"pk": rows["c"]["pk"], "outcome_uncertain": True, "now": NOW + 133},
            ],
            NOW + 140,
        )
        unreported = events.unreported(tx, "acme", 10)
    assert answers == [True, False, True, True]
    a, b, c, lost = (_record(acme, key) for key in ("a", "b", "c", "lost"))
    assert (a["status"], a["sent_ts"]) == ("sent", NOW + 130)
    assert (b["status"], b["sent_ts"], b["smtp_code"]) == ("sent", NOW + 140, 250)
    assert b["refused_recipients"] == refused
    assert c["status"] == "sent" and c["outcome_uncertain"] is True
    # The other sender's message is untouched and still completes for its owner.
    assert lost["status"] == "sending" and lost["history"] == []
    with acme.transaction() as tx:
        assert leases.complete_sent(tx, taken["pk"], OTHER, NOW + 150)
    by_id = {event["id"]: event for event in unreported}
    assert set(by_id) == {"a", "b", "c"}
    assert [event["id"] for event in unreported] == ["a", "b", "c"]  # in the order given
    assert by_id["a"]["event_type"] == "sent" and by_id["a"]["event_ts"] == NOW + 130
    assert by_id["a"]["metadata"] == {}
    assert by_id["b"]["metadata"] == {"refused_recipients": refused}
    assert by_id["c"]["metadata"] == {"outcome_uncertain": True}
    assert (by_id["a"]["account_id"], by_id["a"]["priority"], by_id["a"]["batch_code"]) == (
        "main",
        2,
        "b",
    )


def test_batch_matches_single_completion_and_auto_acks(acme: Database) -> None:
    # No client_base_url: events are acknowledged as recorded (reference §13.6), as complete_sent does.
    _enqueue(acme, ["one", "many", "dup"])
    rows = {row["id"]: row for row in _claim(acme, OWNER, NOW)}
    with acme.transaction() as tx:
        assert leases.complete_sent(tx, rows["one"]["pk"], OWNER, NOW + 5)
        assert leases.complete_sent_many(
            tx,
            OWNER,
            [{"pk": rows["many"]["pk"]}, {"pk": rows["dup"]["pk"]}, {"pk": rows["dup"]["pk"]}],
            NOW + 5,
        ) == [True, True, False]
        assert leases.complete_sent_many(tx, OWNER, [], NOW + 5) == []
        # Already sent: no longer held by anyone.
        assert leases.complete_sent_many(tx, OWNER, [{"pk": rows["one"]["pk"]}], NOW + 6) == [False]
        assert events.unreported(tx, "acme", 10) == []
    one, many, dup = (_record(acme, key) for key in ("one", "many", "dup"))
    strip = ("id", "pk", "seq", "message", "message_id", "history")
    assert {k: v for k, v in one.items() if k not in strip} == {
        k: v for k, v in many.items() if k not in strip
    }
    for record in (one, many, dup):
        assert [(h["event_type"], h["reported_ts"]) for h in record["history"]] == [
            ("sent", NOW + 5)
        ]
