"""The ``/events`` WebSocket (§5.9): auth before the upgrade, live frames from the database."""

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.integration.api.conftest import World, msg


def _ws_url(world: World, query: str = "") -> str:
    return world.server.url.replace("http://", "ws://") + "/events" + query


def _headers(token: str | None) -> list[tuple[bytes, bytes]]:
    return [(b"X-API-Token", token.encode())] if token else []


async def _rejected(url: str, token: str | None) -> tuple[int, dict[str, object]]:
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(url, extra_headers=_headers(token), connect_timeout=5):
            pass  # pragma: no cover - the upgrade must be refused
    return info.value.status_code, json.loads(info.value.body or b"{}")


async def test_upgrade_refused_without_valid_token(world: World) -> None:
    status, body = await _rejected(_ws_url(world), None)
    assert status == 401 and body["error"] == "unauthorized"
    status, body = await _rejected(_ws_url(world), "wrong")
    assert status == 401
    status, body = await _rejected(_ws_url(world, "?tenant_id=beta"), world.a_key)
    assert status == 403 and body["error"] == "forbidden_tenant"
    status, body = await _rejected(_ws_url(world, "?tenant_id=ghost"), world.server.admin_token)
    assert status == 404 and body["error"] == "tenant_not_found"


async def _add(world: World, client_name: str, items: list[dict[str, object]]) -> None:
    client = getattr(world, client_name)
    await trio.to_thread.run_sync(
        lambda: client.post("/commands/add-messages", json={"messages": items})
    )


async def _frames(ws: object, count: int, timeout: float = 5) -> list[dict[str, object]]:
    frames = []
    with trio.fail_after(timeout):
        while len(frames) < count:
            frames.append(json.loads(await ws.get_message()))  # type: ignore[attr-defined]
    return frames


async def test_live_frames_scoped_per_tenant(world: World) -> None:
    # An event recorded before connecting is not replayed.
    await _add(world, "a", [msg("before", account_id="nope")])
    admin_url = _ws_url(world)
    async with (
        open_websocket_url(admin_url, extra_headers=_headers(world.server.admin_token)) as all_ws,
        open_websocket_url(_ws_url(world), extra_headers=_headers(world.a_key)) as a_ws,
    ):
        # Recorded rejections (§6.9) are error events, written by this process like any other.
        await _add(world, "b", [msg("b-1", account_id="nope")])
        await _add(world, "a", [msg("a-1", account_id="nope")])
        frames = await _frames(all_ws, 2)
        assert [(f["tenant_id"], f["id"]) for f in frames] == [("beta", "b-1"), ("acme", "a-1")]
        assert frames[1] == {
            "tenant_id": "acme",
            "id": "a-1",
            "account_id": "nope",
            "priority": 2,
            "sent_ts": None,
            "error_ts": frames[1]["error_ts"],
            "error": "account not found for tenant",
            "deferred_ts": None,
            "event": "error",
        }
        assert isinstance(frames[1]["error_ts"], int)
        mine = await _frames(a_ws, 1)
        assert mine[0]["id"] == "a-1"  # beta's event never reaches acme's stream
        with trio.move_on_after(0.8) as idle:
            await a_ws.get_message()
        assert idle.cancelled_caught


def test_plain_get_needs_an_upgrade(world: World) -> None:
    r = world.a.get("/events")
    assert r.status_code == 426 and r.json()["error"] == "upgrade_required"
    assert world.anon.get("/events").status_code == 401


async def test_streams_over_the_cap_are_refused_with_retry_after(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailproxyd.api.routes import events

    monkeypatch.setattr(events, "MAX_STREAMS", 2)
    url, token = _ws_url(world), world.server.admin_token
    async with (
        open_websocket_url(url, extra_headers=_headers(token), connect_timeout=5),
        open_websocket_url(url, extra_headers=_headers(token), connect_timeout=5),
    ):
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(url, extra_headers=_headers(token), connect_timeout=5):
                pass  # pragma: no cover - the upgrade must be refused
        assert info.value.status_code == 503
        assert json.loads(info.value.body or b"{}")["detail"] == "Too many event streams"
        assert dict(info.value.headers)[b"retry-after"] == b"5"
    # Closed streams free their places.
    async with open_websocket_url(url, extra_headers=_headers(token), connect_timeout=5):
        pass
