"""add-messages (reference §6), listing and records (reference §5.3), delete and cleanup."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailproxyd.store import leases, meta, queue
from mailproxyd.store import messages as store_messages
from tests.integration.api.conftest import World, msg


def _sent_and_sending(world: World, sent_id: str, sending_id: str) -> None:
    """Bring one message to ``sent`` and one to ``sending`` through the real store."""
    r = world.a.post("/commands/add-messages", json={"messages": [msg(sent_id), msg(sending_id)]})
    assert r.json()["queued"] == 2
    db = world.server.db
    now = time.time()
    db.run(meta.set_scheduler_active, True)
    claimed = db.run(queue.claim_batch, "acme", "smtp1", "test-owner", 10, now, 120)
    assert {c["id"] for c in claimed} == {sent_id, sending_id}
    pk = next(c["pk"] for c in claimed if c["id"] == sent_id)
    assert db.run(leases.complete_sent, pk, "test-owner", now)
    db.run(meta.set_scheduler_active, False)


def _record(world: World, message_id: str) -> dict[str, Any]:
    r = world.a.get(f"/message/{message_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_mixed_batch(world: World) -> None:
    _sent_and_sending(world, "old-sent", "old-sending")
    wakes_before = len(world.server.link.wakes())
    body = {
        "messages": [
            msg("ok-1"),
            msg("bad-addr", to="bob@"),
            msg("no-account", account_id="smtp9"),
            msg("ok-1", subject="second copy"),
            msg("old-sent"),
            msg("old-sending"),
            msg("ok-2", priority="high"),
        ]
    }
    r = world.a.post("/commands/add-messages", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "ok": True,
        "queued": 2,
        "rejected": [
            {"id": "bad-addr", "reason": "invalid address: bob@"},
            {"id": "no-account", "reason": "account not found for tenant"},
            {"id": "ok-1", "reason": "duplicate id in request"},
            {"id": "old-sent", "reason": "already sent"},
            {"id": "old-sending", "reason": "in flight"},
        ],
    }
    # Validation failures with an id are recorded as errors with an error event (reference §6.9).
    bad = _record(world, "bad-addr")
    assert bad["status"] == "error" and bad["error"] == "invalid address: bob@"
    assert [h["event_type"] for h in bad["history"]] == ["error"]
    assert bad["history"][0]["description"] == "invalid address: bob@"
    unknown = _record(world, "no-account")
    assert unknown["status"] == "error" and unknown["account_id"] == "smtp9"
    assert unknown["error"] == "account not found for tenant"
    # Straight from the store too: errors with their reason, and nothing for the others.
    db = world.server.db
    now = time.time()
    stored = {
        key: db.run(store_messages.get_message, "acme", key, now)
        for key in ("bad-addr", "no-account", "ok-1", "ok-2", "old-sent", "old-sending")
    }
    assert stored["bad-addr"]["status"] == "error"
    assert [e["event_type"] for e in stored["no-account"]["history"]] == ["error"]
    assert stored["ok-1"]["status"] == stored["ok-2"]["status"] == "pending"
    assert stored["old-sent"]["status"] == "sent" and len(stored["old-sent"]["history"]) == 1
    assert stored["old-sending"]["history"] == []
    # The first copy of the duplicate won; idempotency rejections changed nothing.
    assert _record(world, "ok-1")["message"]["subject"] == "Your order"
    assert _record(world, "ok-2")["priority"] == 1
    assert _record(world, "old-sent")["status"] == "sent"
    assert _record(world, "old-sending")["status"] == "sending"
    wakes = world.server.link.wakes()[wakes_before:]
    assert wakes and wakes[0]["target"] == "sender"


def test_nothing_queued_is_400_with_legacy_detail(world: World) -> None:
    r = world.a.post("/commands/add-messages", json={"messages": [msg("m9", account_id="zz")]})
    assert r.status_code == 400
    rejected = [{"id": "m9", "reason": "account not found for tenant"}]
    assert r.json() == {
        "ok": False,
        "error": "nothing_queued",
        "queued": 0,
        "rejected": rejected,
        "detail": {"error": None, "rejected": rejected},
    }
    # Recorded even though the answer is 400.
    assert _record(world, "m9")["status"] == "error"


def test_idempotency_rejections_alone_stay_200(world: World) -> None:
    _sent_and_sending(world, "s1", "s2")
    r = world.a.post("/commands/add-messages", json={"messages": [msg("s1"), msg("s2")]})
    assert r.status_code == 200
    assert r.json()["queued"] == 0
    wakes_before = len(world.server.link.wakes())
    r = world.a.post("/commands/add-messages", json={"messages": [msg("s1")]})
    assert len(world.server.link.wakes()) == wakes_before  # nothing queued, nobody woken


def test_rejection_without_id_keeps_null(world: World) -> None:
    r = world.a.post("/commands/add-messages", json={"messages": [msg("ok"), "junk", {"to": "x"}]})
    assert r.status_code == 200
    assert r.json()["rejected"] == [
        {"id": None, "reason": "invalid payload"},
        {"id": None, "reason": "missing id"},
    ]


def test_envelope_errors(world: World) -> None:
    r = world.a.post("/commands/add-messages", json={})
    assert r.status_code == 422 and r.json()["detail"] == "messages: required"
    r = world.a.post("/commands/add-messages", json={"messages": "nope"})
    assert r.status_code == 422 and r.json()["detail"] == "messages: must be a list"
    r = world.a.post("/commands/add-messages", json={"messages": [], "default_priority": 7})
    assert r.status_code == 422 and r.json()["field"] == "default_priority"
    r = world.a.post("/commands/add-messages", json={"messages": []})
    assert r.status_code == 200
    assert r.json() == {"ok": True, "queued": 0, "rejected": []}


@pytest.mark.parametrize("api_settings_overrides", [{"max_batch": 3}])
def test_too_many_messages(world: World) -> None:
    items = [msg(f"m{i}") for i in range(4)]
    r = world.a.post("/commands/add-messages", json={"messages": items})
    assert r.status_code == 413
    assert r.json() == {
        "ok": False,
        "error": "too_many_messages",
        "detail": "Cannot enqueue more than 3 messages at once",
    }
    assert (
        world.a.post("/commands/add-messages", json={"messages": items[:3]}).json()["queued"] == 3
    )


def test_admin_enqueue_tenant_rules(world: World) -> None:
    r = world.admin.post(
        "/commands/add-messages",
        json={"messages": [msg("a1"), msg("a2", tenant_id="acme"), msg("a3", tenant_id="ghost")]},
    )
    assert r.status_code == 200
    assert r.json()["rejected"] == [
        {"id": "a1", "reason": "missing tenant_id"},
        {"id": "a3", "reason": "tenant not found"},
    ]
    r = world.admin.post(
        "/commands/add-messages",
        params={"tenant_id": "beta"},
        json={"messages": [msg("b1")], "default_priority": "low"},
    )
    assert r.json()["queued"] == 1
    rec = world.admin.get("/message/b1", params={"tenant_id": "beta"}).json()
    assert rec["priority"] == 3 and rec["account_id"] == "main"


def test_listing_filters_and_pagination(world: World) -> None:
    items = [
        msg(f"p{i:02d}", priority=i % 2, batch_code="spring" if i < 3 else None) for i in range(7)
    ]
    world.a.post("/commands/add-messages", json={"messages": items})
    page = world.a.get("/messages", params={"limit": 3}).json()
    ids = [m["id"] for m in page["messages"]]
    assert ids == ["p00", "p02", "p04"]  # priority 0 first, then arrival order
    seen = list(ids)
    while "next_cursor" in page:
        page = world.a.get("/messages", params={"limit": 3, "cursor": page["next_cursor"]}).json()
        seen += [m["id"] for m in page["messages"]]
    assert seen == ["p00", "p02", "p04", "p06", "p01", "p03", "p05"]
    by_batch = world.a.get("/messages", params={"batch_code": "spring"}).json()["messages"]
    assert sorted(m["id"] for m in by_batch) == ["p00", "p01", "p02"]
    offset = world.a.get("/messages", params={"offset": 5}).json()["messages"]
    assert [m["id"] for m in offset] == ["p03", "p05"]
    assert world.a.get("/messages", params={"status": "sent"}).json()["messages"] == []
    active = world.a.get("/messages", params={"active_only": "true", "status": "pending,sent"})
    assert len(active.json()["messages"]) == 7
    record = world.a.get("/messages", params={"include_history": "1", "limit": 1}).json()
    first = record["messages"][0]
    assert first["history"] == [] and first["tenant_name"] == "Acme Corp"
    assert first["message"]["to"] == ["ann@example.org"]
    assert first["message_id"].startswith("<") and first["message_id"].endswith("@acme.example>")
    for params in ({"cursor": "x", "offset": 1}, {"cursor": "garbage!"}, {"limit": 0},
                   {"limit": 1001}, {"status": "lost"}, {"offset": -1}):  # fmt: skip
        r = world.a.get("/messages", params=params)
        assert r.status_code == 422, (params, r.text)


def test_get_message_errors(world: World) -> None:
    r = world.a.get("/message/none")
    assert r.status_code == 404
    assert r.json() == {
        "ok": False,
        "error": "message_not_found",
        "detail": "Message 'none' not found for tenant 'acme'",
    }
    r = world.admin.get("/message/none", params={"tenant_id": "ghost"})
    assert r.status_code == 404 and r.json()["error"] == "tenant_not_found"
    # Ids may contain slashes.
    world.a.post("/commands/add-messages", json={"messages": [msg("a/b")]})
    assert world.a.get("/message/a/b").json()["id"] == "a/b"


def test_delete_messages(world: World) -> None:
    _sent_and_sending(world, "d-sent", "d-sending")
    world.a.post("/commands/add-messages", json={"messages": [msg("d1")]})
    r = world.a.post("/commands/delete-messages", json={"ids": ["d1", "d-sending", "zz", "d-sent"]})
    assert r.status_code == 200
    assert r.json() == {
        "ok": True,
        "removed": 2,
        "not_found": ["zz"],
        "unauthorized": [],
        "in_flight": ["d-sending"],
    }
    assert world.a.get("/message/d1").status_code == 404
    for bad in ({"ids": "d1"}, {"ids": [1]}, {}):
        assert world.a.post("/commands/delete-messages", json=bad).status_code == 422


def test_cleanup_messages(world: World) -> None:
    r = world.a.post("/commands/cleanup-messages", json={"older_than_seconds": 0})
    assert r.json() == {"ok": True, "removed": 0}
    assert world.a.post("/commands/cleanup-messages").json() == {"ok": True, "removed": 0}
    assert world.a.post("/commands/cleanup-messages", content=b"null").status_code == 200
    for bad in (-1, "x", 1.5, True):
        r = world.a.post("/commands/cleanup-messages", json={"older_than_seconds": bad})
        assert r.status_code == 422, bad
