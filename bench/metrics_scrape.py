"""Scrape cost: ``GET /metrics`` of a real node with 1,000,000 queued messages on PostgreSQL
(issue 18; goal: median and p95 under 100 ms, cold and warm).

    .venv/bin/python -m bench.metrics_scrape [--count 1000000] [--rounds 20] [--warm 3]
                                             [--baseline TREE]
                                             [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]

A throw-away database gets 10 tenants of 10 accounts each and ``--count`` queued messages spread
over them (nine in ten pending, one in ten deferred, half of those already due) plus 10,000
unacknowledged events, bulk-loaded with COPY (so the queue-count triggers see them as the
product's own writes would). Then a real node (``mail-proxy serve``, scheduler inactive so
nothing drains) is started on it and ``/metrics`` is fetched over HTTP, ``--rounds`` rounds of:

* cold: one scrape whose database gauges are read for it (the cache of at most 5 s has
  expired: rounds are 5.1 s apart);
* warm: ``--warm`` scrapes served from that cache.

``--baseline TREE`` starts a second node from another source tree (``git archive <commit> | tar
-x -C TREE``) on the same database; the two nodes take turns in every round, so both meet the
same load and the figures compare. The gauge read alone (``store.gauges.queue_gauges`` in this
process), PostgreSQL's own execution time of the scrape's queries and the api worker's CPU time
per scrape (``/proc``, 10 ms ticks) are measured beside it. Prints minimum, median, p95 and
maximum in milliseconds and the load average; the database is removed afterwards.

Measured 2026-12-02 02:09-02:11 UTC on the shared 2-CPU development machine at a load average
of 11.2-11.9 (other engineers' builds and tests), 20 cold and 60 warm scrapes per node, this
tree against 90a5b9f in the same run:

=========================  ==================  ==================
ms (median / p95)          before (90a5b9f)    after
=========================  ==================  ==================
cold (gauges read)         129 / 185           84 / 148
warm (gauges cached)       76 / 119            31 / 50
=========================  ==================  ==================

The gauge read took 19 ms median in process; PostgreSQL's EXPLAIN ANALYZE of its queries 28 ms
at that load (9 ms in the run of 2026-12-01), nearly all of it the sequential count of the
10,000 unreported events (the other two queries run in under 0.2 ms). What changed:
the files are read by a reader that keeps each file's layout (``drivers.metrics_files.Reader``:
74 -> 7 ms for 100 accounts' series in three processes' files, in process), and the database
read runs beside the files' read instead of before it. Cold p95 stays over the goal on this
machine: at a load of 12 on 2 CPUs every hop between processes (api worker, PostgreSQL) waits
for a CPU; warm scrapes, and cold ones at the median, meet it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from mailproxyd.core.crypto import SecretBox
from mailproxyd.store import Database, accounts, gauges, meta, open_database, tenants

ROOT = Path(__file__).resolve().parents[1]
NOW = time.time()
TENANTS = 10
ACCOUNTS = 10
EVENTS = 10_000
GOAL_MS = 100.0
TTL_PAST = 5.1  # seconds: the gauge cache (at most 5 s) has expired
WARM_WITHIN = 4.5  # seconds after a cold scrape: still served from the cache
TOKEN = "bench-metrics-admin-token"
PAYLOAD = (
    '{"id":"x","from":"shop@acme.example","to":["ann@example.org"],"subject":"Hi","body":"Hello"}'
)
COLUMNS = (
    "tenant_id, id, account_id, priority, seq, status, ready_ts, deferred_ts, message_id, "
    "payload, created_at, updated_at"
)


def _rows(n: int) -> Iterator[tuple[Any, ...]]:
    for i in range(1, n + 1):
        tenant = f"t{i % TENANTS}"
        account = f"a{(i // TENANTS) % ACCOUNTS}"
        created = NOW - 3600 + i * 0.001
        if i % 10 == 0:
            due = NOW - 60 if i % 20 == 0 else NOW + 3600
            status, ready, deferred = "deferred", due, due
        else:
            status, ready, deferred = "pending", 0.0, None
        yield (
            tenant,
            f"m{i}",
            account,
            i % 4,
            i,
            status,
            ready,
            deferred,
            f"<m{i}@bench.example>",
            PAYLOAD,
            created,
            created,
        )


def _prepare(db: Database) -> None:
    with db.transaction() as tx:
        for t in range(TENANTS):
            tenants.create_or_replace(
                tx, {"id": f"t{t}", "name": f"Tenant {t}", "client_base_url": "http://x"}, NOW
            )
            for a in range(ACCOUNTS):
                accounts.create_or_replace(
                    tx, f"t{t}", {"id": f"a{a}", "host": "127.0.0.1", "port": 9}, NOW
                )
        meta.set_scheduler_active(tx, False)


@contextlib.contextmanager
def _database(n: int, admin_url: str, box: SecretBox) -> Iterator[str]:
    name = f"mp_bench_metrics_{secrets.token_hex(4)}"
    url = admin_url.rpartition("/")[0] + "/" + name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        db = open_database(url, box=box)
        _prepare(db)
        db.close()
        with psycopg.connect(url) as conn:
            # Several COPYs, as ingest would write them: each statement adds one count row.
            rows = _rows(n)
            while True:
                chunk = [row for _, row in zip(range(100_000), rows, strict=False)]
                if not chunk:
                    break
                with conn.cursor() as cur, cur.copy(f"COPY messages ({COLUMNS}) FROM STDIN") as cp:
                    for row in chunk:
                        cp.write_row(row)
            conn.execute("SELECT setval('message_seq', %s)", (n,))
            conn.execute(
                "INSERT INTO events (message_pk, tenant_id, id, account_id, priority, event_type,"
                " event_ts) SELECT pk, tenant_id, id, account_id, priority, 'deferred', %s"
                " FROM messages WHERE status = 'deferred' LIMIT %s",
                (NOW, EVENTS),
            )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _node(
    url: str, key: bytes, tree: Path = ROOT, node_id: str = "bench"
) -> Iterator[tuple[str, int]]:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="mp-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "MAIL_PROXY_"))}
        env.update(
            {
                "GMP_DATABASE_URL": url,
                "GMP_API_TOKEN": TOKEN,
                "GMP_HOST": "127.0.0.1",
                "GMP_PORT": str(port),
                "GMP_SENDER_PROCESSES": "1",
                "GMP_SCHEDULER_ACTIVE": "false",
                "GMP_LOG_LEVEL": "WARNING",
                "GMP_NODE_ID": node_id,
                # Nodes of one database share its key (reference §2.5).
                "GMP_SECRET_KEY": base64.urlsafe_b64encode(key).decode().rstrip("="),
                "MAIL_PROXY_HOME": tmp,
                "XDG_RUNTIME_DIR": tmp,
                "PYTHONPATH": str(tree),
            }
        )
        log = open(os.path.join(tmp, "node.log"), "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "mailproxyd.cli", "serve"],
            env=env,
            cwd=tree,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"node exited: {Path(tmp, 'node.log').read_text()}")
                try:
                    if httpx.get(base + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("node not ready after 60 s")
                time.sleep(0.2)
            yield base, process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            log.close()


def _api_worker(node_pid: int) -> int:
    """The pid of the node's api worker (a child running ``mailproxyd.workers.api``)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes()
            ppid = int(Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == node_pid and b"mailproxyd.workers.api" in cmdline:
            return int(entry)
    raise SystemExit("api worker not found")


def _cpu_ms(pid: int) -> float:
    """User plus system CPU time of a process so far, in milliseconds."""
    fields = Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _server_ms(url: str) -> float:
    """Execution time reported by PostgreSQL for the scrape's queries, in milliseconds."""
    from mailproxyd.store._queries import queries_for

    sql = queries_for("postgres")
    total = 0.0
    with psycopg.connect(url) as conn:
        for name in ("gauge_queue", "gauge_unreported", "metric_accounts"):
            plan = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + sql[name], {"now": time.time()}
            ).fetchone()
            assert plan is not None
            total += float(plan[0][0]["Execution Time"])
    return total


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def _ms(values: list[float]) -> str:
    return (
        f"{min(values):8.1f} {statistics.median(values):8.1f} {_p95(values):8.1f}"
        f" {max(values):8.1f}"
    )


@dataclasses.dataclass
class _Node:
    """One node under test and what its scrapes measured."""

    label: str
    base: str
    api_pid: int
    cold: list[float] = dataclasses.field(default_factory=list)
    warm: list[float] = dataclasses.field(default_factory=list)
    cold_cpu: list[float] = dataclasses.field(default_factory=list)
    warm_cpu: list[float] = dataclasses.field(default_factory=list)
    text: str = ""


def _scrape(client: httpx.Client, node: _Node, times: list[float], cpu: list[float]) -> None:
    c0, t0 = _cpu_ms(node.api_pid), time.perf_counter()
    answer = client.get(node.base + "/metrics")
    times.append((time.perf_counter() - t0) * 1000)
    cpu.append(_cpu_ms(node.api_pid) - c0)
    answer.raise_for_status()
    node.text = answer.text


def _measure(client: httpx.Client, nodes: list[_Node], rounds: int, warm_per_round: int) -> None:
    """``rounds`` rounds, the nodes taking turns within each: one cold scrape per node (its
    gauge cache expired), then ``warm_per_round`` warm ones per node (served from that cache),
    interleaved, so every node meets the same load."""
    for node in nodes:
        client.get(node.base + "/metrics").raise_for_status()  # connection and first import
    for _ in range(rounds):
        time.sleep(TTL_PAST)
        cold_at = {}
        for node in nodes:
            cold_at[node.label] = time.monotonic()
            _scrape(client, node, node.cold, node.cold_cpu)
        for _ in range(warm_per_round):
            for node in nodes:
                if time.monotonic() - cold_at[node.label] < WARM_WITHIN:
                    _scrape(client, node, node.warm, node.warm_cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warm", type=int, default=3, help="warm scrapes per node and round")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a source tree of the code to compare with (e.g. from git archive): its node is "
        "scraped in turns with this tree's, on the same database",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "MAIL_PROXY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args(argv)
    key = secrets.token_bytes(32)
    box = SecretBox(key)
    started = time.perf_counter()
    trees = [("this tree", ROOT)]
    if args.baseline is not None:
        trees.insert(0, ("baseline", args.baseline.resolve()))
    with _database(args.count, args.pg_url, box) as url:
        print(f"# {args.count:,} queued messages loaded in {time.perf_counter() - started:.1f} s")
        db = open_database(url, box=box)
        direct = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            with db.transaction(write=False) as tx:
                found = gauges.queue_gauges(tx, time.time())
            direct.append((time.perf_counter() - t0) * 1000)
        db.close()
        print(f"# gauges: pending={found['pending']:,} queue_age={found['queue_age']:.0f} s")
        server = [_server_ms(url) for _ in range(args.rounds)]
        loads = [os.getloadavg()]
        with contextlib.ExitStack() as stack:
            nodes = []
            for n, (label, tree) in enumerate(trees):
                base, pid = stack.enter_context(_node(url, key, tree, f"bench-{n}"))
                nodes.append(_Node(label, base, _api_worker(pid)))
            client = stack.enter_context(httpx.Client(headers={"X-API-Token": TOKEN}))
            _measure(client, nodes, args.rounds, args.warm)
            loads.append(os.getloadavg())
    print()
    print(f"{'ms':<44} {'min':>8} {'median':>8} {'p95':>8} {'max':>8}")
    print(f"{'gauge read (in process)':<44} {_ms(direct)}")
    print(f"{'PostgreSQL execution (EXPLAIN)':<44} {_ms(server)}")
    ok = True
    for node in nodes:
        pending = next(
            s.value
            for family in text_string_to_metric_families(node.text)
            for s in family.samples
            if s.name == "gmp_pending_messages"
        )
        assert pending == found["pending"], (node.label, pending)
        print(f"{node.label + ': /metrics cold (gauges read)':<44} {_ms(node.cold)}")
        print(f"{node.label + ': /metrics warm (gauges cached)':<44} {_ms(node.warm)}")
        print(f"{node.label + ': api worker CPU per cold scrape':<44} {_ms(node.cold_cpu)}")
        print(f"{node.label + ': api worker CPU per warm scrape':<44} {_ms(node.warm_cpu)}")
        print(f"{'':<44} ({len(node.cold)} cold, {len(node.warm)} warm scrapes)")
    for when, load in zip(("before", "after"), loads, strict=True):
        print(f"# load average {when}: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"# on {os.cpu_count()} CPUs")
    mine = nodes[-1]
    for name, values in (("cold", mine.cold), ("warm", mine.warm)):
        met = statistics.median(values) < GOAL_MS and _p95(values) < GOAL_MS
        ok = ok and met
        print(f"goal: {name} median and p95 under {GOAL_MS:.0f} ms: {'met' if met else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
