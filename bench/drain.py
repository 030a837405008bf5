"""Drain benchmark: queue 20,000 messages, measure until the SMTP sink has all of them.

``python -m bench.drain [--count N] [--baseline-count N] [--backends sqlite,postgres]``

For each backend it creates a fresh database, a tenant and accounts pointing at a real aiosmtpd
sink running in its own process, queues the messages through the enqueue service (the code
behind ``POST /commands/add-messages``), starts two sender processes running the product's
``sender_loop`` and measures the end-to-end rate until the sink has received every message.
Beside it, from the same run, it measures the plain baseline: a loop that builds each message
with the standard ``email`` package and sends it over one reused ``smtplib`` connection to
the same kind of sink. Then, with the senders idle, it queues single messages at 20 per second
and reports the latency from the enqueue commit to the arrival at the sink (p50/p99).

Goals (issue 5): rate ≥ 1.5 × baseline; latency p50 ≤ 10 ms, p99 ≤ 50 ms.

Internal roles of the same module: ``--sink FILE`` (the SMTP sink process) and
``--sender URL NAME READYFILE`` (a sender process; wake-ups arrive as UDP datagrams, standing
in for the supervisor's relay of the API's wake-up).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import secrets
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get(
    "MAIL_PROXY_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_MAIL_ID = re.compile(rb"^X-Genro-Mail-ID: ([^\r\n]*)", re.MULTILINE)
SENDERS = 2
ACCOUNTS = 4  # accounts of the tenant; messages are spread over them round-robin
LATENCY_RATE = 20.0
LATENCY_COUNT = 300
BODY = "Hello,\n\nyour order has shipped and will arrive soon.\n\nRegards,\nThe shop\n"


# ------------------------------------------------------------------------------- the sink


def run_sink(log_path: str) -> None:
    """An aiosmtpd server that appends ``<X-Genro-Mail-ID> <arrival time>`` per message."""
    from aiosmtpd.controller import Controller

    out = open(log_path, "a", buffering=1, encoding="utf-8")  # lives until exit

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            found = _MAIL_ID.search(envelope.original_content or b"")
            out.write(f"{found.group(1).decode() if found else '?'} {time.time():.6f}\n")
            return "250 2.0.0 OK"

    port = _free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    print(f"READY {port}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()
    out.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sink:
    """The sink process, seen from the benchmark."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.log = workdir / f"{name}.arrivals"
        self.log.touch()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.drain", "--sink", str(self.log)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError("the SMTP sink did not start")
        self.port = int(line[1])
        self._offset = 0
        self.arrivals: dict[str, float] = {}

    def poll(self) -> int:
        """Read new arrival lines; returns how many messages arrived so far."""
        with open(self.log, encoding="utf-8") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        self._offset += len(complete.encode())
        for line in complete.splitlines():
            mail_id, at = line.rsplit(" ", 1)
            self.arrivals.setdefault(mail_id, float(at))
        return len(self.arrivals)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


# ------------------------------------------------------------------------------- baseline


def baseline(port: int, count: int) -> float:
    """Messages per second of the plain loop: stdlib ``EmailMessage`` + one smtplib session."""
    conn = smtplib.SMTP("127.0.0.1", port)
    conn.ehlo()
    started = time.perf_counter()
    for i in range(count):
        msg = EmailMessage()
        msg["From"] = "Shop <orders@acme.example>"
        msg["To"] = f"customer{i}@example.org"
        msg["Subject"] = f"Your order {i}"
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain="acme.example")
        msg["X-Genro-Mail-ID"] = f"base-{i}"
        msg.set_content(BODY)
        conn.send_message(msg)
    elapsed = time.perf_counter() - started
    conn.quit()
    return count / elapsed


# ------------------------------------------------------------------------------- senders


def run_sender(url: str, name: str, ready_file: str) -> None:
    """A sender process: the product's ``sender_loop`` until SIGTERM."""
    import trio

    trio.run(_sender_main, url, name, ready_file)


async def _sender_main(url: str, name: str, ready_file: str) -> None:
    import trio

    from mailproxyd.core.crypto import SecretBox
    from mailproxyd.services.dispatch.cycle import sender_loop
    from mailproxyd.store import AsyncDatabase, open_database
    from mailproxyd.workers._runtime import WorkerContext

    settings = _settings(url)
    key = bytes.fromhex(os.environ["MAIL_PROXY_BENCH_KEY"])
    database = open_database(url, box=SecretBox(key), pool_size=8)
    log = logging.getLogger(f"bench.{name}")
    ctx = WorkerContext(
        kind="sender",
        index=int(name.rsplit("-", 1)[-1]),
        settings=settings,
        db=AsyncDatabase(database),
        link=_NullLink(),  # type: ignore[arg-type]
        log=log,
        instance_key=key,
    )
    wake_sock = trio.socket.socket(type=socket.SOCK_DGRAM)
    await wake_sock.bind(("127.0.0.1", 0))
    Path(ready_file).write_text(str(wake_sock.getsockname()[1]))

    async def wake_ups() -> None:
        while True:
            await wake_sock.recv(64)
            ctx.wake.ring()

    async def on_term() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                ctx.request_stop(5.0)
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wake_ups)
        nursery.start_soon(on_term)
        await sender_loop(ctx, ctx.wake)
        nursery.cancel_scope.cancel()
    database.close()


class _NullLink:
    """The supervisor link of a sender run without a supervisor: wake-ups go nowhere."""

    closed = False

    async def send(self, message: dict[str, Any]) -> None:
        return None


def _settings(url: str) -> Any:
    from mailproxyd.settings import load_settings

    base = load_settings("serve", environ={"GMP_DB_PATH": url})
    return dataclasses.replace(base, database=url, node_id="bench")


class Senders:
    def __init__(self, url: str, key: bytes, workdir: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.wake_ports: list[int] = []
        env = {**os.environ, "MAIL_PROXY_BENCH_KEY": key.hex(), "PYTHONPATH": str(ROOT)}
        ready = []
        for i in range(1, SENDERS + 1):
            path = workdir / f"sender-{i}.{secrets.token_hex(3)}.ready"
            ready.append(path)
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.drain",
                        "--sender",
                        url,
                        f"sender-{i}",
                        str(path),
                    ],
                    cwd=ROOT,
                    env=env,
                )
            )
        deadline = time.monotonic() + 30
        while not all(p.exists() and p.read_text() for p in ready):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError("sender processes did not start")
            time.sleep(0.01)
        self.wake_ports = [int(p.read_text()) for p in ready]
        self._udp = socket.socket(type=socket.SOCK_DGRAM)

    def wake(self) -> None:
        for port in self.wake_ports:
            self._udp.sendto(b"wake", ("127.0.0.1", port))

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._udp.close()


# ------------------------------------------------------------------------------- databases


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:{workdir / 'bench.db'}"
        return
    import psycopg

    name = f"mp_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rpartition("/")[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Producer:
    """Queues messages through the enqueue service, in this (the benchmark's) process."""

    def __init__(self, url: str, key: bytes, sink_port: int) -> None:
        from mailproxyd.core.crypto import SecretBox
        from mailproxyd.store import accounts, meta, open_database, tenants

        self.url = url
        self.db = open_database(url, box=SecretBox(key), pool_size=4)
        self.settings = _settings(url)
        now = time.time()
        with self.db.transaction() as tx:
            tenants.create_or_replace(tx, {"id": "shop"}, now)
            for a in range(ACCOUNTS):
                accounts.create_or_replace(
                    tx,
                    "shop",
                    {"id": f"smtp{a}", "host": "127.0.0.1", "port": sink_port, "tls_mode": "none"},
                    now,
                )
            meta.set_scheduler_active(tx, True)

    def enqueue(self, ids: list[str]) -> float:
        """Queue ``ids`` in one add-messages request; returns the time just after the commit."""
        import trio

        from mailproxyd.services.enqueue import add_messages
        from mailproxyd.store import AsyncDatabase

        body = {
            "tenant_id": "shop",
            "messages": [
                {
                    "id": mid,
                    "account_id": f"smtp{hash(mid) % ACCOUNTS}",
                    "from": "Shop <orders@acme.example>",
                    "to": [f"customer-{mid}@example.org"],
                    "subject": f"Your order {mid}",
                    "body": BODY,
                }
                for mid in ids
            ],
        }
        ctx = _EnqueueCtx(self.settings, AsyncDatabase(self.db))

        async def go() -> float:
            outcome = await add_messages(ctx, body, caller_tenant=None, envelope_tenant=None)
            committed = time.time()
            if outcome.queued != len(ids):
                raise RuntimeError(f"enqueue refused messages: {outcome.rejected[:3]}")
            return committed

        return trio.run(go)

    def close(self) -> None:
        self.db.close()


@dataclasses.dataclass
class _EnqueueCtx:
    settings: Any
    db: Any
    link: Any = dataclasses.field(default_factory=_NullLink)

    def now(self) -> float:
        return time.time()


# ------------------------------------------------------------------------------- phases


def drain(backend: str, count: int, key: bytes, workdir: Path) -> dict[str, float]:
    sink = Sink(workdir, f"drain-{backend}")
    try:
        with database(backend, workdir) as url:
            producer = Producer(url, key, sink.port)
            started = time.perf_counter()
            for start in range(0, count, 1000):
                producer.enqueue([f"{backend}-{i}" for i in range(start, min(count, start + 1000))])
            enqueue_rate = count / (time.perf_counter() - started)
            senders = Senders(url, key, workdir)
            try:
                started = time.perf_counter()
                senders.wake()
                deadline = time.monotonic() + 600
                while sink.poll() < count:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"only {len(sink.arrivals)} of {count} arrived")
                    time.sleep(0.02)
                rate = count / (time.perf_counter() - started)
                latencies = latency(producer, senders, sink, backend)
            finally:
                senders.stop()
                producer.close()
    finally:
        sink.stop()
    return {"rate": rate, "enqueue_rate": enqueue_rate, **latencies}


def latency(producer: Producer, senders: Senders, sink: Sink, backend: str) -> dict[str, float]:
    """Single messages at ``LATENCY_RATE``/s: enqueue commit → arrival at the sink."""
    time.sleep(0.5)  # let the senders go idle after the drain
    committed: dict[str, float] = {}
    period = 1.0 / LATENCY_RATE
    next_at = time.monotonic()
    for i in range(LATENCY_COUNT):
        mid = f"{backend}-lat-{i}"
        committed[mid] = producer.enqueue([mid])
        senders.wake()
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    deadline = time.monotonic() + 30
    while any(m not in sink.arrivals for m in committed):
        if time.monotonic() > deadline:
            raise RuntimeError("latency messages did not all arrive")
        sink.poll()
        time.sleep(0.01)
    values = sorted((sink.arrivals[m] - t) * 1000 for m, t in committed.items())
    return {
        "p50_ms": statistics.median(values),
        "p99_ms": values[min(len(values) - 1, math.ceil(0.99 * len(values)) - 1)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--baseline-count", type=int, default=None)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    parser.add_argument("--sender", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink:
        run_sink(args.sink)
        return 0
    if args.sender:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        run_sender(*args.sender)
        return 0

    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="mp-bench-") as tmp:
        workdir = Path(tmp)
        sink = Sink(workdir, "baseline")
        try:
            base = baseline(sink.port, args.baseline_count or args.count)
        finally:
            sink.stop()
        print(f"baseline (stdlib EmailMessage + one smtplib session): {base:8.0f} msg/s")
        results = {}
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            r = drain(backend, args.count, key, workdir)
            results[backend] = r
            print(
                f"{backend:8s} drain {args.count} with {SENDERS} senders: {r['rate']:8.0f} msg/s"
                f"  = {r['rate'] / base:4.2f}x baseline (goal 1.5x)"
                f" | latency at {LATENCY_RATE:g}/s: p50 {r['p50_ms']:5.1f} ms, "
                f"p99 {r['p99_ms']:5.1f} ms (goals 10 / 50)"
                f" | enqueue {r['enqueue_rate']:6.0f} msg/s",
                flush=True,
            )
        print(json.dumps({"baseline": base, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
