"""run-now, suspend and activate (reference §5.2)."""

from __future__ import annotations

from mailproxyd.store import meta
from tests.integration.api.conftest import World, msg


def test_run_now_global_and_tenant(world: World) -> None:
    link = world.server.link
    assert world.admin.post("/commands/run-now").json() == {"ok": True, "triggered": True}
    assert link.calls[-1] == ("run_now", {})
    assert world.a.post("/commands/run-now").json() == {"ok": True, "triggered": True}
    assert link.calls[-1] == ("run_now", {"tenant_id": "acme"})
    r = world.admin.post("/commands/run-now", json={"tenant_id": "beta"})
    assert r.status_code == 200 and link.calls[-1] == ("run_now", {"tenant_id": "beta"})
    # The tenant's heartbeat becomes due (reference §5.2).
    row = next(
        t for t in world.a.get("/tenants/sync-status").json()["tenants"] if t["id"] == "acme"
    )
    assert row["next_sync_due"] is True and row["in_dnd"] is False
    r = world.admin.post("/commands/run-now", json={"tenant_id": "ghost"})
    assert r.status_code == 404 and r.json()["error"] == "tenant_not_found"
    # A tenant key may name its own tenant.
    assert world.a.post("/commands/run-now", params={"tenant_id": "acme"}).status_code == 200


def test_global_suspend_and_activate(world: World) -> None:
    db = world.server.db
    r = world.admin.post("/commands/activate")
    assert r.json() == {"ok": True, "scheduler_active": True, "active": True}
    assert db.run(meta.get_scheduler_active) is True
    r = world.admin.post("/commands/suspend", json={})
    assert r.json() == {"ok": True, "scheduler_active": False, "active": False}
    assert db.run(meta.get_scheduler_active) is False
    assert world.admin.get("/status").json()["scheduler_active"] is False


def test_tenant_and_batch_suspension(world: World) -> None:
    items = [msg("m1", batch_code="spring-2026"), msg("m2", batch_code="spring-2026"), msg("m3")]
    world.a.post("/commands/add-messages", json={"messages": items})
    r = world.a.post("/commands/suspend", json={"batch_code": "spring-2026"})
    assert r.json() == {
        "ok": True,
        "tenant_id": "acme",
        "batch_code": "spring-2026",
        "suspended_batches": ["spring-2026"],
        "pending_messages": 2,
    }
    r = world.admin.post("/commands/suspend", params={"tenant_id": "acme"})
    assert r.json() == {
        "ok": True,
        "tenant_id": "acme",
        "suspended_batches": ["*"],
        "pending_messages": 3,
    }
    r = world.a.post("/commands/activate", json={"batch_code": "spring-2026"})
    assert r.status_code == 409
    assert r.json()["detail"] == (
        "cannot activate batch 'spring-2026' while the whole tenant is suspended; "
        "activate the tenant first"
    )
    r = world.a.post("/commands/activate")
    assert r.json()["suspended_batches"] == []
    # Suspension holds dispatch only: enqueueing still works.
    assert (
        world.a.post("/commands/add-messages", json={"messages": [msg("m4")]}).json()["queued"] == 1
    )


def test_suspend_errors(world: World) -> None:
    r = world.admin.post("/commands/suspend", json={"tenant_id": "ghost"})
    assert r.status_code == 404 and r.json()["error"] == "tenant_not_found"
    for code in ("*", "a,b", "x" * 65, "bad\ncode"):
        r = world.a.post("/commands/suspend", json={"batch_code": code})
        assert r.status_code == 422 and r.json()["field"] == "batch_code", code
    r = world.admin.post("/commands/suspend", json={"batch_code": "b"})
    assert r.status_code == 422 and r.json()["detail"] == "tenant_id: required"


class _GoneSupervisorLink:
    """The worker end of a link whose supervisor has gone away (the node is stopping)."""

    async def send(self, message: dict[str, object]) -> None:
        return None

    async def call(self, method: str, params: dict[str, object] | None = None) -> dict[str, object]:
        from mailproxyd.errors import MailProxyError

        raise MailProxyError("supervisor unavailable")


def test_run_now_while_node_stops(world: World) -> None:
    ctx = world.server.ctx
    original = ctx.link
    ctx.link = _GoneSupervisorLink()
    try:
        r = world.admin.post("/commands/run-now")
        status = world.admin.get("/status")
    finally:
        ctx.link = original
    assert r.status_code == 503
    assert r.json() == {"ok": False, "error": "unavailable", "detail": "node is shutting down"}
    # /status still answers, describing what the node is configured to run.
    assert status.status_code == 200
    assert status.json()["workers"]["sender"] == {"expected": 2, "running": 0}
