"""The Prometheus text of ``GET /metrics`` (contract §14).

Workers run ``prometheus_client`` in multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR``
is set, so the api worker's scrape adds up every process of the node; without it (tests,
single process) the default registry is served. The metrics themselves are defined by
the observability part; this module only renders them.
"""

from __future__ import annotations

import os
from typing import Any

import trio
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest


def _collect() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


async def render(ctx: Any) -> bytes:
    # Reading the multiprocess files is blocking file I/O: keep it off the event loop.
    return await trio.to_thread.run_sync(_collect)
