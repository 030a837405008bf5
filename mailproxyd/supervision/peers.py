"""Wake-ups between the nodes of one PostgreSQL database (reference §8.6, §18.5), supervisor side.

``Peers.publish`` sends this node's enqueue and run-now hints to the others; ``Peers.listen``
runs the ``LISTEN`` loop in a thread and hands every hint from another node to a callback in
the trio run. Hints are best effort: every node still polls, so a lost one costs at most a poll
interval, and a failure to publish is only logged. SQLite nodes have no peers (reference §18.5), and then
both are no-ops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import trio

from mailproxyd.errors import DatabaseUnavailable
from mailproxyd.logsetup import get_logger

_log = get_logger("supervisor")


class Peers:
    """The other nodes of this node's database."""

    def __init__(self, database: str, node_id: str, *, enabled: bool) -> None:
        self._database = database
        self._node_id = node_id
        self._enabled = enabled
        self._publisher: Any = None

    async def publish(self, reason: str, tenant_id: str | None = None) -> None:
        if not self._enabled:
            return
        from mailproxyd.store.notify import WakePublisher, encode_wake

        if self._publisher is None:
            self._publisher = WakePublisher(self._database)
        payload = encode_wake(self._node_id, reason, tenant_id)
        try:
            await trio.to_thread.run_sync(self._publisher.publish, payload)
        except DatabaseUnavailable as exc:
            _log.warning("could not notify other nodes: %s", exc.message)

    async def listen(self, on_wake: Callable[[dict[str, Any]], None]) -> None:
        """Deliver other nodes' wake-ups to ``on_wake`` (in the trio run) until cancelled."""
        if not self._enabled:
            return
        from mailproxyd.store.notify import WakeListener

        stop = threading.Event()
        token = trio.lowlevel.current_trio_token()

        def deliver(wake: dict[str, Any]) -> None:
            if wake.get("node") == self._node_id:
                return  # our own hint, already delivered locally
            try:
                trio.from_thread.run_sync(on_wake, wake, trio_token=token)
            except trio.RunFinishedError:
                stop.set()

        listener = WakeListener(self._database)
        try:
            # Abandoned on cancellation; the stop flag ends the thread within half a second.
            await trio.to_thread.run_sync(listener.run, deliver, stop, abandon_on_cancel=True)
        finally:
            stop.set()

    async def aclose(self) -> None:
        if self._publisher is not None:
            await trio.to_thread.run_sync(self._publisher.close)
            self._publisher = None
