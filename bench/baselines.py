"""Same-run baselines, to the same kind of sink the product is measured against.

    python -m bench baselines [--quick] [--count N]

``--count`` (default 20,000; 2,000 quick) messages each, at most 5,000 for the two stdlib ones.

* ``raw``: the SMTP path alone. Postfix's ``smtp-source`` (2 parallel sessions, each reusing its
  connection) into ``smtp-sink``; without Postfix, prebuilt messages over smtplib from 2
  processes into the Python sink, which measures that sink's own ceiling.
* ``plain_loop``: what a user would write — build each message with the standard ``email``
  package and send it over one reused smtplib connection. The drain goal is 1.5x this.
* ``prebuilt_smtplib``: the same messages built beforehand, sent over one smtplib connection:
  the cost of smtplib alone.
* ``sqlite_insert_100`` / ``sqlite_insert_500``: the store's own ``message_insert`` statement via
  ``executemany`` into a fresh SQLite database, one transaction per batch: the ingest goal is
  0.2x this.
"""

from __future__ import annotations

import secrets
import smtplib
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

import msgspec

from bench.harness import Record, Run, counters, tool
from bench.node import message
from bench.sinks import CSink, Sink, open_sink

BODY = "Hello,\n\nyour order has shipped and will arrive soon.\n\nRegards,\nThe shop\n"
NAMES = ("raw", "plain_loop", "prebuilt_smtplib", "sqlite_insert_100", "sqlite_insert_500")


def _stdlib_message(mail_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Shop <orders@acme.example>"
    msg["To"] = f"customer-{mail_id}@example.org"
    msg["Subject"] = f"Your order {mail_id}"
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="acme.example")
    msg["X-Genro-Mail-ID"] = mail_id
    msg.set_content(BODY)
    return msg


def _finish(run: Run, name: str, sink: Sink, ids: list[str], elapsed: float) -> float:
    sink.wait_count(len(ids), 30)
    rate = len(ids) / elapsed
    run.emit(
        Record(
            "baselines",
            name,
            {"messages": len(ids), "rate_msg_s": round(rate), "sink": sink.kind},
            counters(set(ids), [mail_id for mail_id, _ in sink.arrivals()]),
        )
    )
    return rate


def plain_loop(run: Run, count: int) -> float:
    sink = open_sink(run)
    try:
        ids = [f"plain-{i}" for i in range(count)]
        conn = smtplib.SMTP("127.0.0.1", sink.port)
        conn.ehlo()
        started = time.perf_counter()
        for mail_id in ids:
            conn.send_message(_stdlib_message(mail_id))
        elapsed = time.perf_counter() - started
        conn.quit()
        return _finish(run, "plain_loop", sink, ids, elapsed)
    finally:
        sink.close()


def _send_prebuilt(port: int, messages: list[bytes]) -> float:
    conn = smtplib.SMTP("127.0.0.1", port)
    conn.ehlo()
    started = time.perf_counter()
    for data in messages:
        conn.sendmail("orders@acme.example", ["customer@example.org"], data)
    elapsed = time.perf_counter() - started
    conn.quit()
    return elapsed


def _prebuilt(ids: list[str]) -> list[bytes]:
    return [_stdlib_message(i).as_bytes(policy=SMTP) for i in ids]


def prebuilt_smtplib(run: Run, count: int) -> float:
    sink = open_sink(run)
    try:
        ids = [f"prebuilt-{i}" for i in range(count)]
        elapsed = _send_prebuilt(sink.port, _prebuilt(ids))
        return _finish(run, "prebuilt_smtplib", sink, ids, elapsed)
    finally:
        sink.close()


def raw(run: Run, count: int) -> float:
    """The SMTP path with no product code: the ceiling of this sink on this machine."""
    sink = open_sink(run)
    try:
        if isinstance(sink, CSink):
            started = time.perf_counter()
            subprocess.run(
                [
                    *(tool("smtp-source"), "-s", "2", "-m", str(count), "-d", "-l", "300"),
                    *("-f", "orders@acme.example", "-t", "customer@example.org"),
                    f"127.0.0.1:{sink.port}",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            if not sink.wait_count(count, 30):
                raise RuntimeError("smtp-sink did not receive every smtp-source message")
            elapsed = time.perf_counter() - started
            got = sink.count()
            rate = count / elapsed
            run.emit(
                Record(
                    "baselines",
                    "raw",
                    {
                        "messages": count,
                        "rate_msg_s": round(rate),
                        "sink": sink.kind,
                        "load": "smtp-source -s 2 -d",
                    },
                    {"delivered": min(got, count), "duplicates": max(0, got - count),
                     "lost": max(0, count - got)},
                )
            )  # fmt: skip
            return rate
        ids = [f"raw-{i}" for i in range(count)]
        halves = [_prebuilt(ids[0::2]), _prebuilt(ids[1::2])]
        with ProcessPoolExecutor(2) as pool:
            started = time.perf_counter()
            list(pool.map(_send_prebuilt, [sink.port] * 2, halves))
            elapsed = time.perf_counter() - started
        return _finish(run, "raw", sink, ids, elapsed)
    finally:
        sink.close()


def sqlite_inserts(run: Run, count: int, batch: int) -> float:
    """``message_insert`` via executemany, one transaction per ``batch`` rows."""
    from mailproxyd.core.crypto import SecretBox
    from mailproxyd.store import accounts, open_database, tenants

    path = run.scratch("direct") / "direct.db"
    db = open_database(f"sqlite:{path}", box=SecretBox(run.key))
    try:
        now = time.time()
        rows = []
        for i in range(count):
            payload = message(f"direct-{i}")
            rows.append(
                {
                    "tenant_id": "shop", "id": payload["id"], "account_id": "smtp0",
                    "priority": 2, "seq": i + 1, "status": "pending", "ready_ts": 0.0,
                    "deferred_ts": None, "deferred_reason": None, "batch_code": None,
                    "message_id": f"<{secrets.token_hex(16)}@acme.example>",
                    "payload": msgspec.json.encode(payload).decode(), "error": None,
                    "error_ts": None, "now": now,
                }
            )  # fmt: skip
        with db.transaction() as tx:
            tenants.create_or_replace(tx, {"id": "shop"}, now)
            accounts.create_or_replace(tx, "shop", {"id": "smtp0", "host": "h", "port": 25}, now)
        started = time.perf_counter()
        for start in range(0, count, batch):
            with db.transaction() as tx:
                tx.many("message_insert", rows[start : start + batch])
        elapsed = time.perf_counter() - started
        stored = db.run(lambda tx: tx.raw("SELECT count(*) AS n FROM messages")[0]["n"])
    finally:
        db.close()
    rate = count / elapsed
    run.emit(
        Record(
            "baselines",
            f"sqlite_insert_{batch}",
            {"messages": count, "batch": batch, "rate_msg_s": round(rate)},
            {"delivered": stored, "duplicates": 0, "lost": count - stored},
        )
    )
    return rate


def measure(run: Run, name: str) -> float:
    """The baseline ``name`` of this run, measured now if no scenario did yet."""
    count = run.options.n(20_000, 2_000)
    # The stdlib builder is slow (milliseconds per message on a loaded machine): its rate
    # settles long before 20,000 messages.
    stdlib_count = min(count, 5_000)
    if name == "raw":
        return run.baseline(name, lambda: raw(run, count))
    if name == "plain_loop":
        return run.baseline(name, lambda: plain_loop(run, stdlib_count))
    if name == "prebuilt_smtplib":
        return run.baseline(name, lambda: prebuilt_smtplib(run, stdlib_count))
    batch = int(name.rsplit("_", 1)[1])
    return run.baseline(name, lambda: sqlite_inserts(run, count, batch))


def run(ctx: Run) -> None:
    for name in NAMES:
        measure(ctx, name)
