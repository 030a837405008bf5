"""A sender as a separate OS process, for the multi-process dispatch tests (``python -m``).

``python -m tests.integration.dispatch.sender_proc URL NAME SYNC_DIR [options]`` with the
instance key in ``MAIL_PROXY_TEST_KEY`` (hex). It opens its own database, creates
``SYNC_DIR/NAME.ready``, waits for ``SYNC_DIR/go`` so that every process starts together, then:

* ``--mode cycle``: runs dispatch cycles until one handles nothing (as test mode does) and
  prints ``{"handled": N}``;
* ``--mode loop``: runs ``sender_loop`` until SIGTERM (graceful stop) or SIGKILL.

``--clock-offset S`` shifts the sender's clock by S seconds (rate-limit windows without
waiting); ``--lease S`` sets the claim lease (the crash test wants a short one).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import trio

from mailproxyd.core.crypto import SecretBox
from mailproxyd.services.dispatch.cycle import run_dispatch_cycle, sender_loop
from mailproxyd.services.dispatch.smtp import close_pool
from mailproxyd.store import AsyncDatabase, open_database
from tests.helpers import until
from tests.integration.dispatch.conftest import FakeLink, Harness, make_settings, new_pool


async def main(args: argparse.Namespace) -> None:
    box = SecretBox(bytes.fromhex(os.environ["MAIL_PROXY_TEST_KEY"]))
    database = open_database(args.url, box=box, pool_size=4)
    overrides: dict[str, object] = {"log_delivery_activity": False}
    if args.lease is not None:
        overrides["claim_lease_seconds"] = args.lease
    if args.batch_size is not None:
        overrides["batch_size_per_account"] = args.batch_size
    settings = make_settings(args.url, **overrides)
    ctx = Harness(database, settings, 0)
    ctx.db = AsyncDatabase(database)
    ctx.link = FakeLink()
    ctx.owner = f"{args.name}/sender-{os.getpid()}"
    offset = float(args.clock_offset)
    ctx.now = lambda: time.time() + offset
    pool = new_pool(settings)
    sync = Path(args.sync_dir)
    (sync / f"{args.name}.ready").touch()
    await until((sync / "go").exists, timeout=30, interval=0.005)
    try:
        if args.mode == "cycle":
            handled = 0
            while True:
                n = await run_dispatch_cycle(ctx, pool=pool)
                if not n:
                    break
                handled += n
            print(json.dumps({"handled": handled, "owner": ctx.owner}), flush=True)
        else:
            async with trio.open_nursery() as nursery:

                async def on_term() -> None:
                    with trio.open_signal_receiver(signal.SIGTERM) as signals:
                        async for _ in signals:
                            ctx.request_stop(float(args.grace))
                            return

                nursery.start_soon(on_term)
                await sender_loop(ctx, ctx.wake, pool=pool)
                nursery.cancel_scope.cancel()
            print(json.dumps({"stopped": True, "owner": ctx.owner}), flush=True)
    finally:
        await close_pool(pool)
        database.close()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("name")
    parser.add_argument("sync_dir")
    parser.add_argument("--mode", choices=("cycle", "loop"), default="cycle")
    parser.add_argument("--clock-offset", default="0")
    parser.add_argument("--lease", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--grace", default="5")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(main, parse(sys.argv[1:]))
