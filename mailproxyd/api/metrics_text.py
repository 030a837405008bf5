"""The Prometheus text of ``GET /metrics`` (reference §14).

Counters and histograms come from every process of the node (``drivers.metrics``); the
gauges are read from the database at scrape time and kept at most ``GAUGE_TTL`` seconds, so
a burst of scrapes (several Prometheus servers, a dashboard) costs one read. The same read
lists the accounts whose series must exist at zero from the start.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

import trio

from mailproxyd.drivers import metrics
from mailproxyd.errors import DatabaseUnavailable
from mailproxyd.store import gauges as store_gauges

GAUGE_TTL = 5.0

log = logging.getLogger("mailproxyd.api.metrics")


class _Cache:
    def __init__(self) -> None:
        self.at = -GAUGE_TTL
        self.gauges: metrics.Gauges | None = None
        self.accounts: frozenset[metrics.AccountLabels] = frozenset()
        self.lock = trio.Lock()


_caches: weakref.WeakKeyDictionary[Any, _Cache] = weakref.WeakKeyDictionary()


def _read(tx: Any, *, now: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return store_gauges.queue_gauges(tx, now), store_gauges.metric_accounts(tx)


async def _gauges(ctx: Any) -> tuple[metrics.Gauges | None, bool]:
    """The gauges (None: the database is unavailable) and whether series were made for
    accounts not seen before."""
    cache = _caches.setdefault(ctx, _Cache())
    new: frozenset[metrics.AccountLabels] = frozenset()
    async with cache.lock:
        if cache.gauges is None or time.monotonic() - cache.at >= GAUGE_TTL:
            now = float(getattr(ctx, "now", time.time)())
            try:
                values, accounts = await ctx.db.run(_read, now=now, write=False)
            except DatabaseUnavailable:
                # The counts are still worth a scrape; gauges nobody can read are left out
                # rather than shown stale.
                log.warning("metrics: database unavailable; gauges left out of this scrape")
                return None, False
            cache.gauges = metrics.Gauges(
                pending=values["pending"],
                queue_age=values["queue_age"],
                unreported=values["unreported"],
            )
            labels = frozenset(
                metrics.AccountLabels.of(a["tenant_id"], a["tenant_name"], a["account_id"])
                for a in accounts
            )
            new = labels - cache.accounts
            if new:
                metrics.ensure_account_series(sorted(new, key=lambda x: x.values()))
            cache.accounts = labels
            cache.at = time.monotonic()
        return cache.gauges, bool(new)


async def render(ctx: Any) -> bytes:
    # The database read and the files' read overlap: a scrape waits for the slower, not both.
    found: list[tuple[metrics.Gauges | None, bool]] = []

    async def read_gauges() -> None:
        found.append(await _gauges(ctx))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_gauges)
        # Reading the multiprocess files is blocking file I/O: keep it off the event loop.
        counts = await trio.to_thread.run_sync(metrics.counts_text)
    gauges, new_accounts = found[0]
    if new_accounts:
        # Their zero series were written meanwhile: read again, so they are in this scrape.
        counts = await trio.to_thread.run_sync(metrics.counts_text)
    return metrics.render(gauges, counts)
