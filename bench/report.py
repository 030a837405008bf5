"""Delivery-report throughput and lag (issue 6), on SQLite and PostgreSQL.

    .venv/bin/python -m bench.report [--events 10000] [--rate 2000] [--seconds 5]
                                     [--backends sqlite,postgres]
                                     [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]

1. **Backlog**: ``--events`` unreported ``sent`` events of one tenant are loaded into a fresh
   database, then one ``run_report_cycle`` pushes them to a local tenant server (a real HTTP
   server on 127.0.0.1) in POSTs of ``GMP_SYNC_BATCH_SIZE`` (1000). Figure: events reported and
   acknowledged per second. Baseline: the same request bodies POSTed by the same HTTP client
   with no database and no encoding — the cost of the HTTP exchange alone.
2. **Lag**: with ``reporter_loop`` running (woken like the worker wakes it), events are recorded
   at ``--rate`` per second for ``--seconds``; figure: the time from the last event recorded to
   its acknowledgement, and the worst per-batch delay (goal: under 1 s at 2,000/s).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import trio

from bench.harness import PG_ADMIN_URL, Check, Record, Run
from mailproxyd.core import report as core_report
from mailproxyd.core.crypto import SecretBox
from mailproxyd.drivers.http import ReportClient
from mailproxyd.services.context import Doorbell, Reporting, ServiceContext
from mailproxyd.services.report import reporter_loop, run_report_cycle
from mailproxyd.settings import Settings, load_settings
from mailproxyd.store import AsyncDatabase, Database, events, open_database, tenants
from mailproxyd.store._codec import dumps
from tests.tenantservers import TenantServer

TENANT = "acme"
PAYLOAD = '{"id":"x","from":"shop@acme.example","to":["ann@example.org"],"subject":"Hi"}'


def _context(adb: AsyncDatabase, settings: Settings, client: ReportClient) -> ServiceContext:
    return ServiceContext(
        settings=settings,
        db=adb,
        link=None,  # type: ignore[arg-type]  # the report cycle never calls the supervisor
        log=logging.getLogger("bench.report"),
        kind="reporter",
        owner="bench/reporter",
        reporting=Reporting(client=client),
    )


def _load_sent(tx: Any, first: int, n: int, now: float) -> None:
    """``n`` sent messages with one unreported ``sent`` event each, in bulk."""
    ids = [f"m{i}" for i in range(first, first + n)]
    tx.many(
        "message_insert",
        [
            {"tenant_id": TENANT, "id": mid, "account_id": "smtp1", "priority": 2,
             "seq": first + k, "status": "sent", "ready_ts": None, "deferred_ts": None,
             "deferred_reason": None, "batch_code": None, "message_id": f"<{mid}@b>",
             "payload": PAYLOAD, "error": None, "error_ts": None, "now": now}
            for k, mid in enumerate(ids)
        ],
    )  # fmt: skip
    rows = tx.all("messages_existing", {"tenant_id": TENANT, "ids": dumps(ids)})
    pks = {row["id"]: row["pk"] for row in rows}
    tx.many(
        "event_insert",
        [
            {"message_pk": pks[mid], "tenant_id": TENANT, "id": mid, "account_id": "smtp1",
             "priority": 2, "batch_code": None, "event_type": "sent", "event_ts": now,
             "description": None, "metadata": "{}", "reported_ts": None}
            for mid in ids
        ],
    )  # fmt: skip


@contextmanager
def _database(backend: str, pg_url: str, box: SecretBox) -> Iterator[Database]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            db = open_database(f"sqlite:{os.path.join(tmp, 'bench.db')}", box=box)
            try:
                yield db
            finally:
                db.close()
        return
    name = f"mp_bench_report_{secrets.token_hex(4)}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        db = open_database(pg_url.rpartition("/")[0] + "/" + name, box=box)
        try:
            yield db
        finally:
            db.close()
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _settings() -> Settings:
    with tempfile.TemporaryDirectory() as tmp:
        base = load_settings("serve", environ={"GMP_DB_PATH": os.path.join(tmp, "x.db")})
    return dataclasses.replace(base, log_delivery_activity=False)


async def _backlog(db: Database, server: TenantServer, n: int) -> dict[str, float]:
    db.run(
        lambda tx: tenants.create_or_replace(
            tx, {"id": TENANT, "client_base_url": server.base_url}, time.time()
        )
    )
    db.run(_load_sent, 1, n, time.time())
    settings = _settings()
    async with ReportClient() as client:
        ctx = _context(AsyncDatabase(db), settings, client)
        started = time.perf_counter()
        stats = await run_report_cycle(ctx, retention=False)
        elapsed = time.perf_counter() - started
        assert stats.items_acknowledged == n, stats
        # Baseline: the same bodies, straight to the server.
        bodies = [call.body for call in server.calls if call.items]
        headers = core_report.request_headers(None, b"", now=time.time())
        started = time.perf_counter()
        for body in bodies:
            answer = await client.post_report(server.sync_url, body, headers, 10)
            assert answer.reply.acknowledged
        baseline = time.perf_counter() - started
    return {"rate": n / elapsed, "seconds": elapsed, "posts": stats.calls, "baseline": n / baseline}


async def _lag(db: Database, server: TenantServer, rate: int, seconds: float) -> dict[str, float]:
    db.run(
        lambda tx: tenants.create_or_replace(
            tx, {"id": TENANT, "client_base_url": server.base_url}, time.time()
        )
    )
    settings = _settings()
    chunk = max(1, rate // 20)  # a batch every 50 ms, like busy senders recording outcomes
    total = int(rate * seconds)
    recorded_at: dict[str, float] = {}
    adb = AsyncDatabase(db)
    wake = Doorbell()
    async with ReportClient() as client, trio.open_nursery() as nursery:
        ctx = _context(adb, settings, client)
        await nursery.start(reporter_loop, ctx, wake)
        started = time.perf_counter()
        first = 1
        while first <= total:
            n = min(chunk, total - first + 1)
            await adb.run(_load_sent, first, n, time.time())
            recorded_at[f"m{first + n - 1}"] = time.time()
            wake.ring()
            first += n
            await trio.sleep_until(
                trio.current_time() + max(0.0, started + first / rate - time.perf_counter())
            )
        last = f"m{total}"
        deadline = time.monotonic() + 30
        while await adb.run(events.unreported_count, TENANT, write=False):
            if time.monotonic() > deadline:
                raise RuntimeError("reports did not catch up within 30 s")
            await trio.sleep(0.005)
        done = time.time()
        nursery.cancel_scope.cancel()
    # The worst delay: for each batch's last event, from its recording to the POST carrying it.
    arrival = {item["id"]: call.time for call in server.calls for item in call.items or []}
    worst = max(arrival[i] - t for i, t in recorded_at.items())
    return {"last_lag": done - recorded_at[last], "worst": worst, "events": total}


def measure(backend: str, pg_url: str, box: SecretBox, events_n: int, rate: int,
            seconds: float) -> tuple[dict[str, float], dict[str, float]]:  # fmt: skip
    """The backlog and lag figures of one backend."""
    server = TenantServer()
    try:
        with _database(backend, pg_url, box) as db:
            backlog = trio.run(_backlog, db, server, events_n)
        server2 = TenantServer()
        try:
            with _database(backend, pg_url, box) as db:
                lag = trio.run(_lag, db, server2, rate, seconds)
        finally:
            server2.close()
    finally:
        server.close()
    return backlog, lag


def run(ctx: Run) -> None:
    """One record per backend (in this process: the report cycle alone, without a node)."""
    events_n = 2_000 if ctx.options.quick else 10_000
    seconds = 2.0 if ctx.options.quick else 5.0
    for backend in ctx.options.backends:
        backlog, lag = measure(backend, PG_ADMIN_URL, SecretBox(ctx.key), events_n, 2_000, seconds)
        figures = {
            "backend": backend,
            "events": events_n,
            "backlog_events_s": round(backlog["rate"]),
            "http_only_events_s": round(backlog["baseline"]),
            "posts": backlog["posts"],
            "ratio_http_only": round(backlog["rate"] / backlog["baseline"], 3),
            "lag_last_s": round(lag["last_lag"], 3),
            "lag_worst_s": round(lag["worst"], 3),
        }
        checks = [Check("report lag at 2000 events/s <= 1 s", figures["lag_worst_s"],
                        lag["worst"] <= 1.0)]  # fmt: skip
        ctx.emit(Record("report", f"{backend}, report cycle", figures, None, checks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    box = SecretBox(secrets.token_bytes(32))
    print(f"{'backend':<10} {'backlog ev/s':>13} {'HTTP-only ev/s':>15} {'POSTs':>6} "
          f"{'lag last (s)':>13} {'lag worst (s)':>14}")  # fmt: skip
    for backend in args.backends.split(","):
        backlog, lag = measure(backend, args.pg_url, box, args.events, args.rate, args.seconds)
        print(f"{backend:<10} {backlog['rate']:>13,.0f} {backlog['baseline']:>15,.0f} "
              f"{backlog['posts']:>6.0f} {lag['last_lag']:>13.3f} {lag['worst']:>14.3f}")  # fmt: skip
    print(f"({args.events:,} pending events; lag at {args.rate:,} events/s for {args.seconds:g} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
