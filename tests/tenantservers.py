"""Real HTTP servers playing tenants' sync endpoints, for integration and system tests.

A pytest plugin: ``pytest_plugins = ["tests.tenantservers"]`` (or import the fixtures) gives

* ``tenant_server`` — a factory: ``srv = tenant_server()`` starts a threaded HTTP/1.1 server on
  127.0.0.1 with keep-alive; ``srv.base_url`` goes into a tenant's ``client_base_url``;
* ``closed_port_url`` — a base URL on which nothing listens ("connection refused").

Each server answers from a script (:meth:`TenantServer.script`), one answer per call, then its
``default`` answer: :func:`ok`, :func:`not_ok`, :func:`status`, :func:`non_json`, :func:`slow`, or a
callable receiving the :class:`Call` and returning one of those. Every request is recorded with
its arrival time, headers, raw body, the parsed items and the client's address (which shows
connection reuse). Wait for calls with :meth:`TenantServer.wait_for_calls`, which polls with a
deadline, or from a trio test with :func:`tests.helpers.until`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.helpers import free_port


@dataclass(frozen=True)
class Reply:
    """A scripted answer: status, body bytes, and an optional delay before answering."""

    status: int = 200
    body: bytes = b'{"ok":true}'
    delay: float = 0.0
    content_type: str = "application/json"


def ok(queued: int | None = None, next_sync_after: float | None = None, **extra: Any) -> Reply:
    """An acknowledging answer ``{"ok": true, ...}``."""
    obj: dict[str, Any] = {"ok": True}
    if queued is not None:
        obj["queued"] = queued
    if next_sync_after is not None:
        obj["next_sync_after"] = next_sync_after
    obj.update(extra)
    return Reply(body=json.dumps(obj).encode())


def not_ok(error: str | list[str] = "database locked") -> Reply:
    """A 200 answer that does not acknowledge: ``{"ok": false, "error": [...]}``."""
    return Reply(body=json.dumps({"ok": False, "error": error}).encode())


def status(code: int, body: bytes = b'{"ok":true}') -> Reply:
    """An answer with another HTTP status (the body says ok, which must not matter)."""
    return Reply(status=code, body=body)


def non_json() -> Reply:
    """A 200 answer whose body is not JSON."""
    return Reply(body=b"<html>it worked</html>", content_type="text/html")


def slow(seconds: float, then: Reply | None = None) -> Reply:
    """Answer ``then`` (default ok) only after ``seconds``."""
    base = then or ok()
    return Reply(base.status, base.body, seconds, base.content_type)


Script = Reply | Callable[["Call"], Reply]


@dataclass(frozen=True)
class Call:
    """One recorded request."""

    time: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def items(self) -> list[dict[str, Any]] | None:
        """The ``delivery_report`` list, or ``None`` if the body is not a report."""
        doc = self.json
        if isinstance(doc, dict) and isinstance(doc.get("delivery_report"), list):
            return doc["delivery_report"]
        return None

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


def verify_signature(secret: str, header: str | None, body: bytes) -> int:
    """Check ``X-Mail-Proxy-Signature`` as a tenant would (reference §13.3); return ``t`` or raise."""
    if header is None:
        raise AssertionError("no signature header")
    parts = dict(part.split("=", 1) for part in header.split(","))
    t = int(parts["t"])
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts["v1"]):
        raise AssertionError("signature does not verify")
    return t


class TenantServer:
    """A real HTTP server on 127.0.0.1 answering from a script and recording every call."""

    def __init__(self, default: Script | None = None) -> None:
        self.default: Script = default or ok()
        self._script: list[Script] = []
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._in_flight = 0
        self.max_in_flight = 0  # the most requests this server was answering at one time
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        # A short poll interval keeps shutdown (teardown) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    # --- configuration ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sync_url(self) -> str:
        return self.base_url + "/mail-proxy/sync"

    def script(self, *answers: Script) -> None:
        """Queue answers for the next calls (after any still queued); then ``default``."""
        with self._lock:
            self._script.extend(answers)

    # --- observation -----------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def reported_items(self) -> list[dict[str, Any]]:
        """Every item received, in arrival order, duplicates included."""
        return [item for call in self.calls for item in (call.items or [])]

    def wait_for_calls(self, n: int, timeout: float = 5.0) -> list[Call]:
        """Block (polling a condition, with a deadline) until at least ``n`` calls arrived."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._calls) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} calls, got {len(self._calls)}")
                self._changed.wait(left)
            return list(self._calls)

    def close(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # --- the handler -----------------------------------------------------------------------

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _next_answer(self, call: Call) -> Reply:
        with self._changed:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self._calls.append(call)
            answer = self._script.pop(0) if self._script else self.default
            self._changed.notify_all()
        return answer(call) if callable(answer) else answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is observable

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's
                # algorithm and the client's delayed ACK would add ~40 ms to every answer.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                call = Call(
                    time=time.time(),
                    method="POST",
                    path=self.path,
                    headers=dict(self.headers.items()),
                    body=body,
                    peer=(self.client_address[0], self.client_address[1]),
                )
                answer = server._next_answer(call)
                closing = bool(answer.delay) and server._closing.wait(answer.delay)
                # Done before the answer goes out: a client may send its next request the
                # moment it has read this one, and that must not count as an overlap.
                server._done()
                if closing:
                    self.close_connection = True
                    return
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    # The client gave up (timeout) and closed the connection: that is the point.
                    self.close_connection = True

            do_PUT = do_POST

        return Handler


@pytest.fixture
def tenant_server() -> Iterator[Callable[..., TenantServer]]:
    """Factory of :class:`TenantServer`; every server is closed at teardown."""
    servers: list[TenantServer] = []

    def make(default: Script | None = None) -> TenantServer:
        srv = TenantServer(default)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.close()


@pytest.fixture
def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens: connecting is refused."""
    return f"http://127.0.0.1:{free_port()}"


__all__ = [
    "Call",
    "Reply",
    "TenantServer",
    "closed_port_url",
    "non_json",
    "not_ok",
    "ok",
    "slow",
    "status",
    "tenant_server",
    "verify_signature",
]
