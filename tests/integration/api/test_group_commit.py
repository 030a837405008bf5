"""Group commit of add-messages and the ingest capacity limit (reference §4.5, §6.8), on both
backends: concurrent requests share one transaction and one commit yet each keeps its own
answer, a call that fails inside a group fails alone, and a request over capacity gets 503 with
``Retry-After`` and changes nothing."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from mailproxyd.errors import StoreError
from mailproxyd.services import ingest
from mailproxyd.store import commandlog
from mailproxyd.store.database import TransientConflict
from mailproxyd.store.grouped import run_grouped
from tests.integration.api.conftest import World, msg


def _poll(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def _writer(world: World) -> ingest.IngestWriter:
    # The server's writer exists once it has served one add-messages request.
    return ingest._WRITERS[world.server.ctx.db]


@contextlib.contextmanager
def _writes_blocked(world: World) -> Iterator[None]:
    """Hold a lock that stops every add-messages write (reads go on) until the block ends."""
    db = world.server.db
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with db.transaction() as tx:  # SQLite: BEGIN IMMEDIATE takes the write lock
            if tx.backend == "postgres":
                tx.raw("LOCK TABLE messages IN EXCLUSIVE MODE")
            held.set()
            release.wait(20)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join(20)


def _stored(world: World, tenant_id: str = "acme") -> dict[str, dict[str, Any]]:
    r = world.admin.get("/messages", params={"tenant_id": tenant_id, "limit": 1000})
    assert r.status_code == 200, r.text
    return {m["id"]: m for m in r.json()["messages"]}


def _post(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/commands/add-messages", json=body)


def test_concurrent_requests_share_one_commit_and_keep_their_own_answers(world: World) -> None:
    assert _post(world.a, {"messages": [msg("warm")]}).status_code == 200
    writer = _writer(world)
    groups_before = writer.groups_written
    bodies: list[tuple[httpx.Client, dict[str, Any]]] = [
        (world.a, {"messages": [msg(f"a{n}-{i}") for i in range(10)]}) for n in range(8)
    ]
    # Nothing valid: answered 400 nothing_queued, its rejection recorded, the others unharmed.
    bodies.append((world.a, {"messages": [msg("bad", to=[])]}))
    # One item rejected, the rest queued.
    bodies.append((world.a, {"messages": [msg("mixed-ok"), msg("mixed-bad", subject="")]}))
    # Another tenant in the same group.
    bodies.append((world.b, {"messages": [msg("b-1")]}))
    # The same id twice in one group: the later request replaces the earlier one, as in order.
    bodies.append((world.a, {"messages": [msg("twice", subject="first")]}))
    with ThreadPoolExecutor(len(bodies)) as pool, _writes_blocked(world):
        futures = []
        for client, body in bodies[:-1]:
            futures.append(pool.submit(_post, client, body))
        _poll(lambda: writer.pending_messages == 8 * 10 + 1 + 2 + 1)
        futures.append(pool.submit(_post, *bodies[-1]))
        _poll(lambda: writer.pending_messages == 8 * 10 + 1 + 2 + 1 + 1)
    answers = [f.result() for f in futures]
    for answer in answers[:8]:
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"ok": True, "queued": 10, "rejected": []}
    assert answers[8].status_code == 400
    assert answers[8].json()["error"] == "nothing_queued"
    assert answers[9].json() == {
        "ok": True,
        "queued": 1,
        "rejected": [{"id": "mixed-bad", "reason": "missing subject"}],
    }
    assert answers[10].json() == {"ok": True, "queued": 1, "rejected": []}
    assert answers[11].json() == {"ok": True, "queued": 1, "rejected": []}
    # The first request may have gone alone (the lock held it); the rest waited and went together.
    assert writer.groups_written - groups_before <= 2
    stored = _stored(world)
    assert {f"a{n}-{i}" for n in range(8) for i in range(10)} <= set(stored)
    assert stored["bad"]["status"] == "error"  # recorded rejection (reference §6.9)
    assert stored["mixed-ok"]["status"] == "pending"
    assert stored["twice"]["message"]["subject"] == "first"
    assert set(_stored(world, "beta")) == {"b-1"}


def test_same_id_in_one_group_applies_in_arrival_order(world: World) -> None:
    assert _post(world.a, {"messages": [msg("warm")]}).status_code == 200
    writer = _writer(world)
    with ThreadPoolExecutor(2) as pool, _writes_blocked(world):
        first = pool.submit(_post, world.a, {"messages": [msg("dup", subject="first")]})
        _poll(lambda: writer.pending_messages == 1)
        second = pool.submit(_post, world.a, {"messages": [msg("dup", subject="second")]})
        _poll(lambda: writer.pending_messages == 2)
    assert first.result().json()["queued"] == 1
    assert second.result().json()["queued"] == 1
    assert _stored(world)["dup"]["message"]["subject"] == "second"


def test_over_capacity_is_refused_with_retry_after_and_changes_nothing(world: World) -> None:
    world.server.set_settings(max_pending_messages=5)
    # An idle writer takes a request larger than the bound.
    r = _post(world.a, {"messages": [msg(f"big-{i}") for i in range(8)]})
    assert r.status_code == 200, r.text
    writer = _writer(world)
    with ThreadPoolExecutor(1) as pool, _writes_blocked(world):
        waiting = pool.submit(_post, world.a, {"messages": [msg(f"w-{i}") for i in range(5)]})
        _poll(lambda: writer.pending_messages == 5)
        refused = _post(world.a, {"messages": [msg("late")]})
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        body = refused.json()
        assert body["ok"] is False and body["error"] == "unavailable"
        assert "over capacity" in body["detail"]
    assert waiting.result().status_code == 200
    stored = _stored(world)
    assert "late" not in stored
    assert {f"w-{i}" for i in range(5)} <= set(stored)
    # Room again: the same request goes through.
    _poll(lambda: writer.pending_messages == 0)
    assert _post(world.a, {"messages": [msg("late")]}).status_code == 200


def test_the_byte_bound_refuses_too(world: World) -> None:
    world.server.set_settings(max_pending_mb=1)
    assert _post(world.a, {"messages": [msg("warm")]}).status_code == 200
    writer = _writer(world)
    large = {"messages": [msg(f"l-{i}", body="x" * 100_000) for i in range(11)]}  # > 1 MiB
    with ThreadPoolExecutor(1) as pool, _writes_blocked(world):
        waiting = pool.submit(_post, world.a, large)
        _poll(lambda: writer.pending_bytes > 1024 * 1024)
        refused = _post(world.a, {"messages": [msg("small")]})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert waiting.result().status_code == 200
    assert "small" not in _stored(world)


# ------------------------------------------------------------------ the store's group runner


def _log(endpoint: str, fail: BaseException | None = None) -> Callable[[Any], str]:
    def call(tx: Any) -> str:
        commandlog.append(tx, time.time(), endpoint, None, {"n": endpoint}, 200)
        if fail is not None:
            raise fail
        return endpoint

    return call


def _endpoints(world: World) -> set[str]:
    with world.server.db.transaction(write=False) as tx:
        return {row["endpoint"] for row in commandlog.list_commands(tx, limit=1000)}


def test_a_failing_call_is_rolled_back_alone(world: World) -> None:
    def bad_sql(tx: Any) -> None:
        commandlog.append(tx, time.time(), "broken", None, {}, 200)
        tx.raw("SELECT * FROM no_such_table")

    outcomes = run_grouped(
        world.server.db,
        [_log("one"), _log("two", ValueError("boom")), bad_sql, _log("three")],
    )
    assert outcomes[0] == ("one", None)
    assert isinstance(outcomes[1][1], ValueError)
    # A driver error is translated, and on PostgreSQL the aborted transaction is recovered.
    assert isinstance(outcomes[2][1], StoreError)
    assert outcomes[3] == ("three", None)
    endpoints = _endpoints(world)
    assert {"one", "three"} <= endpoints
    assert not {"two", "broken"} & endpoints


def test_a_failing_group_is_retried_call_by_call(world: World) -> None:
    attempts = {"n": 0}

    def conflicts_in_a_group(tx: Any) -> str:
        attempts["n"] += 1
        commandlog.append(tx, time.time(), "flaky", None, {}, 200)
        if attempts["n"] <= 5:  # every attempt of the group transaction loses its lock race
            raise TransientConflict("lost a race")
        return "flaky"

    outcomes = run_grouped(world.server.db, [_log("before"), conflicts_in_a_group, _log("after")])
    assert outcomes == [("before", None), ("flaky", None), ("after", None)]
    assert attempts["n"] == 6
    assert {"before", "flaky", "after"} <= _endpoints(world)
