"""Drain: a queue of 20,000 messages sent by the real daemon with 1, 2 and 4 sender processes.

    python -m bench drain [--quick] [--count N] [--senders 1,2,4] [--backends sqlite,postgres]
                          [--profile]

For each backend and sender count: a fresh database, a node (``mail-proxy serve``) started with
the scheduler inactive, a tenant whose ``client_base_url`` is a real HTTP server on 127.0.0.1,
one account on the sink. The messages are queued through ``add-messages`` (batches of 1,000),
then ``POST /commands/activate`` starts the clock. Figures:

* ``rate_msg_s``: messages / (last arrival at the sink - activation);
* ``report_lag_s``: from the last arrival to the tenant's acknowledgement of the last ``sent``
  report (the POST that carried it was answered ``{"ok": true}``);
* ``cpu_ms_per_msg``: CPU time (user + system, ``/proc/<pid>/stat``) of every process of the node
  from activation to the last acknowledgement, divided by the messages; ``cpu_by_process`` splits
  it by process. On PostgreSQL the server's backends for the node's database are included
  (``postgres``). The sink, the tenant server and the bench itself are not counted;
* delivered / duplicates / lost from the ``X-Genro-Mail-ID`` of every message at the sink.

Ratios are against the same run's baselines (``bench.baselines``). ``--profile`` adds one more
2-sender drain on the first backend, sampled by py-spy (``bench.profile``), and writes
``profile-drain.txt`` (top functions per process kind) next to the results; its figures are
reported as ``drain-profiled`` since the sampling costs the node CPU.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from bench import baselines, profile
from bench.harness import Check, Record, Run, counters
from bench.node import Node, cpu_delta, cpu_seconds, database, message
from bench.sinks import open_sink
from tests.tenantservers import TenantServer

BATCH = 1000


def _pg_counters(url: str) -> dict[str, int]:
    """Transactions and rows of the node's PostgreSQL database so far (pg_stat_database)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted"
            " FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return dict(zip(("commits", "rollbacks", "inserted", "updated", "deleted"), row, strict=True))


def _pg_backends(url: str) -> dict[int, float]:
    """CPU seconds so far of every PostgreSQL backend serving the node's database."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
        ]
    return {pid: cpu_seconds(pid) for pid in pids}


class ReportWatch:
    """Which ``sent`` reports the tenant server has acknowledged, and when."""

    def __init__(self, server: TenantServer) -> None:
        self.server = server
        self.sent: dict[str, float] = {}
        self.items = 0
        self.posts = 0
        self._seen = 0

    def poll(self) -> int:
        calls = self.server.calls
        for call in calls[self._seen :]:
            self.posts += call.items is not None and bool(call.items)
            for item in call.items or []:
                self.items += 1
                if item.get("event") == "sent":
                    self.sent.setdefault(item["id"], call.time)
        self._seen = len(calls)
        return len(self.sent)


@contextlib.contextmanager
def _py_spy(ctx: Run, pids: dict[int, str], wanted: bool) -> Iterator[Path | None]:
    if not wanted:
        yield None
        return
    out = ctx.options.out / "profile-drain"
    out.parent.mkdir(parents=True, exist_ok=True)
    procs = profile.start(pids, out)
    try:
        yield out
    finally:
        profile.stop(procs)


def drain(ctx: Run, backend: str, senders: int, count: int, profiled: bool = False) -> Record:
    sink = open_sink(ctx)
    tenant = TenantServer()
    try:
        with database(ctx, backend) as url:
            node = Node(ctx, url, senders=senders, active=False)
            try:
                node.setup_tenant(sink.port, tenant.base_url)
                ids = [f"d{senders}-{i}" for i in range(count)]
                for start in range(0, count, BATCH):
                    body = {
                        "tenant_id": "shop",
                        "messages": [message(m) for m in ids[start : start + BATCH]],
                    }
                    node.post("/commands/add-messages", msgspec.json.encode(body))
                watch = ReportWatch(tenant)
                pids = node.processes()
                pg_before = _pg_counters(url) if backend == "postgres" else None
                with _py_spy(ctx, pids, profiled) as raw:
                    db_before = _pg_backends(url) if backend == "postgres" else {}
                    before = node.cpu()
                    activated = time.time()
                    node.post("/commands/activate", {})
                    timeout = 120 + count / 20
                    if not sink.wait_count(count, timeout):
                        ctx.note(
                            f"drain {backend}/{senders}: {sink.count()} of {count} after {timeout:.0f} s"
                        )
                    deadline = time.monotonic() + 60
                    while watch.poll() < count and time.monotonic() < deadline:
                        time.sleep(0.01)
                    after = node.cpu()
                    if backend == "postgres":
                        # Backends of the node's connections (a local server): their CPU is
                        # part of the cost of a message; those started meanwhile count whole.
                        db_after = _pg_backends(url)
                        after["postgres"] = sum(db_after.values())
                        before["postgres"] = sum(db_before.get(pid, 0.0) for pid in db_after)
                arrivals = sink.arrivals()
            finally:
                node.stop()
            # Read after the node's backends exited: they flush their statistics on exit.
            pg_after = _pg_counters(url) if pg_before is not None else None
    finally:
        sink.close()
        tenant.close()
    counts = counters(set(ids), [m for m, _ in arrivals])
    last = max((t for m, t in arrivals), default=activated)
    elapsed = last - activated
    rate = counts["delivered"] / elapsed if elapsed > 0 else 0.0
    acked = watch.sent
    report_lag = (max(acked.values()) - last) if len(acked) >= count else None
    cpu = cpu_delta(before, after)
    per_kind: dict[str, float] = {}
    for label, seconds in cpu.items():
        kind = "sender" if label.startswith("sender") else label
        per_kind[kind] = per_kind.get(kind, 0.0) + seconds
    delivered = max(1, counts["delivered"])
    cpu_ms = sum(cpu.values()) * 1000 / delivered
    plain = baselines.measure(ctx, "plain_loop")
    raw_rate = baselines.measure(ctx, "raw")
    prebuilt = baselines.measure(ctx, "prebuilt_smtplib")
    figures = {
        "backend": backend,
        "senders": senders,
        "messages": count,
        "sink": sink.kind,
        "rate_msg_s": round(rate),
        "seconds_to_sink": round(elapsed, 3),
        "report_lag_s": None if report_lag is None else round(report_lag, 3),
        "reports_acknowledged": len(acked),
        "report_items": watch.items,
        "report_posts": watch.posts,
        "cpu_ms_per_msg": round(cpu_ms, 3),
        "cpu_by_process": {k: round(v * 1000 / delivered, 3) for k, v in sorted(per_kind.items())},
        "processes": len(pids),
        "ratio_plain_loop": round(rate / plain, 2),
        "ratio_prebuilt_smtplib": round(rate / prebuilt, 2),
        "ratio_raw": round(rate / raw_rate, 3),
    }
    checks = []
    if senders == 2 and backend == "sqlite":
        checks += [
            Check("drain sqlite/2 >= 3000 msg/s", round(rate), rate >= 3000),
            Check("drain sqlite/2 >= 1.5x plain loop", round(rate / plain, 2), rate >= 1.5 * plain),
        ]
    if senders == 2 and backend == "postgres":
        checks.append(Check("drain postgres/2 >= 2000 msg/s", round(rate), rate >= 2000))
    if senders == 2:
        checks.append(Check("CPU per message <= 0.5 ms", round(cpu_ms, 3), cpu_ms <= 0.5))
    checks += [
        Check("report lag <= 1 s", -1 if report_lag is None else round(report_lag, 3),
              report_lag is not None and report_lag <= 1.0),
        Check("lost = 0, duplicates = 0", counts["lost"] + counts["duplicates"],
              counts["lost"] == 0 and counts["duplicates"] == 0),
    ]  # fmt: skip
    if pg_before is not None and pg_after is not None:
        # Includes the bench's own two connections (a handful of transactions) and autovacuum.
        figures["pg_per_msg"] = {
            k: round((pg_after[k] - pg_before[k]) / delivered, 2) for k in pg_after
        }
    case = f"{backend}, {senders} senders"
    if profiled:  # py-spy costs the node CPU: its figures are not the drain's
        record = ctx.emit(Record("drain-profiled", case, figures, counts))
    else:
        record = ctx.emit(Record("drain", case, figures, counts, checks))
    if raw is not None:
        summary = profile.summarise(raw, pids, delivered)
        path = ctx.options.out / "profile-drain.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(summary, encoding="utf-8")
        print(summary, file=sys.stderr)
        ctx.note(f"profile of the drain ({backend}, {senders} senders): {path}")
    return record


def run(ctx: Run) -> None:
    count = ctx.options.n(20_000, 2_000)
    for backend in ctx.options.backends:
        for senders in ctx.options.senders:
            drain(ctx, backend, senders, count)
    if ctx.options.profile:
        drain(ctx, ctx.options.backends[0], 2, count, profiled=True)
