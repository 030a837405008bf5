"""PostgreSQL ``LISTEN/NOTIFY`` wake-ups between the nodes of one instance (reference §8.6, §18.5).

A wake-up is only a hint: the payload says why (``enqueue``, ``run_now``) and which node sent
it, and every node still polls on its own. So a lost notification costs at most one poll
interval, and a listener that loses its connection simply reconnects.

Both classes are blocking (psycopg's async API is asyncio-only); the supervisor runs the
listener in a thread of its own and calls ``publish`` through ``trio.to_thread``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from mailproxyd.errors import DatabaseUnavailable

CHANNEL = "mail_proxy_wake"
# How often the listener looks at its stop flag while no notification arrives.
POLL_SECONDS = 0.5
RECONNECT_SECONDS = 1.0

_log = logging.getLogger("mailproxyd.store.notify")


def encode_wake(node_id: str, reason: str, tenant_id: str | None = None) -> str:
    payload: dict[str, Any] = {"node": node_id, "reason": reason}
    if tenant_id is not None:
        payload["tenant_id"] = tenant_id
    return json.dumps(payload, separators=(",", ":"))


def decode_wake(payload: str) -> dict[str, Any] | None:
    """The wake-up in a payload, or None for anything that is not one of ours."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("reason"), str):
        return None
    return data


class WakePublisher:
    """Sends wake-ups on one long-lived connection, reconnecting after a failure."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def publish(self, payload: str) -> None:
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(
                            self._conninfo, autocommit=True, connect_timeout=5
                        )
                    self._conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                    return
                except psycopg.Error as exc:
                    self._drop()
                    if attempt == 2:
                        raise DatabaseUnavailable(f"database unreachable: {exc}") from exc

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()


class WakeListener:
    """Receives wake-ups; ``run`` blocks until ``stop`` is set."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo

    def run(self, deliver: Callable[[dict[str, Any]], None], stop: threading.Event) -> None:
        """Deliver every decoded wake-up to ``deliver`` (from this thread) until ``stop``."""
        while not stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    _log.debug("listening for wake-ups on %s", CHANNEL)
                    while not stop.is_set():
                        for note in conn.notifies(timeout=POLL_SECONDS):
                            wake = decode_wake(note.payload)
                            if wake is not None:
                                deliver(wake)
                            if stop.is_set():
                                break
            except psycopg.Error as exc:
                if stop.is_set():
                    return
                _log.warning("wake-up listener lost its connection (%s); reconnecting", exc)
                stop.wait(RECONNECT_SECONDS)
