"""``AsyncDatabase.run`` from trio, and ``Database.run``'s retry of transient conflicts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio

from mailproxyd.errors import DatabaseUnavailable, NotFound
from mailproxyd.store import AsyncDatabase, Database, meta, queue, tenants
from mailproxyd.store import messages as store_messages
from mailproxyd.store.database import RETRY_ATTEMPTS, TransientConflict, Tx

from .conftest import NOW, make_item


async def test_async_run_in_threads(acme: Database) -> None:
    adb = AsyncDatabase(acme, limiter_tokens=2)
    assert await adb.run(meta.get_scheduler_active, write=False) is True
    await adb.run(queue.enqueue, "acme", [make_item(f"m{i}") for i in range(20)], [], NOW)
    claimed: list[int] = []

    async def claimer(owner: str) -> None:
        while rows := await adb.run(queue.claim_batch, "acme", "main", owner, 3, NOW, 120):
            claimed.extend(row["pk"] for row in rows)

    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(claimer, f"n/s{i}")
    assert len(claimed) == len(set(claimed)) == 20
    with pytest.raises(NotFound):
        await adb.run(tenants.get, "ghost", write=False)


async def test_async_run_rolls_back_on_error(acme: Database) -> None:
    adb = AsyncDatabase(acme)

    def set_then_fail(tx: Tx) -> None:
        meta.set_scheduler_active(tx, False)
        raise NotFound("stop", code="x")

    with pytest.raises(NotFound):
        await adb.run(set_then_fail)
    assert await adb.run(meta.get_scheduler_active) is True


def test_run_retries_transient_conflicts(acme: Database) -> None:
    calls = []

    def flaky(tx: Tx) -> str:
        calls.append(threading.get_ident())
        if len(calls) < 3:
            raise TransientConflict("database is busy")
        meta.set_key_fingerprint(tx, "f")
        return "done"

    assert acme.run(flaky) == "done" and len(calls) == 3
    calls.clear()

    def always_busy(tx: Tx) -> None:
        calls.append(1)
        raise TransientConflict("database is busy")

    with pytest.raises(DatabaseUnavailable):
        acme.run(always_busy)
    assert len(calls) == RETRY_ATTEMPTS


def test_sqlite_writers_wait_for_each_other(acme_free_sqlite: tuple[Database, Path]) -> None:
    """A second writer waits for the lock (busy timeout) instead of failing."""
    acme, _ = acme_free_sqlite
    assert acme.sqlite_path is not None
    from mailproxyd.store import open_database

    other = open_database(acme.sqlite_path, box=acme.box)
    holding = threading.Event()
    release = threading.Event()

    def hold_write_lock() -> None:
        with acme.transaction() as tx:
            meta.set_key_fingerprint(tx, "first")
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold_write_lock)
    thread.start()
    try:
        assert holding.wait(10)
        threading.Timer(0.2, release.set).start()
        with other.transaction() as tx:  # blocks until the first writer commits
            assert meta.get_key_fingerprint(tx) == "first"
            meta.set_key_fingerprint(tx, "second")
    finally:
        release.set()
        thread.join()
        other.close()
    with acme.transaction(write=False) as tx:
        assert meta.get_key_fingerprint(tx) == "second"


def test_concurrent_enqueue_of_one_new_id(acme: Database) -> None:
    """Two transactions insert the same new id: the second becomes a replacement, not an error."""
    inserted = threading.Event()
    release = threading.Event()

    def first() -> None:
        with acme.transaction() as tx:
            queue.enqueue(tx, "acme", [make_item("same", subject="first")], [], NOW)
            inserted.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inserted.wait(10)
        threading.Timer(0.3, release.set).start()
        # Blocks on the other transaction (unique key on PostgreSQL, write lock on SQLite), then
        # succeeds; on PostgreSQL through the retry of run().
        result = acme.run(queue.enqueue, "acme", [make_item("same", subject="second")], [], NOW)
    finally:
        release.set()
        thread.join()
    assert result.queued == 1 and result.rejected == []
    with acme.transaction(write=False) as tx:
        records, _ = store_messages.list_messages(tx, "acme", NOW)
    assert [(r["id"], r["message"]["subject"]) for r in records] == [("same", "second")]
