"""Tenant isolation (reference §4.2, §4.3): tenant B's key never reaches tenant A; tokens are required."""

from __future__ import annotations

import httpx
import pytest

from mailproxyd.api.registry import ROUTES
from tests.integration.api.conftest import World, msg

FOREIGN = "acme"


def _forbidden(r: httpx.Response, tenant: str = FOREIGN) -> None:
    assert r.status_code == 403, (r.request.method, r.request.url, r.text)
    body = r.json()
    assert body["error"] == "forbidden_tenant"
    assert body["detail"] == f"Token not authorized for tenant '{tenant}'"


def test_tenant_b_cannot_name_tenant_a(world: World) -> None:
    world.a.post("/commands/add-messages", json={"messages": [msg("a-secret-msg")]})
    b = world.b
    q = {"tenant_id": FOREIGN}
    body = {"tenant_id": FOREIGN}
    requests = [
        b.get("/stats", params=q),
        b.post("/commands/run-now", json=body),
        b.post("/commands/run-now", params=q),
        b.post("/commands/suspend", json=body),
        b.post("/commands/suspend", json={**body, "batch_code": "x"}),
        b.post("/commands/activate", params=q),
        b.post("/commands/add-messages", json={**body, "messages": [msg("x")]}),
        b.post("/commands/add-messages", params=q, json={"messages": [msg("x")]}),
        b.get("/messages", params=q),
        b.get("/message/a-secret-msg", params=q),
        b.post("/commands/delete-messages", json={**body, "ids": ["a-secret-msg"]}),
        b.post("/commands/cleanup-messages", json=body),
        b.post("/account", json={**body, "id": "evil", "host": "h", "port": 25}),
        b.get("/accounts", params=q),
        b.get("/account/smtp1", params=q),
        b.put("/account/smtp1", params=q, json={"port": 26}),
        b.put("/account/main", json={"tenant_id": FOREIGN, "port": 26}),
        b.delete("/account/smtp1", params=q),
        b.get("/tenant/acme"),
        b.put("/tenant/acme", json={"name": "pwned"}),
        b.get("/tenants/sync-status", params=q),
        b.get("/events", params=q),
    ]
    for r in requests:
        _forbidden(r)
    # Admin-only routes refuse the tenant key outright.
    for r in (
        b.delete("/tenant/acme"),
        b.post("/tenant/acme/api-key"),
        b.delete("/tenant/acme/api-key"),
        b.post("/tenant", json={"id": "acme"}),
        b.get("/tenants"),
        b.get("/command-log", params=q),
    ):
        assert r.status_code == 403 and r.json()["error"] == "admin_required", r.text


def test_foreign_item_refuses_the_whole_batch(world: World) -> None:
    r = world.b.post(
        "/commands/add-messages",
        json={"messages": [msg("mine"), msg("theirs", tenant_id=FOREIGN)]},
    )
    _forbidden(r)
    # Whether or not the other tenant exists.
    r = world.b.post("/commands/add-messages", json={"messages": [msg("z", tenant_id="ghost")]})
    _forbidden(r, "ghost")
    assert world.b.get("/message/mine").status_code == 404


def test_tenant_b_sees_nothing_of_a(world: World) -> None:
    world.a.post("/commands/add-messages", json={"messages": [msg("shared-id"), msg("only-a")]})
    world.b.post(
        "/commands/add-messages",
        json={"messages": [msg("shared-id", subject="beta's")]},
    )
    b = world.b
    listing = b.get("/messages").json()["messages"]
    assert {m["tenant_id"] for m in listing} == {"beta"}
    assert b.get("/message/only-a").status_code == 404
    assert b.get("/message/shared-id").json()["tenant_id"] == "beta"
    assert b.get("/account/smtp1").status_code == 404
    assert [a["id"] for a in b.get("/accounts").json()["accounts"]] == ["main"]
    status = b.get("/tenants/sync-status").json()
    assert [t["id"] for t in status["tenants"]] == ["beta"]
    # Deleting by A's ids inside B's scope removes nothing of A.
    r = b.post("/commands/delete-messages", json={"ids": ["only-a", "shared-id"]})
    assert r.json()["not_found"] == ["only-a"] and r.json()["removed"] == 1
    assert world.a.get("/message/shared-id").status_code == 200
    assert world.a.get("/message/only-a").status_code == 200
    # Suspending B leaves A alone.
    assert b.post("/commands/suspend").json()["suspended_batches"] == ["*"]
    assert world.a.get("/tenant/acme").json()["suspended_batches"] == []
    # Account names coincide across tenants without sharing anything.
    world.admin.post("/account", json={"id": "main", "tenant_id": "acme", "host": "a", "port": 25})
    assert b.delete("/account/main").json()["ok"] is True
    assert world.a.get("/account/main").status_code == 200


def _concrete(path: str) -> str:
    return path.replace("{id}", "acme").replace("{token}", "t-1-abc").replace("{filename}", "f.txt")


PROTECTED = sorted(
    {(spec.method, spec.path) for spec in ROUTES if spec.role != "public" and not spec.websocket}
)


@pytest.mark.parametrize("token", [None, "definitely-not-a-token"])
def test_every_protected_route_needs_a_token(world: World, token: str | None) -> None:
    assert len(PROTECTED) >= 28
    with world.server.client(token) as c:
        for method, path in PROTECTED:
            r = c.request(method, _concrete(path), json={"tenant_id": "acme"})
            assert r.status_code == 401, (method, path, r.text)
            assert r.json() == {
                "ok": False,
                "error": "unauthorized",
                "detail": "Invalid or missing API token",
            }


def test_revoked_and_expired_keys(world: World) -> None:
    assert world.admin.delete("/tenant/acme/api-key").json() == {"ok": True}
    assert world.a.get("/status").status_code == 401
    r = world.admin.post("/tenant/acme/api-key", json={"expires_at": 1000})
    key = r.json()["api_key"]
    with world.server.client(key) as c:
        assert c.get("/status").status_code == 401  # expired long ago
    r = world.admin.post("/tenant/acme/api-key", json={"expires_at": 4102444800})
    assert r.json()["expires_at"] == 4102444800
    with world.server.client(r.json()["api_key"]) as c:
        assert c.get("/status").status_code == 200
        assert world.admin.delete("/tenant/acme").json() == {"ok": True}
        assert c.get("/status").status_code == 401  # key of a deleted tenant
