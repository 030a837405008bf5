"""Claim cost against the backlog: time to claim 100 messages with 10,000 and 1,000,000
pending rows, on SQLite and PostgreSQL (issue 2; goal: within 2x between the sizes).

    .venv/bin/python -m bench.claim [--sizes 10000,1000000] [--backends sqlite,postgres]
                                    [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]

Rows are bulk-loaded straight into the ``messages`` table (executemany on SQLite, COPY on
PostgreSQL) into a throw-away database, then ``queue.claim_batch`` is timed ``--rounds`` times
(each round claims the next 100). ``ready_accounts``, a 500-message ``enqueue`` of new ids
(minimum, median and the messages per second of the median: the store's share of the API's
ingest) and the same 500 ids enqueued again (each replaces its pending message) are timed on
the same backlog for reference. Prints one table (minimum and median per claim); the databases
are removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from mailproxyd.core.crypto import SecretBox
from mailproxyd.store import Database, accounts, meta, open_database, queue, tenants

NOW = 1_767_225_600.0
PAYLOAD = (
    '{"id":"x","from":"shop@acme.example","to":["ann@example.org"],"subject":"Hi","body":"Hello"}'
)
COLUMNS = (
    "tenant_id, id, account_id, priority, seq, status, ready_ts, message_id, payload, "
    "created_at, updated_at"
)


def _rows(n: int) -> Iterator[tuple[Any, ...]]:
    for i in range(1, n + 1):
        yield (
            "acme",
            f"m{i}",
            "main",
            i % 4,
            i,
            "pending",
            0.0,
            f"<m{i}@acme.example>",
            PAYLOAD,
            NOW,
            NOW,
        )


def _prepare(db: Database) -> None:
    with db.transaction() as tx:
        tenants.create_or_replace(tx, {"id": "acme"}, NOW)
        accounts.create_or_replace(tx, "acme", {"id": "main", "host": "h", "port": 25}, NOW)
        meta.set_scheduler_active(tx, True)


@contextmanager
def _sqlite(n: int, box: SecretBox) -> Iterator[Database]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.db")
        db = open_database(f"sqlite:{path}", box=box)
        _prepare(db)
        conn = sqlite3.connect(path)
        with conn:
            conn.executemany(
                f"INSERT INTO messages ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", _rows(n)
            )
            conn.execute("UPDATE seq_counter SET value = ?", (n,))
        conn.execute("ANALYZE")
        conn.close()
        try:
            yield db
        finally:
            db.close()


@contextmanager
def _postgres(n: int, box: SecretBox, admin_url: str) -> Iterator[Database]:
    name = f"mp_bench_claim_{secrets.token_hex(4)}"
    url = admin_url.rpartition("/")[0] + "/" + name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = open_database(url, box=box)
    try:
        _prepare(db)
        with psycopg.connect(url) as conn:
            with conn.cursor() as cur, cur.copy(f"COPY messages ({COLUMNS}) FROM STDIN") as copy:
                for row in _rows(n):
                    copy.write_row(row)
            conn.execute("SELECT setval('message_seq', %s)", (n,))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE messages")
        yield db
    finally:
        db.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _time(fn: Callable[[], Any], rounds: int) -> tuple[float, float]:
    """Minimum and median wall time of ``fn`` in milliseconds.

    The minimum is the figure to compare between sizes: on a shared machine the median also
    measures the neighbours.
    """
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return min(samples), statistics.median(samples)


def measure(db: Database, rounds: int) -> dict[str, float]:
    def claim() -> None:
        rows = db.run(queue.claim_batch, "acme", "main", "bench/sender-0", 100, NOW, 120)
        assert len(rows) == 100

    def ready() -> None:
        assert db.run(queue.ready_accounts, NOW, write=False)

    batches = iter(range(1_000_000))

    def batch(prefix: str) -> list[dict[str, Any]]:
        return [
            {
                "id": f"{prefix}-{i}",
                "account_id": "main",
                "priority": 2,
                "from": "a@b.c",
                "to": ["d@e.f"],
                "subject": "s",
                "message_id": f"<{prefix}-{i}@b.c>",
                "deferred_ts": None,
                "batch_code": None,
            }
            for i in range(500)
        ]

    def enqueue() -> None:
        # Ids never seen before: the API's common case (existing-key lookup finds nothing).
        db.run(queue.enqueue, "acme", batch(f"new{next(batches)}"), [], NOW)

    replacing = batch("again")
    db.run(queue.enqueue, "acme", replacing, [], NOW)

    def replace() -> None:
        # The same 500 pending ids again: every item replaces its stored message (§6.7).
        db.run(queue.enqueue, "acme", replacing, [], NOW)

    claim()  # warm the caches and the connection pool
    claim_min, claim_median = _time(claim, rounds)
    ready_min, _ = _time(ready, max(3, rounds // 4))
    enqueue_min, enqueue_median = _time(enqueue, 10)
    replace_min, _ = _time(replace, 5)
    return {
        "claim_min": claim_min,
        "claim_median": claim_median,
        "ready": ready_min,
        "enqueue": enqueue_min,
        "enqueue_median": enqueue_median,
        "replace": replace_min,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "MAIL_PROXY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args(argv)
    box = SecretBox(secrets.token_bytes(32))
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[tuple[str, int], dict[str, float]] = {}
    for backend in args.backends.split(","):
        for n in sizes:
            started = time.perf_counter()
            opener = _sqlite(n, box) if backend == "sqlite" else _postgres(n, box, args.pg_url)
            with opener as db:
                loaded = time.perf_counter() - started
                results[backend, n] = measure(db, args.rounds)
            print(f"# {backend}: {n:,} rows loaded in {loaded:.1f} s", flush=True)
    print()
    print(
        f"{'backend':<9} {'pending rows':>12} {'claim 100 min':>14} {'median':>10} "
        f"{'min vs smallest':>16} {'ready_accounts':>15} {'enqueue 500 new':>16} "
        f"{'median':>10} {'msg/s':>8} {'replace 500':>12}"
    )
    for (backend, n), r in results.items():
        base = results[backend, sizes[0]]["claim_min"]
        print(
            f"{backend:<9} {n:>12,} {r['claim_min']:>11.2f} ms {r['claim_median']:>7.2f} ms "
            f"{r['claim_min'] / base:>15.2f}x {r['ready']:>12.2f} ms {r['enqueue']:>13.2f} ms "
            f"{r['enqueue_median']:>7.2f} ms {500_000 / r['enqueue_median']:>8,.0f} "
            f"{r['replace']:>9.2f} ms"
        )
    print("(times in ms; minimum over the rounds, median for reference)")


if __name__ == "__main__":
    main()
