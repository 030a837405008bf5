"""Claiming, ordering, eligibility, leases and fenced completion (reference §8.1–§8.5, §10.3)."""

from __future__ import annotations

from mailproxyd.store import Database, accounts, events, leases, meta, queue, tenants
from mailproxyd.store import messages as store_messages

from .conftest import NOW, make_item, setup_tenant

OWNER = "node-1/sender-0"
OTHER = "node-2/sender-0"


def _enqueue(db: Database, items: list[dict], tenant_id: str = "acme") -> None:
    with db.transaction() as tx:
        queue.enqueue(tx, tenant_id, items, [], NOW)


def _claim(
    db: Database, limit: int = 100, now: float = NOW, owner: str = OWNER, account: str = "main"
) -> list[dict]:
    with db.transaction() as tx:
        return queue.claim_batch(tx, "acme", account, owner, limit, now, 120)


def _record(db: Database, message_key: str, now: float = NOW) -> dict:
    with db.transaction(write=False) as tx:
        record = store_messages.get_message(tx, "acme", message_key, now)
    assert record is not None
    return record


def test_priority_then_arrival_order_within_one_second(acme: Database) -> None:
    # Every item arrives with the same timestamp; order must come from the sequence.
    _enqueue(acme, [make_item(f"low-{i}", priority=3) for i in range(3)])
    _enqueue(acme, [make_item("medium", priority=2), make_item("immediate", priority=0)])
    _enqueue(acme, [make_item("high-a", priority=1), make_item("high-b", priority=1)])
    first = _claim(acme, limit=4)
    assert [row["id"] for row in first] == ["immediate", "high-a", "high-b", "medium"]
    rest = _claim(acme, limit=10)
    assert [row["id"] for row in rest] == ["low-0", "low-1", "low-2"]
    assert all(row["lease_until"] == NOW + 120 for row in first + rest)
    assert _claim(acme) == []


def test_claim_result_carries_decrypted_payload(acme: Database) -> None:
    attachment = {
        "filename": "a.pdf",
        "storage_path": "https://files.example/a.pdf",
        "fetch_mode": "http_url",
        "auth": {"method": "bearer", "token": "att-secret-token"},
    }
    _enqueue(acme, [make_item("att", attachments=[attachment], batch_code="b1")])
    (row,) = _claim(acme)
    assert row["payload"]["attachments"][0]["auth"]["token"] == "att-secret-token"
    assert row["batch_code"] == "b1" and row["retry_count"] == 0
    assert row["outcome_uncertain"] is False and row["expiry_count"] == 0
    shown = _record(acme, "att")["message"]["attachments"][0]["auth"]
    assert shown == {"method": "bearer", "token_set": True}
    assert _record(acme, "att")["status"] == "sending"


def test_eligibility_gates(acme: Database) -> None:
    setup_tenant(acme, "acme", ("main", "other"))
    _enqueue(
        acme,
        [make_item("m"), make_item("b", batch_code="spring"), make_item("o", account_id="other")],
    )
    with acme.transaction() as tx:
        meta.set_scheduler_active(tx, False)
        assert queue.ready_accounts(tx, NOW) == []
    assert _claim(acme) == []
    with acme.transaction() as tx:
        meta.set_scheduler_active(tx, True)
        ready = queue.ready_accounts(tx, NOW)
    assert [(r["tenant_id"], r["account_id"]) for r in ready] == [
        ("acme", "main"),
        ("acme", "other"),
    ]
    assert ready[0]["settings"] == {"host": "smtp.example.com", "port": 587}
    with acme.transaction() as tx:
        tenants.suspend(tx, "acme", None, NOW)
        assert queue.ready_accounts(tx, NOW) == []
    assert _claim(acme) == []
    with acme.transaction() as tx:
        tenants.activate(tx, "acme", None, NOW)
        tenants.update(tx, "acme", {"active": False}, NOW)
        assert queue.ready_accounts(tx, NOW) == []
    assert _claim(acme) == []
    with acme.transaction() as tx:
        tenants.update(tx, "acme", {"active": True}, NOW)
        tenants.suspend(tx, "acme", "spring", NOW)
    assert [row["id"] for row in _claim(acme)] == ["m"]  # batch "spring" held, others not
    with acme.transaction() as tx:
        assert [r["account_id"] for r in queue.ready_accounts(tx, NOW)] == ["other"]
        tenants.activate(tx, "acme", "spring", NOW)
    assert [row["id"] for row in _claim(acme)] == ["b"]
    assert _claim(acme, account="missing") == []


def test_deferred_become_ready_at_their_time(acme: Database) -> None:
    _enqueue(acme, [make_item("later", deferred_ts=NOW + 30), make_item("now")])
    with acme.transaction(write=False) as tx:
        assert queue.next_ready_ts(tx, NOW) == NOW + 30
    assert [row["id"] for row in _claim(acme)] == ["now"]
    with acme.transaction(write=False) as tx:
        assert queue.ready_accounts(tx, NOW + 29) == []
        assert len(queue.ready_accounts(tx, NOW + 30)) == 1
    assert (
        _record(acme, "later", now=NOW + 31)["status"] == "pending"
    )  # reads pending (reference §1.2)
    assert [row["id"] for row in _claim(acme, now=NOW + 30)] == ["later"]


def test_complete_sent_records_event_and_fields(acme: Database) -> None:
    with acme.transaction() as tx:
        tenants.update(tx, "acme", {"client_base_url": "https://app.acme.example"}, NOW)
    _enqueue(acme, [make_item("s", batch_code="b")])
    (row,) = _claim(acme)
    refused = {"nobody@example.org": {"code": 550, "message": "5.1.1 User unknown"}}
    with acme.transaction() as tx:
        assert leases.complete_sent(
            tx, row["pk"], OWNER, NOW + 5, smtp_code=250, refused_recipients=refused
        )
        (event,) = events.unreported(tx, "acme", 10)
    record = _record(acme, "s")
    assert record["status"] == "sent" and record["sent_ts"] == NOW + 5
    assert record["refused_recipients"] == refused and record["smtp_code"] == 250
    assert event["event_type"] == "sent" and event["event_ts"] == NOW + 5
    assert event["metadata"] == {"refused_recipients": refused}
    assert (event["id"], event["account_id"], event["priority"], event["batch_code"]) == (
        "s",
        "main",
        2,
        "b",
    )


def test_deferral_retry_and_sticky_outcome_uncertain(acme: Database) -> None:
    _enqueue(acme, [make_item("u")])
    (row,) = _claim(acme)
    with acme.transaction() as tx:
        assert leases.complete_deferred(
            tx,
            row["pk"],
            OWNER,
            NOW,
            deferred_ts=NOW + 60,
            reason="DATA: no reply after the message data was transmitted (outcome unknown)",
            outcome_uncertain=True,
        )
    record = _record(acme, "u")
    assert record["status"] == "deferred" and record["deferred_ts"] == NOW + 60
    assert record["retry_count"] == 1 and record["outcome_uncertain"] is True
    (again,) = _claim(acme, now=NOW + 60)
    assert again["outcome_uncertain"] is True and again["retry_count"] == 1
    with acme.transaction() as tx:
        assert leases.complete_deferred(
            tx,
            again["pk"],
            OWNER,
            NOW + 61,
            deferred_ts=NOW + 120,
            reason="rate_limit",
            count_retry=False,
        )
    (third,) = _claim(acme, now=NOW + 120)
    with acme.transaction() as tx:
        assert leases.complete_error(
            tx, third["pk"], OWNER, NOW + 121, error="DATA: 550 5.7.1 rejected", smtp_code=550
        )
    record = _record(acme, "u", now=NOW + 200)
    assert record["status"] == "error" and record["error"] == "DATA: 550 5.7.1 rejected"
    assert record["smtp_code"] == 550 and record["outcome_uncertain"] is True
    history = record["history"]
    assert [h["event_type"] for h in history] == ["deferred", "deferred", "error"]
    assert history[0]["metadata"] == {
        "deferred_ts": NOW + 60,
        "deferred_reason": "DATA: no reply after the message data was transmitted (outcome unknown)",
        "retry_count": 1,
        "outcome_uncertain": True,
    }
    assert history[1]["description"] == "rate_limit" and history[1]["metadata"]["retry_count"] == 1
    assert history[2]["metadata"] == {"retry_count": 1, "smtp_code": 550, "outcome_uncertain": True}


def test_lease_expiry_and_fencing(acme: Database) -> None:
    _enqueue(acme, [make_item("x")])
    (row,) = _claim(acme)
    assert _claim(acme, now=NOW + 119, owner=OTHER) == []  # live lease: nobody else gets it
    assert _record(acme, "x", now=NOW + 121)["status"] == "pending"  # expired lease reads pending
    (reclaimed,) = _claim(acme, now=NOW + 121, owner=OTHER)
    assert reclaimed["pk"] == row["pk"] and reclaimed["expiry_count"] == 1
    with acme.transaction() as tx:
        # The first claimer's lease expired and was re-claimed: its result is refused.
        assert not leases.complete_sent(tx, row["pk"], OWNER, NOW + 122)
        assert not leases.complete_error(tx, row["pk"], OWNER, NOW + 122, error="x")
        assert not leases.complete_deferred(
            tx, row["pk"], OWNER, NOW + 122, deferred_ts=NOW, reason="x"
        )
        assert leases.renew_leases(tx, OWNER, [row["pk"]], NOW + 500) == 0
        assert leases.renew_leases(tx, OTHER, [row["pk"]], NOW + 500) == 1
        assert leases.complete_sent(tx, row["pk"], OTHER, NOW + 123)
    assert _record(acme, "x")["status"] == "sent"
    assert [h["event_type"] for h in _record(acme, "x")["history"]] == ["sent"]


def test_third_expiry_fails_the_message(acme: Database) -> None:
    _enqueue(acme, [make_item("crashy")])
    now = NOW
    for expected_expiries in (0, 1, 2):
        (row,) = _claim(acme, now=now)
        assert row["expiry_count"] == expected_expiries
        now += 121
        with acme.transaction() as tx:
            outcome = leases.expire_leases(tx, now)
        assert outcome == (
            {"returned": 1, "failed": 0} if expected_expiries < 2 else {"returned": 0, "failed": 1}
        )
    record = _record(acme, "crashy", now=now)
    assert record["status"] == "error"
    assert (
        record["error"] == "processing interrupted 3 times (sender crashed or stalled); giving up"
    )
    assert [h["event_type"] for h in record["history"]] == ["error"]
    assert record["retry_count"] == 0


def test_release_is_not_an_expiry_and_release_node_is(acme: Database) -> None:
    _enqueue(acme, [make_item("a"), make_item("b"), make_item("c")])
    a, b, c = _claim(acme, owner="node-1/sender-0")
    with acme.transaction() as tx:
        assert leases.release(tx, "node-1/sender-0", [a["pk"], b["pk"]], NOW) == {
            "returned": 2,
            "failed": 0,
        }
        assert leases.release(tx, "someone-else", [c["pk"]], NOW) == {"returned": 0, "failed": 0}
    again = _claim(acme, owner="node-1/sender-1")
    assert {row["id"]: row["expiry_count"] for row in again} == {"a": 0, "b": 0}
    with acme.transaction() as tx:
        # node-10 is another node whose id merely starts with "node-1".
        queue.enqueue(tx, "acme", [make_item("d")], [], NOW)
    (d,) = _claim(acme, owner="node-10/sender-0")
    with acme.transaction() as tx:
        assert leases.release_node(tx, "node-1", NOW) == {"returned": 3, "failed": 0}
    assert _record(acme, "d")["status"] == "sending"
    reclaimed = {row["id"]: row["expiry_count"] for row in _claim(acme, owner="node-2/sender-0")}
    assert reclaimed == {"a": 1, "b": 1, "c": 1}
    assert d["id"] == "d"


def test_account_deleted_while_sending(acme: Database) -> None:
    _enqueue(acme, [make_item("q1"), make_item("q2"), make_item("f1"), make_item("f2")])
    rows = _claim(acme, limit=2)
    with acme.transaction() as tx:
        failed = accounts.delete(tx, "acme", "main", NOW)
    assert failed == 2
    for key in ("f1", "f2"):
        record = _record(acme, key)
        assert record["status"] == "error" and record["error"] == "account deleted"
        assert [h["event_type"] for h in record["history"]] == ["error"]
    with acme.transaction() as tx:
        # An attempt ending in a deferral fails instead; one ending in sent stays sent.
        assert leases.complete_deferred(
            tx, rows[0]["pk"], OWNER, NOW, deferred_ts=NOW + 60, reason="x"
        )
        assert leases.complete_sent(tx, rows[1]["pk"], OWNER, NOW)
    assert _record(acme, "q1")["error"] == "account deleted"
    assert _record(acme, "q2")["status"] == "sent"


def test_released_message_of_deleted_account_fails(acme: Database) -> None:
    _enqueue(acme, [make_item("r")])
    (row,) = _claim(acme)
    with acme.transaction() as tx:
        accounts.delete(tx, "acme", "main", NOW)
        assert leases.release(tx, OWNER, [row["pk"]], NOW) == {"returned": 0, "failed": 1}
    assert _record(acme, "r")["error"] == "account deleted"


def test_tenant_scoped_account_delete(database: Database) -> None:
    setup_tenant(database, "acme", ("main", "spare"))
    setup_tenant(database, "beta", ("main",))
    _enqueue(database, [make_item("a1"), make_item("a2", account_id="spare")], "acme")
    _enqueue(database, [make_item("a1"), make_item("b2")], "beta")
    with database.transaction() as tx:
        assert accounts.delete(tx, "acme", "main", NOW) == 1
        assert accounts.get(tx, "beta", "main")["id"] == "main"
        beta = {r["id"]: r["status"] for r in store_messages.list_messages(tx, "beta", NOW)[0]}
        acme = {r["id"]: r["status"] for r in store_messages.list_messages(tx, "acme", NOW)[0]}
        assert [r["account_id"] for r in queue.ready_accounts(tx, NOW)] == ["spare", "main"]
    assert beta == {"a1": "pending", "b2": "pending"}
    assert acme == {"a1": "error", "a2": "pending"}
    with database.transaction() as tx:
        claimed = queue.claim_batch(tx, "beta", "main", OWNER, 10, NOW, 120)
    assert [row["id"] for row in claimed] == ["a1", "b2"]


def _run_owner(node_id: str = "node-1") -> str:
    """The lease owner of one run of worker slot sender-0, as the worker builds it."""
    import dataclasses
    import logging

    from mailproxyd.services.context import ServiceContext
    from mailproxyd.settings import load_settings

    settings = dataclasses.replace(load_settings("serve", environ={}), node_id=node_id)
    ctx = ServiceContext(
        kind="sender",
        index=0,
        settings=settings,
        db=None,  # type: ignore[arg-type]
        link=None,  # type: ignore[arg-type]
        log=logging.getLogger("test"),
        instance_key=b"",
    )
    return ctx.owner


def test_a_late_result_of_an_earlier_run_of_the_same_slot_is_refused(acme: Database) -> None:
    """Owners are unique per worker run (reference §8.3): run A's lease expired and run B of the same
    slot claimed the message; A's late outcome is refused and B's is recorded (defect 15.4)."""
    run_a, run_b = _run_owner(), _run_owner()
    assert run_a != run_b and run_a.startswith("node-1/sender-0/")
    _enqueue(acme, [make_item("m1")])
    (row,) = _claim(acme, owner=run_a)
    with acme.transaction() as tx:
        assert leases.expire_leases(tx, NOW + 121) == {"returned": 1, "failed": 0}
    (again,) = _claim(acme, owner=run_b, now=NOW + 122)
    with acme.transaction() as tx:
        late = leases.complete_deferred(
            tx, row["pk"], run_a, NOW + 123, deferred_ts=NOW + 183, reason="late"
        )
        real = leases.complete_sent(tx, again["pk"], run_b, NOW + 124)
    assert (late, real) == (False, True)
    assert _record(acme, "m1", NOW + 125)["status"] == "sent"
    # Releasing the run of A frees nothing of B; releasing the node frees B's claims too.
    _enqueue(acme, [make_item("m2")])
    (held,) = _claim(acme, owner=run_b, now=NOW + 130)
    with acme.transaction() as tx:
        assert leases.release_run(tx, run_a, NOW + 131) == {"returned": 0, "failed": 0}
        assert leases.release_run(tx, run_b.rsplit("-", 1)[0] + "-", NOW + 131) == {
            "returned": 1,
            "failed": 0,
        }
    assert _record(acme, "m2", NOW + 132)["status"] == "pending"
    assert held["id"] == "m2"
