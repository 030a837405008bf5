"""The Committer writes the ``sent`` completions of one group set-based, fenced per row."""

from __future__ import annotations

import trio

from mailproxyd.services.dispatch.record import Committer, Completion, write_completion
from mailproxyd.store import AsyncDatabase, Database, accounts, leases, meta, queue, tenants
from mailproxyd.store import messages as store_messages

NOW = 1_767_225_600.0
OWNER = "node-1/sender-0"
OTHER = "node-2/sender-0"


def _setup(db: Database, keys: list[str]) -> list[dict]:
    with db.transaction() as tx:
        tenants.create_or_replace(tx, {"id": "acme"}, NOW)
        accounts.create_or_replace(
            tx, "acme", {"id": "main", "host": "smtp.example.com", "port": 587}, NOW
        )
        meta.set_scheduler_active(tx, True)
        items = [
            {
                "id": key,
                "account_id": "main",
                "from": "shop@acme.example",
                "to": ["ann@example.org"],
                "subject": "Hello",
                "body": "Hi",
                "priority": 2,
                "message_id": f"<{key}@acme.example>",
                "deferred_ts": None,
                "batch_code": None,
            }
            for key in keys
        ]
        queue.enqueue(tx, "acme", items, [], NOW)
    with db.transaction() as tx:
        return queue.claim_batch(tx, "acme", "main", OWNER, 100, NOW, 120)


async def test_concurrent_sent_completions_share_a_transaction(database: Database) -> None:
    rows = {row["id"]: row for row in _setup(database, ["a", "b", "c", "lost", "later"])}
    with database.transaction() as tx:
        leases.renew_leases(tx, OWNER, [rows[k]["pk"] for k in ("a", "b", "c", "later")], NOW + 500)
    with database.transaction() as tx:
        (taken,) = queue.claim_batch(tx, "acme", "main", OTHER, 100, NOW + 121, 120)
    assert taken["id"] == "lost"

    adb = AsyncDatabase(database)
    committer = Committer(adb, lanes=1)
    written: list[int] = []
    run = adb.run

    async def counting_run(fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        written.append(len(args[0]) if args else 0)
        return await run(fn, *args, **kwargs)

    adb.run = counting_run  # type: ignore[method-assign]
    results: dict[str, bool] = {}

    async def record(key: str, kind: str = "sent") -> None:
        item = Completion(rows[key], kind, NOW + 130, text="x" if kind == "error" else None)  # type: ignore[arg-type]
        recorded = await committer.call(write_completion, item=item, owner=OWNER)
        results[key] = recorded is item  # recorded as it was (None: the lease was lost)

    async with trio.open_nursery() as nursery:
        # The first call is written alone at once; the rest queue up behind it and share the
        # next transaction (one error among them, written one by one as before).
        for key in ("a", "b", "lost", "c"):
            nursery.start_soon(record, key)
        nursery.start_soon(record, "later", "error")
    assert results == {"a": True, "b": True, "lost": False, "c": True, "later": True}
    assert sum(written) == 5 and max(written) >= 3  # grouped: several completions per write
    with database.transaction(write=False) as tx:
        status = {
            key: store_messages.get_message(tx, "acme", key, NOW + 200)["status"]  # type: ignore[index]
            for key in rows
        }
    assert status == {"a": "sent", "b": "sent", "c": "sent", "lost": "sending", "later": "error"}


def _read_status(tx, *, keys: list[str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {key: store_messages.get_message(tx, "acme", key, NOW + 20)["status"] for key in keys}


async def test_completions_linger_for_the_next_locking_call_and_share_its_commit(
    database: Database,
) -> None:
    keys = ["a", "b", "c"]
    rows = {row["id"]: row for row in _setup(database, keys)}
    adb = AsyncDatabase(database)
    committer = Committer(adb, lanes=1, linger=30.0)
    written: list[int] = []
    run = adb.run

    async def counting_run(fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        written.append(len(args[0]) if args else 0)
        return await run(fn, *args, **kwargs)

    adb.run = counting_run  # type: ignore[method-assign]

    async def record(key: str) -> None:
        item = Completion(rows[key], "sent", NOW + 10)
        assert await committer.call(write_completion, item=item, owner=OWNER) is item

    with trio.fail_after(10):  # far below the linger: the locking call ends the wait
        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(record, key)
            await trio.sleep(0.05)
            assert written == []  # the completions wait for company
            await committer.call(_read_status, locking=True, keys=keys)
    assert written == [4]  # one transaction: the three completions and the locking call
    with database.transaction(write=False) as tx:
        assert _read_status(tx, keys=keys) == {"a": "sent", "b": "sent", "c": "sent"}


async def test_lingering_completions_are_written_after_the_linger(database: Database) -> None:
    rows = {row["id"]: row for row in _setup(database, ["a"])}
    committer = Committer(AsyncDatabase(database), lanes=1, linger=0.2)
    item = Completion(rows["a"], "sent", NOW + 10)
    started = trio.current_time()
    with trio.fail_after(10):
        assert await committer.call(write_completion, item=item, owner=OWNER) is item
    assert trio.current_time() - started >= 0.2
    with database.transaction(write=False) as tx:
        assert _read_status(tx, keys=["a"]) == {"a": "sent"}
