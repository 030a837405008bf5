"""A separate OS process for the store concurrency tests (run with ``python -m``).

``python -m tests.integration.store.store_worker MODE URL SYNC_DIR NAME [ARGS…]`` with the
instance key in ``MAIL_PROXY_TEST_KEY`` (hex). The worker opens its own ``Database``, creates
``SYNC_DIR/NAME.ready``, waits for ``SYNC_DIR/go`` (so all workers start together), does its
job and prints one JSON document on stdout.

Modes: ``claim`` (claim batches until none is left; prints the claimed pks), ``reserve N``
(N rate-limit reservations at 10/minute; prints each outcome), ``claim-and-hang`` (claims, prints
the pks, then waits to be killed).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from mailproxyd.core.crypto import SecretBox
from mailproxyd.core.ratelimit import account_windows
from mailproxyd.store import open_database, queue, ratelimit
from tests.helpers import wait_for


def main(argv: list[str]) -> None:
    mode, url, sync_dir, name, *args = argv
    box = SecretBox(bytes.fromhex(os.environ["MAIL_PROXY_TEST_KEY"]))
    db = open_database(url, box=box, pool_size=2)
    owner = f"{name}/sender-{os.getpid()}"
    (Path(sync_dir) / f"{name}.ready").touch()
    wait_for((Path(sync_dir) / "go").exists, timeout=30, interval=0.005)
    out: object
    if mode == "claim":
        claimed: list[int] = []
        while True:
            rows = db.run(queue.claim_batch, "acme", "main", owner, 10, time.time(), 300)
            if not rows:
                break
            claimed.extend(row["pk"] for row in rows)
            # A sender sends between two claims. Without a pause, on SQLite the claimer that
            # commits takes the write lock again at once, while the others' busy handlers
            # sleep: on a fast machine one process claimed all 10,000 alone.
            time.sleep(0.001)
        out = claimed
    elif mode == "reserve":
        results = []
        for _ in range(int(args[0])):
            res = db.run(
                ratelimit.reserve,
                "acme",
                "main",
                None,
                time.time(),
                account_windows({"limit_per_minute": 10}),
            )
            results.append({"granted": res.granted, "free_at": res.free_at})
        out = results
    elif mode == "claim-and-hang":
        rows = db.run(queue.claim_batch, "acme", "main", args[0], 5, float(args[1]), 120)
        print(json.dumps([row["pk"] for row in rows]), flush=True)
        time.sleep(600)
        return
    else:
        raise SystemExit(f"unknown mode {mode}")
    db.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
