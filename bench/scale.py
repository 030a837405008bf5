"""Scale: claim cost and the memory of every process with 10,000 and 1,000,000 pending messages.

    python -m bench scale [--quick] [--backends sqlite,postgres]

For each backend and backlog size a fresh database gets one message queued through the
enqueue service (so its stored payload is exactly what ``add-messages`` stores), then the
backlog as copies of it, bulk-loaded straight into ``messages`` (``executemany`` on SQLite,
``COPY`` on PostgreSQL). Then:

* **claim**: ``queue.claim_batch`` of 100 messages, timed 30 times in this process (minimum
  and median; the minimum is the figure to compare between sizes on a shared machine);
* **RSS**: a node with 2 senders runs on that backlog, sending to the sink, for a few seconds;
  the resident memory of every process is sampled every 0.25 s and the maximum kept. Goal:
  each process within 10 % of its RSS with the small backlog.

Delivered and duplicates come from the sink; lost is the number of messages the database
shows as sent that never reached the sink.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from bench.harness import PG_ADMIN_URL, Check, Record, Run, counters
from bench.node import Node, message
from bench.sinks import open_sink

COLUMNS = (
    "tenant_id, id, account_id, priority, seq, status, ready_ts, message_id, payload, "
    "created_at, updated_at"
)


class _NullLink:
    """The enqueue service's way to the supervisor (``services.context.Link``): no node runs
    while the template message is queued, so there is nobody to wake."""

    async def wake(self, target: str, reason: str, tenant_id: str | None = None) -> None:
        return None

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        raise RuntimeError(f"no supervisor to run {method!r}")

    async def cycle_done(self) -> None:
        return None


@dataclasses.dataclass
class _EnqueueCtx:
    settings: Any
    db: Any
    link: Any = dataclasses.field(default_factory=_NullLink)

    def now(self) -> float:
        return time.time()


def _template(url: str, db: Any, sink_port: int) -> dict[str, Any]:
    """Tenant, account and one message queued by the product's enqueue service."""
    import trio

    from mailproxyd.services.enqueue import add_messages
    from mailproxyd.settings import load_settings
    from mailproxyd.store import AsyncDatabase, accounts, meta, tenants

    now = time.time()
    with db.transaction() as tx:
        tenants.create_or_replace(tx, {"id": "shop"}, now)
        accounts.create_or_replace(
            tx, "shop",
            {"id": "smtp0", "host": "127.0.0.1", "port": sink_port, "tls_mode": "none",
             "max_concurrent": 8},
            now,
        )  # fmt: skip
        meta.set_scheduler_active(tx, True)
    settings = load_settings("serve", environ={"GMP_DB_PATH": url})
    ctx = _EnqueueCtx(settings, AsyncDatabase(db))
    body = {"tenant_id": "shop", "messages": [message("template")]}
    outcome = trio.run(lambda: add_messages(ctx, body, caller_tenant=None, envelope_tenant=None))
    if outcome.queued != 1:
        raise RuntimeError(f"the template message was refused: {outcome.rejected}")
    row = db.run(lambda tx: tx.raw("SELECT * FROM messages WHERE id = 'template'")[0])
    return dict(row)


def _rows(template: dict[str, Any], n: int) -> Iterator[tuple[Any, ...]]:
    payload = msgspec.json.decode(template["payload"])
    now = time.time()
    for i in range(1, n + 1):
        mail_id = f"s{i}"
        payload["id"] = mail_id
        payload["message_id"] = f"<{mail_id}.{secrets.token_hex(4)}@acme.example>"
        yield (
            "shop", mail_id, "smtp0", template["priority"], template["seq"] + i, "pending", 0.0,
            payload["message_id"], msgspec.json.encode(payload).decode(), now, now,
        )  # fmt: skip


@contextlib.contextmanager
def backlog(ctx: Run, backend: str, n: int, sink_port: int) -> Iterator[tuple[str, Any]]:
    """A database holding ``n`` pending messages (plus the template), and the store on it."""
    import psycopg

    from mailproxyd.core.crypto import SecretBox
    from mailproxyd.store import open_database

    box = SecretBox(ctx.key)
    if backend == "sqlite":
        import sqlite3

        path = ctx.scratch("scale") / "mail.db"
        url = f"sqlite:{path}"
        db = open_database(url, box=box)
        try:
            template = _template(str(path), db, sink_port)
            conn = sqlite3.connect(path)
            with conn:
                conn.executemany(
                    f"INSERT INTO messages ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    _rows(template, n),
                )
                conn.execute("UPDATE seq_counter SET value = ?", (template["seq"] + n,))
            conn.execute("ANALYZE")
            conn.close()
            yield url, db
        finally:
            db.close()
        return
    name = f"mp_bench_scale_{secrets.token_hex(4)}"
    url = PG_ADMIN_URL.rpartition("/")[0] + "/" + name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        db = open_database(url, box=box)
        try:
            template = _template(url, db, sink_port)
            with psycopg.connect(url) as conn:
                with conn.cursor() as cur, cur.copy(f"COPY messages ({COLUMNS}) FROM STDIN") as cp:
                    for row in _rows(template, n):
                        cp.write_row(row)
                conn.execute("SELECT setval('message_seq', %s)", (template["seq"] + n,))
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE messages")
            yield url, db
        finally:
            db.close()
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _time(fn: Callable[[], Any], rounds: int) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return min(samples), statistics.median(samples)


def claim_cost(db: Any, rounds: int) -> dict[str, float]:
    from mailproxyd.store import queue

    now = time.time()

    def claim() -> None:
        rows = db.run(queue.claim_batch, "shop", "smtp0", "bench/claim-0", 100, now, 120)
        assert len(rows) == 100

    def ready() -> None:
        assert db.run(queue.ready_accounts, now, write=False)

    claim()  # warm the caches
    claim_min, claim_median = _time(claim, rounds)
    ready_min, _ = _time(ready, max(3, rounds // 4))
    # Give the claimed rows back, so that the node may send them.
    db.run(lambda tx: tx.raw("UPDATE messages SET status = 'pending', lease_owner = NULL, "
                             "lease_until = NULL WHERE status = 'sending'"))  # fmt: skip
    return {"claim_ms": claim_min, "claim_median_ms": claim_median, "ready_accounts_ms": ready_min}


def scale(ctx: Run, backend: str, n: int, window: float) -> Record:
    sink = open_sink(ctx)
    try:
        started = time.perf_counter()
        with backlog(ctx, backend, n, sink.port) as (url, db):
            loaded = time.perf_counter() - started
            figures: dict[str, Any] = {"backend": backend, "pending": n, "load_s": round(loaded, 1)}
            figures.update({k: round(v, 3) for k, v in claim_cost(db, 30).items()})
            node = Node(ctx, url, senders=2, active=True)
            try:
                peak: dict[str, int] = {}
                began = time.time()
                deadline = time.monotonic() + window
                while time.monotonic() < deadline:
                    for label, kb in node.rss().items():
                        peak[label] = max(peak.get(label, 0), kb)
                    time.sleep(0.25)
                stats = node.http.get("/stats", params={"tenant_id": "shop"}).json()
            finally:
                node.stop()
            arrivals = sink.arrivals()
            sent_in_db = int(db.run(lambda tx: tx.raw(
                "SELECT count(*) AS n FROM messages WHERE status = 'sent'")[0]["n"]))  # fmt: skip
    finally:
        sink.close()
    ids = [m for m, _ in arrivals]
    counts = counters(set(ids), ids)
    counts["lost"] = max(0, sent_in_db - counts["delivered"])
    figures["rss_by_process_kb"] = dict(sorted(peak.items()))
    figures["rss_max_kb"] = max(peak.values(), default=0)
    figures["sent_during_window"] = len(set(ids))
    figures["rate_during_window_msg_s"] = round(len(set(ids)) / max(0.001, time.time() - began))
    figures["pending_after"] = stats["messages"]["pending"]
    return ctx.emit(Record("scale", f"{backend}, {n:,} pending", figures, counts))


def run(ctx: Run) -> None:
    sizes = (10_000, 50_000) if ctx.options.quick else (10_000, 1_000_000)
    window = 3.0 if ctx.options.quick else 6.0
    for backend in ctx.options.backends:
        small, large = (scale(ctx, backend, n, window) for n in sizes)
        checks = []
        figures: dict[str, Any] = {"backend": backend}
        for label, big in large.figures["rss_by_process_kb"].items():
            base = small.figures["rss_by_process_kb"].get(label)
            if not base:
                continue
            ratio = big / base
            figures[f"rss_ratio_{label}"] = round(ratio, 3)
            checks.append(Check(f"RSS {label} {sizes[1]:,} within 10% of {sizes[0]:,}",
                                round(ratio, 3), ratio <= 1.10))  # fmt: skip
        figures["claim_ratio"] = round(large.figures["claim_ms"] / small.figures["claim_ms"], 2)
        dup_lost = sum(
            r.counters["lost"] + r.counters["duplicates"] for r in (small, large) if r.counters
        )
        checks.append(Check("lost = 0, duplicates = 0", dup_lost, dup_lost == 0))
        ctx.emit(Record("scale", f"{backend}, {sizes[1]:,} vs {sizes[0]:,}", figures, None, checks))
