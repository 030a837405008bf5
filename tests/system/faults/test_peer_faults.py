"""Broken peers: tenant sync endpoints that hang, reset, answer 500 or 200 with garbage. No event
is lost, and a broken tenant never holds up another one (reference §13.4, §13.5). Broken SMTP
servers: test_smtp_stages.py; attachment endpoints: test_attachment_faults.py; the bounce
mailbox: test_bounce_faults.py."""

from __future__ import annotations

import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.daemon import Daemon, Node, wait_for
from tests.system.faults.harness import Inspector, message
from tests.system.smtpsink import SmtpSink
from tests.tenantservers import TenantServer, non_json, ok, slow, status


class ResetServer:
    """Accepts connections and resets them at once (RST, no HTTP answer)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.accepted = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _run(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self._sock.close()


@pytest.fixture
def reset_server() -> Iterator[ResetServer]:
    server = ResetServer()
    yield server
    server.close()


def _tenant(node: Node, tenant_id: str, base_url: str, smtp_port: int) -> None:
    answer = node.http(
        "POST", "/tenant", json={"id": tenant_id, "name": tenant_id, "client_base_url": base_url}
    )
    assert answer.status_code == 200, answer.text
    answer = node.http(
        "POST",
        "/account",
        json={
            "id": "smtp1",
            "tenant_id": tenant_id,
            "host": "127.0.0.1",
            "port": smtp_port,
            "tls_mode": "none",
            "is_default": True,
        },
    )
    assert answer.status_code == 200, answer.text


def _add(node: Node, tenant_id: str, ids: list[str], account: str = "smtp1") -> None:
    body = {"tenant_id": tenant_id, "messages": [message(i, account_id=account) for i in ids]}
    answer = node.http("POST", "/commands/add-messages", json=body)
    assert answer.status_code == 200 and answer.json()["queued"] == len(ids), answer.text


def test_broken_sync_endpoints_lose_no_event_and_hold_up_no_one(
    daemon: Daemon,
    smtp_sink: SmtpSink,
    tenant_server: Callable[..., TenantServer],
    reset_server: ResetServer,
) -> None:
    node = daemon.serve(env={"GMP_SYNC_TIMEOUT": "2", "GMP_SENDER_PROCESSES": "1"})
    good = tenant_server()
    faulty = {
        "hangs": tenant_server(slow(30)),
        "fails": tenant_server(status(500)),
        "garbage": tenant_server(non_json()),
    }
    _tenant(node, "good", good.base_url, smtp_sink.port)
    for tenant_id, server in faulty.items():
        _tenant(node, tenant_id, server.base_url, smtp_sink.port)
    _tenant(node, "resets", reset_server.base_url, smtp_sink.port)
    for tenant_id in ["good", *faulty, "resets"]:
        _add(node, tenant_id, [f"{tenant_id}-{n}" for n in range(3)])

    # The good tenant gets its reports promptly, whatever the others do.
    started = time.monotonic()
    wait_for(lambda: len(good.reported_items()) >= 3, 30, what="the good tenant's reports")
    assert time.monotonic() - started < 20
    inspector = Inspector(node.env["GMP_DB_PATH"])
    wait_for(lambda: inspector.scalar("SELECT COUNT(*) FROM events") == 15, 60, what="events")
    wait_for(lambda: all(len(s.calls) >= 2 for s in faulty.values()), 30, what="retries")
    wait_for(lambda: reset_server.accepted >= 2, 30, what="retries of the resetting tenant")
    unacked = inspector.rows(
        "SELECT tenant_id, COUNT(*) AS n FROM events WHERE reported_ts IS NULL GROUP BY tenant_id"
    )
    # Nothing was acknowledged by a broken answer.
    assert {r["tenant_id"]: r["n"] for r in unacked} == dict.fromkeys([*faulty, "resets"], 3)

    # The endpoints are repaired: every event arrives, none was dropped.
    for server in faulty.values():
        server.default = ok()
    repaired = tenant_server()
    answer = node.http("PUT", "/tenant/resets", json={"client_base_url": repaired.base_url})
    assert answer.status_code == 200, answer.text
    wait_for(
        lambda: inspector.scalar("SELECT COUNT(*) FROM events WHERE reported_ts IS NULL") == 0,
        120,
        interval=0.5,
        what="every event acknowledged after the repair",
    )
    for tenant_id, server in [*faulty.items(), ("resets", repaired)]:
        got = {i["id"] for i in server.reported_items() if i["event"] == "sent"}
        assert got == {f"{tenant_id}-{n}" for n in range(3)}, tenant_id
    node.signal(signal.SIGTERM)
    assert node.wait_exit(60) == 0
