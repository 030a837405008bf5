"""Ingest benchmark: add-messages over HTTP against direct ``executemany`` inserts (SQLite).

Run ``python bench/ingest.py`` (``--messages 20000 --batch 500``). The API runs in a
child process (its own interpreter, so the client's JSON work does not share its GIL)
serving ``create_app`` over a fresh SQLite database with a tenant and an account; the
parent posts pre-encoded batches on one keep-alive connection and reports messages/s.
It then inserts the same number of rows, in the same batch size and one transaction per
batch, straight into a second fresh database with the store's ``message_insert`` query
and ``executemany``, and prints both rates and their ratio.

Goal (issue 4): at least 15,000 messages/s over HTTP, and at least 0.2 of the direct rate.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _message(i: int) -> dict[str, object]:
    return {
        "id": f"bench-{i:07d}",
        "from": "Shop <orders@acme.example>",
        "to": [f"customer{i % 977}@example.org"],
        "subject": f"Your order #{i}",
        "body": "Thanks for your order! It ships tomorrow.\n" * 3,
    }


# --------------------------------------------------------------------------- server side


def serve(db_path: str, token: str, key_hex: str) -> None:
    """Child process: run the API on a free port and print its URL on stdout."""
    import logging

    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    from mailproxyd.api import create_app
    from mailproxyd.core.crypto import SecretBox
    from mailproxyd.store import AsyncDatabase, open_database
    from mailproxyd.workers._runtime import WorkerContext
    from tests.apiclient import RecordingLink, make_settings

    settings = make_settings(f"sqlite:{db_path}", Path(db_path).parent / "home", api_token=token)
    key = bytes.fromhex(key_hex)
    db = open_database(settings.database, box=SecretBox(key))

    async def main(argv: list[str] | None = None) -> None:
        ctx = WorkerContext(
            kind="api",
            index=0,
            settings=settings,
            db=AsyncDatabase(db),
            link=RecordingLink(),  # type: ignore[arg-type]
            log=logging.getLogger("bench.api"),
            instance_key=key,
        )
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = None
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                lambda task_status: hypercorn_serve(
                    create_app(ctx), config, task_status=task_status
                )
            )
            print(binds[0], flush=True)

    trio.run(main)


# --------------------------------------------------------------------------- client side


def bench_http(total: int, batch: int, workdir: Path) -> float:
    token = secrets.token_urlsafe(32)
    db_path = workdir / "http.db"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(db_path), token, secrets.token_hex(32)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url:
            raise SystemExit("the API process did not start")
        with httpx.Client(base_url=url, headers={"X-API-Token": token}, timeout=60) as client:
            r = client.post("/tenant", json={"id": "acme", "name": "ACME"})
            r.raise_for_status()
            r = client.post(
                "/account",
                json={"id": "smtp1", "tenant_id": "acme", "host": "smtp.example.com", "port": 587},
            )
            r.raise_for_status()
            bodies = [
                msgspec.json.encode(
                    {"tenant_id": "acme", "messages": [_message(i) for i in range(s, s + batch)]}
                )
                for s in range(0, total, batch)
            ]
            # One warm-up request (imports, first connection) outside the measurement.
            client.post(
                "/commands/add-messages",
                content=msgspec.json.encode(
                    {"tenant_id": "acme", "messages": [_message(10_000_000)]}
                ),
            )
            started = time.perf_counter()
            queued = 0
            for body in bodies:
                r = client.post("/commands/add-messages", content=body)
                r.raise_for_status()
                queued += r.json()["queued"]
            elapsed = time.perf_counter() - started
        if queued != total:
            raise SystemExit(f"queued {queued} of {total}")
        return total / elapsed
    finally:
        proc.terminate()
        proc.wait(10)


def bench_direct(total: int, batch: int, workdir: Path) -> float:
    from mailproxyd.core.crypto import SecretBox
    from mailproxyd.store import accounts, open_database, tenants

    db = open_database(f"sqlite:{workdir / 'direct.db'}", box=SecretBox(secrets.token_bytes(32)))
    try:
        now = time.time()
        rows = []
        for i in range(total):
            message = _message(i)
            rows.append(
                {
                    "tenant_id": "acme",
                    "id": message["id"],
                    "account_id": "smtp1",
                    "priority": 2,
                    "seq": i + 1,
                    "status": "pending",
                    "ready_ts": 0.0,
                    "deferred_ts": None,
                    "deferred_reason": None,
                    "batch_code": None,
                    "message_id": f"<{secrets.token_hex(16)}@acme.example>",
                    "payload": msgspec.json.encode(message).decode(),
                    "error": None,
                    "error_ts": None,
                    "now": now,
                }
            )
        with db.transaction() as tx:
            tenants.create_or_replace(tx, {"id": "acme", "name": "ACME"}, now)
            accounts.create_or_replace(
                tx, "acme", {"id": "smtp1", "host": "smtp.example.com", "port": 587}, now
            )
        started = time.perf_counter()
        for start in range(0, total, batch):
            with db.transaction() as tx:
                tx.many("message_insert", rows[start : start + batch])
        return total / (time.perf_counter() - started)
    finally:
        db.close()


def main(argv: list[str] | None = None) -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mp-ingest-") as tmp:
        workdir = Path(tmp)
        http_rate = bench_http(args.messages, args.batch, workdir)
        direct_rate = bench_direct(args.messages, args.batch, workdir)
    ratio = http_rate / direct_rate
    figures = {
        "messages": args.messages,
        "batch": args.batch,
        "http_msgs_per_s": round(http_rate),
        "direct_msgs_per_s": round(direct_rate),
        "ratio": round(ratio, 3),
        "goal_met": http_rate >= 15_000 and ratio >= 0.2,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"add-messages over HTTP : {http_rate:>10,.0f} messages/s")
    print(f"direct executemany     : {direct_rate:>10,.0f} messages/s")
    print(f"ratio                  : {ratio:>10.3f}   (goal >= 0.2, and >= 15,000 msg/s over HTTP)")


if __name__ == "__main__":
    main()
