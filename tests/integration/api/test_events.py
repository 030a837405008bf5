"""The ``/events`` WebSocket (reference §5.9): auth before the upgrade, live frames from the database."""

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.apiclient import refused_upgrade
from tests.integration.api.conftest import World, msg


def _ws_url(world: World, query: str = "") -> str:
    return world.server.url.replace("http://", "ws://") + "/events" + query


def _headers(token: str | None) -> list[tuple[bytes, bytes]]:
    return [(b"X-API-Token", token.encode())] if token else []


async def _rejected(url: str, token: str | None) -> tuple[int, dict[str, object]]:
    rejected = await refused_upgrade(url, _headers(token))
    return rejected.status_code, json.loads(rejected.body or b"{}")


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
        # Recorded rejections (reference §6.9) are error events, written by this process like any other.
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


async def test_a_stream_joining_a_running_poller_gets_no_earlier_event(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that connects while another one is open (the shared poller runs, up to a poll
    behind the table) still starts after the newest event at its connection, not after the
    poller's last read: an event recorded just before it connected is not replayed to it."""
    from mailproxyd.api import eventhub

    # A long poll interval holds the poller's last read behind the table while the second
    # stream connects (the default, half a second, makes the same race only likely).
    monkeypatch.setattr(eventhub, "POLL_SECONDS", 2.0)
    url = _ws_url(world)
    async with open_websocket_url(url, extra_headers=_headers(world.server.admin_token)) as first:
        await _add(world, "a", [msg("early", account_id="nope")])
        async with open_websocket_url(url, extra_headers=_headers(world.a_key)) as second:
            await _add(world, "a", [msg("late", account_id="nope")])
            assert [f["id"] for f in await _frames(first, 2)] == ["early", "late"]
            assert [f["id"] for f in await _frames(second, 1)] == ["late"]
            with trio.move_on_after(0.5) as idle:
                await second.get_message()
            assert idle.cancelled_caught


def test_plain_get_needs_an_upgrade(world: World) -> None:
    r = world.a.get("/events")
    assert r.status_code == 426 and r.json()["error"] == "upgrade_required"
    assert world.anon.get("/events").status_code == 401


async def test_streams_are_capped_per_node_and_share_one_poller(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """reference §5.9: above the cap the upgrade gets 503 with Retry-After: 5; the streams of one api
    worker share one poller instead of polling each on its own (defect 15.9)."""
    from contextlib import AsyncExitStack

    from mailproxyd.api import eventhub
    from mailproxyd.services import admin

    monkeypatch.setattr(eventhub, "MAX_STREAMS", 4)
    polls = []
    real = admin.frames_after

    async def counting(*args: object, **kwargs: object) -> object:
        polls.append(trio.current_time())
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(admin, "frames_after", counting)
    url = _ws_url(world)
    token = world.server.admin_token
    async with AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(open_websocket_url(url, extra_headers=_headers(token)))
            for _ in range(4)
        ]
        refused = await refused_upgrade(url, _headers(token))
        assert refused.status_code == 503
        assert dict(refused.headers or [])[b"retry-after"] == b"5"
        body = json.loads(refused.body or b"{}")
        assert body == {"ok": False, "error": "unavailable", "detail": "Too many event streams"}
        polls.clear()
        await trio.sleep(2.0)
        # One poller, twice a second: about 4 polls in 2 s, not 4 per stream.
        assert 2 <= len(polls) <= 7, len(polls)
        await _add(world, "a", [msg("fan", account_id="nope")])
        for ws in sockets:
            (frame,) = await _frames(ws, 1)
            assert frame["id"] == "fan"
    # Closed streams free their places.
    with trio.fail_after(10):
        while True:
            try:
                async with open_websocket_url(url, extra_headers=_headers(token)):
                    break
            except ConnectionRejected:
                await trio.sleep(0.2)
