"""Latency: single messages at a low steady rate, API accept → arrival at the SMTP sink.

    python -m bench latency [--quick] [--backends sqlite,postgres]

A node with 2 senders and the scheduler active; the bench posts one message per
``add-messages`` request, 20 per second, 200 in all (50 with ``--quick``). The message is
accepted somewhere between the moment its request is sent and the moment its 200 answer is
read; on a loaded machine a message often reaches the sink before the client has read the
answer. So the figures (p50, p95, p99) run from the moment the request was sent to the
arrival at the sink (the sink's own timestamp of the end of DATA): an upper bound that
includes the API's own time. ``after_answer_*`` run from the answer, a lower bound. Goal:
p50 ≤ 10 ms and p99 ≤ 50 ms.
"""

from __future__ import annotations

import statistics
import time

import msgspec

from bench.harness import Check, Record, Run, counters, percentile
from bench.node import Node, database, message
from bench.sinks import open_sink
from tests.tenantservers import TenantServer

RATE = 20.0


def latency(ctx: Run, backend: str, count: int) -> Record:
    sink = open_sink(ctx)
    tenant = TenantServer()
    sent: dict[str, tuple[float, float]] = {}
    try:
        with database(ctx, backend) as url:
            node = Node(ctx, url, senders=2, active=True)
            try:
                node.setup_tenant(sink.port, tenant.base_url)
                node.post(
                    "/commands/add-messages", {"tenant_id": "shop", "messages": [message("warm")]}
                )
                sink.wait_count(1, 30)
                time.sleep(0.5)  # the warm-up's report and the senders settle
                period = 1.0 / RATE
                next_at = time.monotonic()
                for i in range(count):
                    mail_id = f"lat-{i}"
                    body = msgspec.json.encode(
                        {"tenant_id": "shop", "messages": [message(mail_id)]}
                    )
                    asked = time.time()
                    node.post("/commands/add-messages", body)
                    sent[mail_id] = (asked, time.time())
                    next_at += period
                    time.sleep(max(0.0, next_at - time.monotonic()))
                sink.wait_count(count + 1, 30)
                arrivals = sink.arrivals()
            finally:
                node.stop()
    finally:
        sink.close()
        tenant.close()
    counts = counters(set(sent) | {"warm"}, [m for m, _ in arrivals])
    counts["delivered"] -= 1
    at = dict(arrivals)
    accepted = sorted((at[m] - t[1]) * 1000 for m, t in sent.items() if m in at)
    requested = sorted((at[m] - t[0]) * 1000 for m, t in sent.items() if m in at)
    figures = {
        "backend": backend,
        "messages": count,
        "rate_per_s": RATE,
        "sink": sink.kind,
        "p50_ms": round(percentile(requested, 50), 2),
        "p95_ms": round(percentile(requested, 95), 2),
        "p99_ms": round(percentile(requested, 99), 2),
        "max_ms": round(requested[-1], 2) if requested else None,
        "mean_ms": round(statistics.fmean(requested), 2) if requested else None,
        "after_answer_p50_ms": round(percentile(accepted, 50), 2),
        "after_answer_p99_ms": round(percentile(accepted, 99), 2),
    }
    checks = [
        Check("latency p50 <= 10 ms", figures["p50_ms"], figures["p50_ms"] <= 10),
        Check("latency p99 <= 50 ms", figures["p99_ms"], figures["p99_ms"] <= 50),
        Check("lost = 0, duplicates = 0", counts["lost"] + counts["duplicates"],
              counts["lost"] == 0 and counts["duplicates"] == 0),
    ]  # fmt: skip
    return ctx.emit(Record("latency", f"{backend}, {RATE:g}/s", figures, counts, checks))


def run(ctx: Run) -> None:
    count = 50 if ctx.options.quick else 200
    for backend in ctx.options.backends:
        latency(ctx, backend, count)
