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


@pytest.mark.parametrize("levels, status", [(32, 422), (33, 400)])
def test_more_than_32_levels_of_nesting_is_invalid_json(
    world: World, levels: int, status: int
) -> None:
    # The top-level object is level 1; ``name`` holds the remaining levels.
    body = b'{"id": "t1", "name": ' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"
    r = world.admin.post("/tenant", content=body)
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["error"] == "invalid_json"
