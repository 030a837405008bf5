"""The bounce poller's state: lease, schedule, cursor, outcome; matching and dedup (reference §12, §5.6)."""

from __future__ import annotations

from mailproxyd.core.bounces import Bounce
from mailproxyd.store import Database, bounces, leases, messages, meta, queue

from .conftest import NOW, make_item

A, B = "node-a/reporter", "node-b/reporter"


def _bounce(**fields: object) -> Bounce:
    base: dict[str, object] = {
        "bounce_type": "hard",
        "bounce_code": "5.1.1",
        "bounce_reason": "smtp; 550 5.1.1 unknown",
        "recipient": "ann@example.org",
        "message_id": "<m1@acme.example>",
        "mail_id": "m1",
        "dsn": True,
    }
    base.update(fields)
    return Bounce(**base)  # type: ignore[arg-type]


def _sent(db: Database, *keys: str, tenant: str = "acme") -> None:
    with db.transaction() as tx:
        items = [make_item(k, message_id=f"<{k}@acme.example>") for k in keys]
        queue.enqueue(tx, tenant, items, [], NOW)
        for row in queue.claim_batch(tx, tenant, "main", "n/s", len(keys), NOW, 120):
            leases.complete_sent(tx, row["pk"], "n/s", NOW)


def test_lease_is_exclusive_and_follows_the_shared_schedule(database: Database) -> None:
    with database.transaction() as tx:
        assert bounces.try_lock(tx, A, until=NOW + 120, now=NOW)
        assert not bounces.try_lock(tx, B, until=NOW + 120, now=NOW + 1)
        assert not bounces.try_lock(tx, B, until=NOW + 120, now=NOW + 1, force=True)
        before = bounces.finish(
            tx, A, now=NOW + 2, next_poll_ts=NOW + 62, succeeded=True, error=None
        )
        assert before is not None and before["lock_owner"] == A
        # Free, but not due: neither node polls before next_poll_ts unless forced.
        assert not bounces.try_lock(tx, B, until=NOW + 200, now=NOW + 30)
        assert bounces.try_lock(tx, B, until=NOW + 200, now=NOW + 30, force=True)
        # A lost its lease: its finish changes nothing.
        assert (
            bounces.finish(tx, A, now=NOW + 31, next_poll_ts=0, succeeded=True, error=None) is None
        )
        # An expired lease is taken over.
        assert bounces.try_lock(tx, A, until=NOW + 400, now=NOW + 201, force=True)
        state = bounces.get_state(tx)
        assert state["lock_owner"] == A and state["last_sync_ts"] == NOW + 2


def test_failures_count_and_show_until_a_poll_succeeds(database: Database) -> None:
    with database.transaction() as tx:
        for attempt in (1, 2):
            assert bounces.try_lock(tx, A, until=NOW + 120, now=NOW + attempt, force=True)
            bounces.finish(
                tx, A, now=NOW + attempt, next_poll_ts=0, succeeded=False, error="login refused"
            )
        state = bounces.get_state(tx)
        assert (state["consecutive_failures"], state["last_error"]) == (2, "login refused")
        instance = meta.get_instance(tx)
        assert instance["bounce_last_error"] == "login refused"
        assert instance["bounce_last_error_ts"] == NOW + 2 and instance["bounce_last_sync"] is None
        assert bounces.try_lock(tx, A, until=NOW + 120, now=NOW + 3)
        bounces.finish(tx, A, now=NOW + 3, next_poll_ts=0, succeeded=True, error=None)
        instance = meta.get_instance(tx)
        assert instance["bounce_last_error"] is None and instance["bounce_last_error_ts"] is None
        assert bounces.get_state(tx)["consecutive_failures"] == 0
        bounces.finish(tx, A, now=NOW + 4, next_poll_ts=NOW + 99, succeeded=True, error=None)
        bounces.force_due(tx)
        assert bounces.get_state(tx)["next_poll_ts"] is None


def test_apply_batch_matches_records_dedups_and_moves_the_cursor(acme: Database) -> None:
    _sent(acme, "m1", "m2")
    with acme.transaction() as tx:
        queue.enqueue(tx, "acme", [make_item("p1")], [], NOW)  # pending, never sent
        assert bounces.try_lock(tx, A, until=NOW + 120, now=NOW)
        applied = bounces.apply_batch(
            tx,
            A,
            uidvalidity=7,
            last_uid=15,
            bounces=[
                (10, _bounce()),
                (11, _bounce(bounce_reason="other wording, same bounce")),
                (12, _bounce(recipient="bob@example.org")),
                (13, _bounce(message_id="<unknown@x>", mail_id="m2", bounce_code="4.4.1")),
                (14, _bounce(message_id="<unknown@x>", mail_id="nope")),
                (15, _bounce(message_id=None, mail_id="p1")),
            ],
            now=NOW + 3600,
            lease_until=NOW + 3700,
        )
        assert applied is not None
        assert [(a.uid, a.outcome, a.message_key) for a in applied] == [
            (10, "recorded", "m1"),
            (11, "duplicate", "m1"),
            (12, "recorded", "m1"),
            (13, "recorded", "m2"),
            (14, "unmatched", None),
            (15, "not_sent", None),
        ]
        state = bounces.get_state(tx)
        assert (state["uidvalidity"], state["last_uid"]) == (7, 15)
        m1 = messages.get_message(tx, "acme", "m1", NOW + 3600)
        m2 = messages.get_message(tx, "acme", "m2", NOW + 3600)
    assert m1 is not None and m1["status"] == "sent" and m1["bounce_code"] == "5.1.1"
    assert [h["event_type"] for h in m1["history"]] == ["sent", "bounce", "bounce"]
    assert m2 is not None and m2["status"] == "sent" and m2["bounce_code"] == "4.4.1"
    assert m2["history"][-1]["metadata"]["bounce_code"] == "4.4.1"
    # Another poller (lease lost) writes nothing.
    with acme.transaction() as tx:
        lost = bounces.apply_batch(
            tx, B, uidvalidity=7, last_uid=99, bounces=[], now=NOW, lease_until=NOW
        )
        assert lost is None and bounces.get_state(tx)["last_uid"] == 15


def test_same_message_id_in_two_tenants_is_told_apart_by_the_client_id(acme: Database) -> None:
    from .conftest import setup_tenant

    setup_tenant(acme, "beta")
    _sent(acme, "m1")
    with acme.transaction() as tx:
        item = make_item("other", message_id="<m1@acme.example>")
        queue.enqueue(tx, "beta", [item], [], NOW)
        for row in queue.claim_batch(tx, "beta", "main", "n/s", 1, NOW, 120):
            leases.complete_sent(tx, row["pk"], "n/s", NOW)
        found, _ = bounces.match(tx, _bounce(mail_id="other"))
        assert found is not None and found["tenant_id"] == "beta"
        assert bounces.match(tx, _bounce(mail_id=None)) == (None, "ambiguous")


def test_release_gives_the_lease_back_without_a_verdict(database: Database) -> None:
    with database.transaction() as tx:
        assert bounces.try_lock(tx, A, until=NOW + 120, now=NOW)
        bounces.release(tx, B)  # not B's to give
        assert bounces.get_state(tx)["lock_owner"] == A
        bounces.release(tx, A)
        state = bounces.get_state(tx)
        assert state["lock_owner"] is None and state["consecutive_failures"] == 0
        assert state["last_error"] is None and state["next_poll_ts"] is None
