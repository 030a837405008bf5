"""Ingest: ``POST /commands/add-messages`` on the real daemon, in batches of 100 and 500.

    python -m bench ingest [--quick] [--count N] [--backends sqlite,postgres]

A node runs with the scheduler inactive (nothing is sent, so the senders do not compete); the
bench posts pre-encoded batches one after the other on one keep-alive connection, as a client
would, and counts the messages per second until the last answer. Afterwards ``/stats`` must
show every message pending: delivered here means stored. Goal: at least 15,000 msg/s and at
least 0.2x the direct ``executemany`` baseline of the same batch size (SQLite).
"""

from __future__ import annotations

import time

import msgspec

from bench import baselines
from bench.harness import Check, Record, Run
from bench.node import Node, cpu_delta, database, message

BATCHES = (100, 500)


def ingest(ctx: Run, backend: str, count: int, batch: int) -> Record:
    with database(ctx, backend) as url:
        node = Node(ctx, url, senders=1, active=False)
        try:
            node.setup_tenant(9, None)  # port 9: nothing is sent while inactive
            bodies = [
                msgspec.json.encode(
                    {
                        "tenant_id": "shop",
                        "messages": [
                            message(f"in-{i}") for i in range(start, min(count, start + batch))
                        ],
                    }
                )
                for start in range(0, count, batch)
            ]
            node.post("/commands/add-messages", {"tenant_id": "shop", "messages": [message("w")]})
            before = node.cpu()
            queued = 0
            started = time.perf_counter()
            for body in bodies:
                queued += node.post("/commands/add-messages", body)["queued"]
            elapsed = time.perf_counter() - started
            cpu = cpu_delta(before, node.cpu())
            stats = node.http.get("/stats", params={"tenant_id": "shop"}).json()
            stored = int(stats["messages"]["pending"]) - 1  # less the warm-up message
        finally:
            node.stop()
    rate = count / elapsed
    figures = {
        "backend": backend,
        "messages": count,
        "batch": batch,
        "rate_msg_s": round(rate),
        "queued": queued,
        "cpu_ms_per_msg": round(sum(cpu.values()) * 1000 / count, 3),
        "cpu_ms_per_msg_api": round(cpu.get("api", 0.0) * 1000 / count, 3),
    }
    checks = [Check("ingest >= 15000 msg/s", round(rate), rate >= 15_000)]
    if backend == "sqlite":
        direct = baselines.measure(ctx, f"sqlite_insert_{batch}")
        figures["direct_msg_s"] = round(direct)
        figures["ratio_direct"] = round(rate / direct, 3)
        checks.append(Check("ingest >= 0.2x direct inserts", round(rate / direct, 3),
                            rate / direct >= 0.2))  # fmt: skip
    counts = {"delivered": stored, "duplicates": max(0, stored - count), "lost": count - stored}
    return ctx.emit(Record("ingest", f"{backend}, batch {batch}", figures, counts, checks))


def run(ctx: Run) -> None:
    count = ctx.options.n(20_000, 2_000)
    for backend in ctx.options.backends:
        for batch in BATCHES:
            ingest(ctx, backend, count, batch)
