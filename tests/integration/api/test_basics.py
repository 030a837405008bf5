"""General HTTP rules (reference §4.1–§4.4) and the system routes (reference §5.1, §5.8, §14)."""

from __future__ import annotations

import logging

import httpx
import pytest

import mailproxyd
from tests.apiclient import ApiServer
from tests.integration.api.conftest import World, msg


def _error(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    body = r.json()
    assert body["ok"] is False and body["error"] == code, body
    assert isinstance(body["detail"], str)
    return body


def test_health_is_public(api_server: ApiServer) -> None:
    with api_server.client() as c:
        r = c.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_status_both_roles(world: World) -> None:
    r = world.admin.get("/status")
    assert r.status_code == 200
    body = r.json()
    assert body == {
        "ok": True,
        "scheduler_active": False,
        "active": False,
        "test_mode": True,
        "version": mailproxyd.__version__,
        "node": "test-node",
        "workers": {
            "api": {"expected": 1, "running": 1},
            "sender": {"expected": 2, "running": 2},
            "reporter": {"expected": 1, "running": 1},
        },
    }
    assert world.a.get("/status").json() == body
    assert ("status", {}) in world.server.link.calls


def test_stats_admin_and_tenant(world: World) -> None:
    world.a.post("/commands/add-messages", json={"messages": [msg("s1"), msg("s2")]})
    whole = world.admin.get("/stats").json()
    assert whole == {
        "ok": True,
        "tenants": 2,
        "accounts": 2,
        "messages": {"pending": 2, "deferred": 0, "sending": 0, "sent": 0, "error": 0},
    }
    mine = world.a.get("/stats").json()
    assert mine["tenants"] == 1 and mine["accounts"] == 1
    assert mine["messages"]["pending"] == 2
    theirs = world.b.get("/stats").json()
    assert theirs["messages"]["pending"] == 0
    assert world.admin.get("/stats", params={"tenant_id": "beta"}).json() == theirs
    _error(world.admin.get("/stats", params={"tenant_id": "nope"}), 404, "tenant_not_found")


def test_unknown_route_and_method(world: World) -> None:
    body = _error(world.admin.get("/no/such/route"), 404, "not_found")
    assert body["detail"] == "No route for GET /no/such/route"
    # Unknown routes answer 404 even without a token.
    _error(world.anon.post("/nothing-here"), 404, "not_found")
    _error(world.admin.delete("/health"), 405, "method_not_allowed")
    _error(world.admin.get("/commands/add-messages"), 405, "method_not_allowed")


def test_missing_and_wrong_token(world: World) -> None:
    with world.server.client("wrong-token-value") as wrong:
        for client in (world.anon, wrong):
            body = _error(client.get("/status"), 401, "unauthorized")
            assert body["detail"] == "Invalid or missing API token"


def test_failed_auth_logged_without_token(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailproxyd.api.auth")
    with world.server.client("sekrit-wrong-token") as wrong:
        wrong.get("/stats")
    lines = [r.getMessage() for r in caplog.records if r.name == "mailproxyd.api.auth"]
    assert any("/stats" in line and "127.0.0.1" in line for line in lines), lines
    assert not any("sekrit-wrong-token" in line for line in lines)


def test_admin_token_replaced_at_reload(world: World) -> None:
    old = world.server.admin_token
    world.server.set_settings(api_token="a-brand-new-admin-token")
    try:
        _error(world.admin.get("/tenants"), 401, "unauthorized")
        with world.server.client("a-brand-new-admin-token") as c:
            assert c.get("/tenants").status_code == 200
    finally:
        world.server.set_settings(api_token=old)


def test_tenant_key_on_admin_route(world: World) -> None:
    body = _error(world.a.get("/tenants"), 403, "admin_required")
    assert body["detail"] == "Admin token required, tenant tokens not allowed for this operation"


def test_invalid_json_bodies(world: World) -> None:
    for raw in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe{}", b""):
        _error(world.admin.post("/tenant", content=raw), 400, "invalid_json")
    # Content-Type is never checked (no 415): a JSON object sent as text/plain is fine.
    r = world.admin.post(
        "/tenant", content=b'{"id": "gamma"}', headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 200, r.text


def test_request_too_large(api_server: ApiServer) -> None:
    api_server.set_settings(max_request_mb=1)
    big = b'{"messages": [], "pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    with api_server.admin() as c:
        # The limit applies from the next request built after the change.
        c.get("/health")
        _error(c.post("/commands/add-messages", content=big), 413, "request_too_large")

        # Without Content-Length (chunked), the body is cut off while streaming.
        def chunks():  # type: ignore[no-untyped-def]
            yield big[: 512 * 1024]
            yield big[512 * 1024 :]

        _error(c.post("/commands/add-messages", content=chunks()), 413, "request_too_large")
        assert c.post("/commands/add-messages", json={"messages": []}).status_code == 200


def test_query_booleans(world: World) -> None:
    for value in ("true", "TRUE", "1", "yes", "false", "0", "No"):
        assert world.admin.get("/tenants", params={"active_only": value}).status_code == 200
    body = _error(
        world.admin.get("/tenants", params={"active_only": "maybe"}), 422, "validation_error"
    )
    assert body["field"] == "active_only"


def test_tenant_id_query_and_body_must_agree(world: World) -> None:
    r = world.admin.post(
        "/commands/add-messages",
        params={"tenant_id": "acme"},
        json={"tenant_id": "beta", "messages": []},
    )
    body = _error(r, 422, "validation_error")
    assert body["field"] == "tenant_id"


def test_admin_needs_tenant_id(world: World) -> None:
    body = _error(world.admin.get("/messages"), 422, "validation_error")
    assert body["detail"] == "tenant_id: required"
    assert body["errors"] == [{"field": "tenant_id", "message": "required"}]


def test_metrics_public_without_token(api_server: ApiServer) -> None:
    with api_server.client() as c:
        r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_metrics_token(api_server: ApiServer) -> None:
    api_server.set_settings(metrics_token="metrics-secret-token")
    with api_server.client() as c:
        _error(c.get("/metrics"), 401, "unauthorized")
        assert c.get("/metrics", headers={"X-API-Token": "metrics-secret-token"}).status_code == 200
        bearer = {"Authorization": "Bearer metrics-secret-token"}
        assert c.get("/metrics", headers=bearer).status_code == 200
        admin = {"X-API-Token": api_server.admin_token}
        assert c.get("/metrics", headers=admin).status_code == 200
        _error(c.get("/metrics", headers={"X-API-Token": "nope"}), 401, "unauthorized")
        # The metrics token opens nothing else.
        _error(
            c.get("/status", headers={"X-API-Token": "metrics-secret-token"}), 401, "unauthorized"
        )


def test_download_unknown_link(api_server: ApiServer) -> None:
    with api_server.client() as c:
        _error(c.get("/download/abc-123-def/report.pdf"), 404, "not_found")


def test_openapi_document(api_server: ApiServer) -> None:
    with api_server.client() as c:
        doc = c.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["version"] == mailproxyd.__version__
    assert doc["components"]["securitySchemes"]["ApiToken"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Token",
    }
    catalogue = {
        ("get", "/health"), ("get", "/status"), ("get", "/stats"), ("get", "/metrics"),
        ("get", "/openapi.json"), ("post", "/commands/run-now"), ("post", "/commands/suspend"),
        ("post", "/commands/activate"), ("post", "/commands/add-messages"), ("get", "/messages"),
        ("get", "/message/{id}"), ("post", "/commands/delete-messages"),
        ("post", "/commands/cleanup-messages"), ("post", "/account"), ("get", "/accounts"),
        ("get", "/account/{id}"), ("put", "/account/{id}"), ("delete", "/account/{id}"),
        ("post", "/tenant"), ("get", "/tenants"), ("get", "/tenants/sync-status"),
        ("get", "/tenant/{id}"), ("put", "/tenant/{id}"), ("delete", "/tenant/{id}"),
        ("post", "/tenant/{id}/api-key"), ("delete", "/tenant/{id}/api-key"),
        ("get", "/instance"), ("put", "/instance"), ("post", "/instance/reload-bounce"),
        ("get", "/command-log"), ("get", "/command-log/export"),
        ("get", "/download/{token}/{filename}"), ("get", "/events"),
    }  # fmt: skip
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == catalogue
    add = doc["paths"]["/commands/add-messages"]["post"]
    assert add["security"] == [{"ApiToken": []}]
    assert {"200", "400", "401", "403", "413", "422"} <= set(add["responses"])
    assert doc["paths"]["/health"]["get"]["security"] == []


def test_nul_characters_are_field_errors(world: World) -> None:
    # Neither backend can store U+0000 in text: a 422 naming the field, never a 500.
    r = world.admin.post("/tenant", json={"id": "nul", "name": "a\x00b"})
    assert r.status_code == 422 and r.json()["field"] == "name"
    r = world.a.post("/commands/add-messages", json={"messages": [msg("n1", body="x\x00")]})
    assert r.status_code == 422 and r.json()["field"] == "messages[0].body"
    r = world.admin.get("/command-log", params={"endpoint_filter": "a\x00"})
    assert r.status_code == 422 and r.json()["field"] == "endpoint_filter"
    r = world.a.get("/account/a%00b")
    assert r.status_code == 422 and r.json()["field"] == "id"


class _DefectiveDatabase:
    """Stands in for a store with a bug: every call raises an unexpected exception."""

    async def run(self, *args: object, **kwargs: object) -> object:
        raise ZeroDivisionError("a defect")


def test_defect_is_500_with_reference(world: World, caplog: pytest.LogCaptureFixture) -> None:
    ctx = world.server.ctx
    original = ctx.db
    ctx.db = _DefectiveDatabase()
    try:
        r = world.admin.get("/tenants")
    finally:
        ctx.db = original
    body = _error(r, 500, "internal_error")
    assert body["detail"].startswith("Internal error (ref ") and "Traceback" not in r.text
    ref = str(body["detail"])[len("Internal error (ref ") : -1]
    assert any(ref in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_empty_tenant_id_counts_as_absent(world: World) -> None:
    r = world.a.post("/commands/add-messages", json={"tenant_id": "", "messages": [msg("e1")]})
    assert r.status_code == 200 and r.json()["queued"] == 1
    assert world.a.get("/messages", params={"tenant_id": ""}).status_code == 200


def test_json_bodies_end_with_a_newline(world: World) -> None:
    # Success, error, single-resource and public bodies alike, and the OpenAPI document.
    responses = [
        world.anon.get("/health"),
        world.admin.get("/status"),
        world.admin.get("/tenant/acme"),
        world.admin.get("/no/such/route"),
        world.anon.get("/status"),
        world.anon.get("/openapi.json"),
        world.a.post("/commands/add-messages", json={"messages": []}),
    ]
    for r in responses:
        assert r.headers["content-type"] == "application/json; charset=utf-8", r.url
        assert r.content.endswith(b"}\n") and not r.content.endswith(b"\n\n"), r.url
