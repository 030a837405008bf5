"""Instance settings (reference §5.6) and the command log (reference §5.7)."""

from __future__ import annotations

import mailproxyd
from tests.apiclient import secret
from tests.integration.api.conftest import World, msg


def test_instance_get_and_update(world: World) -> None:
    got = world.admin.get("/instance").json()
    assert got["version"] == mailproxyd.__version__ and got["bounce_enabled"] is False
    assert "ok" not in got
    r = world.admin.put(
        "/instance",
        json={
            "name": "prod",
            "bounce_enabled": True,
            "bounce_imap_host": "imap.acme.example",
            "bounce_imap_user": "bounces@acme.example",
            "bounce_imap_password": secret("imap-secret-password-1"),
            "bounce_return_path": "bounces@acme.example",
        },
    )
    assert r.json() == {"ok": True}
    got = world.admin.get("/instance").json()
    assert got["name"] == "prod" and got["bounce_enabled"] is True
    assert got["bounce_imap_password_set"] is True and "bounce_imap_password" not in got
    assert got["bounce_imap_port"] == 993 and got["bounce_imap_folder"] == "INBOX"
    assert world.admin.post("/instance/reload-bounce").json() == {"ok": True}
    assert any(m.get("target") == "reporter" for m in world.server.link.sent)


def test_instance_shows_the_bounce_pollers_last_failure(world: World) -> None:
    from mailproxyd.store import Tx, bounces

    db = world.server.db

    def fail(tx: Tx, now: float) -> None:
        assert bounces.try_lock(tx, "n/reporter", until=now + 60, now=now)
        bounces.finish(
            tx,
            "n/reporter",
            now=now,
            next_poll_ts=now + 600,
            succeeded=False,
            error="login refused",
        )

    db.run(fail, 1767225600.0)
    got = world.admin.get("/instance").json()
    assert (got["bounce_last_error"], got["bounce_last_error_ts"]) == ("login refused", 1767225600)
    # New mailbox settings make the next poll due at once, back-off forgotten.
    assert (
        world.admin.put("/instance", json={"bounce_imap_host": "imap2.example"}).status_code == 200
    )
    state = db.run(bounces.get_state)
    assert state["next_poll_ts"] is None and state["consecutive_failures"] == 0
    # The name alone changes nothing for the poller.
    db.run(fail, 1767225700.0)
    assert world.admin.put("/instance", json={"name": "prod"}).status_code == 200
    assert db.run(bounces.get_state)["next_poll_ts"] == 1767226300.0


def test_instance_errors(world: World) -> None:
    r = world.admin.put("/instance", json={"api_token": "x"})
    assert r.status_code == 422
    assert r.json()["detail"] == "api_token: use mail-proxy NAME token --regenerate"
    r = world.admin.put("/instance", json={"bounce_enabled": True})
    assert r.status_code == 422
    r = world.admin.put("/instance", json={"bounce_imap_port": 0})
    assert r.status_code == 422 and r.json()["field"] == "bounce_imap_port"
    for route in ("/instance",):
        assert world.a.get(route).status_code == 403
        assert world.a.put(route, json={}).status_code == 403
    assert world.a.post("/instance/reload-bounce").status_code == 403


def test_command_log(world: World) -> None:
    password = secret("pw-logged-never-shown")
    world.a.post(
        "/account", json={"id": "smtp7", "host": "h.example", "port": 25, "password": password}
    )
    world.a.post(
        "/commands/add-messages",
        json={
            "messages": [
                msg(
                    "att",
                    attachments=[{"filename": "a.txt", "storage_path": "base64:aGVsbG8="}],
                )
            ]
        },
    )
    world.a.post("/commands/add-messages", json={"messages": [msg("plain")]})
    world.a.post("/commands/suspend")
    world.a.put("/account/smtp7", json={"port": 99999})  # refused: logged with 422
    r = world.admin.get("/command-log", params={"tenant_id": "acme"})
    body = r.json()
    assert body["ok"] is True and body["total"] == len(body["commands"])
    endpoints = [c["endpoint"] for c in body["commands"]]
    assert {"addAccount", "addMessages", "suspend", "updateAccount"} <= set(endpoints)
    account = next(c for c in body["commands"] if c["endpoint"] == "addAccount" and
                   c["payload"].get("id") == "smtp7")  # fmt: skip
    assert account["payload"]["password"] == "***" and account["response_status"] == 200
    refused = next(c for c in body["commands"] if c["endpoint"] == "updateAccount")
    assert refused["response_status"] == 422
    with_att = next(
        c for c in body["commands"]
        if c["endpoint"] == "addMessages" and c["payload"]["messages"][0]["id"] == "att"
    )  # fmt: skip
    assert with_att["payload"]["messages"][0]["attachments"][0]["storage_path"] == "base64:5 bytes"
    assert isinstance(with_att["command_ts"], int) and isinstance(with_att["id"], int)
    # Filters and paging.
    only = world.admin.get("/command-log", params={"endpoint_filter": "Messages"}).json()
    assert {c["endpoint"] for c in only["commands"]} == {"addMessages"}
    page = world.admin.get("/command-log", params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 1
    future = world.admin.get("/command-log", params={"since_ts": 4102444800}).json()
    assert future["commands"] == []
    export = world.admin.get("/command-log/export", params={"tenant_id": "acme"}).json()
    assert export["ok"] is True
    first = export["commands"][0]
    assert set(first) <= {"endpoint", "tenant_id", "payload", "command_ts"}
    stamps = [c["command_ts"] for c in export["commands"]]
    assert stamps == sorted(stamps)  # oldest first
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"since_ts": "x"}):
        assert world.admin.get("/command-log", params=bad).status_code == 422
    assert world.a.get("/command-log").status_code == 403
    assert world.a.get("/command-log/export").status_code == 403
