"""Ingest: ``POST /commands/add-messages`` on the real daemon, in batches of 100 and 500.

    python -m bench ingest [--quick] [--count N] [--backends sqlite,postgres]

A node runs with the scheduler inactive (nothing is sent, so the senders do not compete); the
bench posts pre-encoded batches on keep-alive connections, as clients would: one client posting
one batch after the other, and ``CLIENTS`` clients posting at the same time (where the API's
group commit lets several requests share one commit). It counts the messages per second until
the last answer; a 503 (over capacity) is retried after its ``Retry-After`` and counted.
Afterwards ``/stats`` must show every message pending: delivered here means stored. Goal: at
least 15,000 msg/s and at least 0.2x the direct ``executemany`` baseline of the same batch size
(SQLite).
"""

from __future__ import annotations

import threading
import time

import httpx
import msgspec

from bench import baselines
from bench.harness import Check, Record, Run
from bench.node import Node, cpu_delta, database, message

BATCHES = (100, 500)
CLIENTS = (1, 8)


def _post_all(node: Node, bodies: list[bytes], clients: int) -> tuple[int, int]:
    """Post every body, ``clients`` connections at a time; the messages queued and the 503s."""
    if clients == 1:
        return sum(node.post("/commands/add-messages", body)["queued"] for body in bodies), 0
    queued, refused, errors = [0], [0], []
    lock = threading.Lock()
    work = list(reversed(bodies))

    def client() -> None:
        with httpx.Client(base_url=str(node.http.base_url), headers=node.http.headers,
                          timeout=60) as http:  # fmt: skip
            while True:
                with lock:
                    if not work:
                        return
                    body = work.pop()
                while True:
                    r = http.post("/commands/add-messages", content=body,
                                  headers={"Content-Type": "application/json"})  # fmt: skip
                    if r.status_code != 503:
                        break
                    with lock:
                        refused[0] += 1
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                with lock:
                    if r.status_code == 200:
                        queued[0] += int(r.json()["queued"])
                    else:
                        errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"POST /commands/add-messages: {errors[0]}")
    return queued[0], refused[0]


def ingest(ctx: Run, backend: str, count: int, batch: int, clients: int = 1) -> Record:
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
            started = time.perf_counter()
            queued, refused = _post_all(node, bodies, clients)
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
        "clients": clients,
        "rate_msg_s": round(rate),
        "queued": queued,
        "refused_503": refused,
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
    case = f"{backend}, batch {batch}" + (f", {clients} clients" if clients > 1 else "")
    return ctx.emit(Record("ingest", case, figures, counts, checks))


def run(ctx: Run) -> None:
    count = ctx.options.n(20_000, 2_000)
    for backend in ctx.options.backends:
        for clients in CLIENTS:
            for batch in BATCHES:
                ingest(ctx, backend, count, batch, clients)
