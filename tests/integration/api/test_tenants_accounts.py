"""Tenants (reference §5.5) and accounts (reference §5.4): every route's success and listed errors."""

from __future__ import annotations

from tests.apiclient import ISSUED_KEYS, secret
from tests.integration.api.conftest import World


def test_create_replace_get_list_tenant(world: World) -> None:
    admin = world.admin
    r = admin.post("/tenant", json={"id": "gamma", "name": "Gamma", "rate_limits": {"hourly": 20}})
    body = r.json()
    assert r.status_code == 200 and body["ok"] is True and body["created"] is True
    assert len(body["api_key"]) == 43
    ISSUED_KEYS[body["api_key"]] = "gamma"
    got = admin.get("/tenant/gamma").json()
    assert got["id"] == "gamma" and got["name"] == "Gamma" and got["rate_limits"] == {"hourly": 20}
    assert got["client_sync_path"] == "/mail-proxy/sync"
    assert got["client_auth"] == {"method": "none"}
    assert got["api_key_set"] is True and got["suspended_batches"] == []
    assert "ok" not in got and got["created_at"].count(":") == 2
    # Full replacement keeps the key; absent fields return to their defaults.
    r = admin.post("/tenant", json={"id": "gamma"})
    assert r.json() == {"ok": True, "created": False}
    got = admin.get("/tenant/gamma").json()
    assert "name" not in got and "rate_limits" not in got and got["api_key_set"] is True
    listed = admin.get("/tenants").json()
    assert [t["id"] for t in listed["tenants"]] == ["acme", "beta", "gamma"]
    acme = listed["tenants"][0]
    assert acme["client_auth"] == {
        "method": "bearer",
        "token_set": True,
        "signing_secret_set": True,
    }


def test_tenant_errors(world: World) -> None:
    admin = world.admin
    r = admin.post("/tenant", json={"id": "bad id!", "port": 1})
    body = r.json()
    assert r.status_code == 422 and body["error"] == "validation_error"
    assert {e["field"] for e in body["errors"]} >= {"id", "port"}
    assert body["detail"] == f"{body['field']}: {body['errors'][0]['message']}"
    r = admin.post("/tenant", json={"id": "x", "client_auth": {"method": "bearer"}})
    assert r.status_code == 422 and r.json()["field"] == "client_auth.token"
    assert admin.get("/tenant/ghost").json() == {
        "ok": False,
        "error": "tenant_not_found",
        "detail": "Tenant 'ghost' not found",
    }
    assert admin.put("/tenant/ghost", json={"name": "x"}).status_code == 404
    assert admin.delete("/tenant/ghost").status_code == 404
    assert admin.post("/tenant/ghost/api-key").status_code == 404
    assert admin.delete("/tenant/ghost/api-key").status_code == 404
    r = admin.post("/tenant/acme/api-key", json={"expires_at": "soon"})
    assert r.status_code == 422 and r.json()["field"] == "expires_at"


def test_update_tenant(world: World) -> None:
    new_token = secret("tok-NEW-4567890123")
    r = world.a.put("/tenant/acme", json={"client_auth": {"token": new_token}, "name": "ACME Corp"})
    assert r.json() == {"ok": True}
    got = world.a.get("/tenant/acme").json()
    assert got["name"] == "ACME Corp"
    assert got["client_auth"] == {"method": "bearer", "token_set": True, "signing_secret_set": True}
    # A GET body can be sent back unchanged.
    echo = {k: v for k, v in got.items() if k not in ("id",)}
    assert world.a.put("/tenant/acme", json=echo).status_code == 200
    # null resets a field; active needs the admin token.
    assert world.a.put("/tenant/acme", json={"name": None}).status_code == 200
    assert "name" not in world.a.get("/tenant/acme").json()
    r = world.a.put("/tenant/acme", json={"active": False})
    assert r.status_code == 403 and r.json()["error"] == "admin_required"
    assert world.admin.put("/tenant/acme", json={"active": False}).json() == {"ok": True}
    assert world.a.get("/tenant/acme").json()["active"] is False
    # An inactive tenant's key still authenticates.
    assert world.a.get("/status").status_code == 200
    r = world.admin.put("/tenant/acme", json={"id": "other"})
    assert r.status_code == 422
    r = world.admin.put("/tenant/acme", json={"bogus": 1})
    assert r.status_code == 422 and r.json()["detail"] == "bogus: unknown field"


def test_api_keys_and_delete(world: World) -> None:
    r = world.admin.post("/tenant/acme/api-key")
    new_key = r.json()["api_key"]
    ISSUED_KEYS[new_key] = "acme rotate"
    assert r.json() == {"ok": True, "api_key": new_key}
    assert world.a.get("/status").status_code == 401  # previous key invalid at once
    with world.server.client(new_key) as c:
        assert c.get("/tenant/acme").status_code == 200
    assert world.admin.delete("/tenant/beta").json() == {"ok": True}
    assert world.admin.get("/tenant/beta").status_code == 404
    assert world.b.get("/status").status_code == 401


def test_sync_status(world: World) -> None:
    r = world.admin.get("/tenants/sync-status")
    body = r.json()
    assert body["ok"] is True and body["sync_interval_seconds"] == 300
    row = body["tenants"][0]
    assert row["id"] == "acme" and row["name"] == "Acme Corp" and row["active"] is True
    assert row["client_base_url"] == "https://acme.example"
    assert row["in_dnd"] is False and row["consecutive_failures"] == 0
    assert row["unreported_events"] == 0 and "last_sync_ts" not in row
    mine = world.a.get("/tenants/sync-status").json()["tenants"]
    assert [t["id"] for t in mine] == ["acme"]
    only = world.admin.get("/tenants/sync-status", params={"tenant_id": "beta"}).json()
    assert [t["id"] for t in only["tenants"]] == ["beta"]
    assert world.admin.get("/tenants/sync-status", params={"tenant_id": "no"}).status_code == 404


def test_accounts_crud(world: World) -> None:
    a = world.a
    r = a.post(
        "/account",
        json={"id": "smtp2", "host": "mx.example.com", "port": 465, "tls_mode": "implicit",
              "user": "u", "password": secret("pw-smtp2-very-secret"), "limit_per_minute": 30},
    )  # fmt: skip
    assert r.json() == {"ok": True, "created": True}
    got = a.get("/account/smtp2").json()
    assert got["password_set"] is True and "password" not in got
    assert got["use_tls"] is True and got["tls_mode"] == "implicit"
    assert got["limit_per_minute"] == 30 and got["max_concurrent"] == 3 and got["ttl"] == 300
    assert got["tenant_id"] == "acme" and "batch_size" not in got and "ok" not in got
    # Replacement: absent fields back to defaults, password kept.
    r = a.post("/account", json={"id": "smtp2", "host": "mx.example.com", "port": 587})
    assert r.json() == {"ok": True, "created": False}
    got = a.get("/account/smtp2").json()
    assert got["password_set"] is True and "limit_per_minute" not in got
    # Partial update; null clears.
    assert a.put("/account/smtp2", json={"limit_per_day": 10, "password": None}).json() == {
        "ok": True
    }
    got = a.get("/account/smtp2").json()
    assert got["limit_per_day"] == 10 and got["password_set"] is False
    listed = a.get("/accounts").json()
    assert [x["id"] for x in listed["accounts"]] == ["smtp1", "smtp2"]
    # Legacy fields are accepted and ignored.
    r = a.post("/account", json={"id": "smtp3", "host": "h", "port": 25, "is_pec_account": True})
    assert r.status_code == 200


def test_account_errors(world: World) -> None:
    a, admin = world.a, world.admin
    r = a.post("/account", json={"id": "x", "port": 70000})
    body = r.json()
    assert r.status_code == 422
    assert {e["field"] for e in body["errors"]} >= {"host", "port"}
    r = admin.post("/account", json={"id": "x", "host": "h", "port": 25})
    assert r.status_code == 422 and r.json()["detail"] == "tenant_id: required"
    r = admin.post("/account", json={"id": "x", "tenant_id": "ghost", "host": "h", "port": 25})
    assert r.status_code == 404 and r.json()["error"] == "tenant_not_found"
    assert a.get("/account/nope").json() == {
        "ok": False,
        "error": "account_not_found",
        "detail": "Account 'nope' not found for tenant 'acme'",
    }
    assert a.put("/account/nope", json={"port": 26}).status_code == 404
    assert a.delete("/account/nope").status_code == 404
    r = a.put("/account/smtp1", json={"id": "renamed"})
    assert r.status_code == 422
    r = a.put("/account/smtp1", json={"port": "x"})
    assert r.status_code == 422 and r.json()["field"] == "port"
    assert admin.get("/accounts", params={"tenant_id": "ghost"}).status_code == 404


def test_delete_account_fails_its_queued_messages(world: World) -> None:
    from tests.integration.api.conftest import msg

    world.a.post("/commands/add-messages", json={"messages": [msg("q1"), msg("q2")]})
    r = world.a.delete("/account/smtp1")
    assert r.json() == {"ok": True, "failed_messages": 2}
    rec = world.a.get("/message/q1").json()
    assert rec["status"] == "error" and rec["error"] == "account deleted"
    assert world.a.get("/account/smtp1").status_code == 404
