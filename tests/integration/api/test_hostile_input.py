"""Hostile input found in review: deep nesting and repeated query parameters (§4.1, §4.3, §4.4)."""

from __future__ import annotations

import pytest

from tests.integration.api.conftest import World


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        b'{"id":' + b"[" * 990 + b'"\\u0000"' + b"]" * 990 + b"}",
    ],
    ids=["deep-list", "deep-object", "deep-nul"],
)
@pytest.mark.parametrize("path", ["/tenant", "/account", "/commands/add-messages"])
def test_deeply_nested_bodies_are_a_client_error(world: World, path: str, body: bytes) -> None:
    r = world.admin.post(path, content=body)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["ok"] is False
    assert world.admin.get("/health").json() == {"status": "ok"}


def test_a_repeated_tenant_id_naming_another_tenant_is_refused(world: World) -> None:
    for query in ("tenant_id=acme&tenant_id=beta", "tenant_id=beta&tenant_id=acme"):
        r = world.b.get(f"/messages?{query}")
        assert r.status_code == 403, (query, r.text)
        assert r.json()["error"] == "forbidden_tenant"


def test_admin_with_disagreeing_repeated_tenant_ids_is_a_422(world: World) -> None:
    r = world.admin.get("/messages?tenant_id=acme&tenant_id=beta")
    assert r.status_code == 422 and r.json()["field"] == "tenant_id"
    r = world.admin.get("/messages?tenant_id=acme&tenant_id=acme")
    assert r.status_code == 200


def _deep(levels: int, leaf: str = "1") -> str:
    return '{"a":' * (levels - 1) + "[" + leaf + "]" + "}" * (levels - 1)


@pytest.mark.parametrize("levels", [33, 900])
def test_nesting_beyond_32_levels_is_invalid_json_everywhere(world: World, levels: int) -> None:
    """One limit at decoding (§4.4), wherever the deep value sits (defect 15.2)."""
    deep = _deep(levels - 1)  # one level more once it sits inside the body object
    bodies = {
        "/tenant": '{"id":"t1","unknown":' + deep + "}",
        "/account": '{"id":"s9","tenant_id":"acme","host":"h","port":25,"oops":' + deep + "}",
        "/commands/add-messages": '{"messages":[{"id":"m\\u0031","x":' + _deep(levels - 3) + "}]}",
    }
    for path, body in bodies.items():
        r = world.admin.post(path, content=body.encode())
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"] == "invalid_json", (path, r.text)
        assert "32 levels" in r.json()["detail"]


def test_32_levels_are_accepted(world: World) -> None:
    body = '{"id":"s9","tenant_id":"acme","host":"h","port":25,"oops":' + _deep(31) + "}"
    r = world.admin.post("/account", content=body.encode())
    assert r.status_code == 422 and r.json()["field"] == "oops", r.text


def test_a_deep_priority_is_refused_and_the_tenant_stays_readable(world: World) -> None:
    item = '{"id":"deep1","from":"a@acme.example","to":["b@example.org"],"subject":"s","priority":'
    body = '{"tenant_id":"acme","messages":[' + item + _deep(900) + "}]}"
    r = world.admin.post("/commands/add-messages", content=body.encode())
    assert r.status_code == 400 and r.json()["error"] == "invalid_json", r.text
    assert world.admin.get("/messages?tenant_id=acme").status_code == 200
    # At the limit the rejection is recorded, and it reads back (§6.9).
    shallow = '{"tenant_id":"acme","messages":[' + item + _deep(28) + "}]}"
    r = world.admin.post("/commands/add-messages", content=shallow.encode())
    assert r.status_code == 400 and r.json()["error"] == "nothing_queued", r.text
    assert world.admin.get("/messages?tenant_id=acme").status_code == 200
    assert world.admin.get("/message/deep1?tenant_id=acme").status_code == 200
