"""A tenant's attachment endpoint that hangs, resets, answers 500, answers something that is not
HTTP, cuts its body short, or redirects to a private or link-local address. Every message ends
with ``Attachment fetch failed for <filename>: <reason>``: a fault that may pass by itself is
deferred and retried, every other one fails at once, a cut-short body is never mailed, and a
healthy tenant beside them is not held up (reference §11.2, §11.3, §11.5, §10.4)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.daemon import Daemon, Node, wait_for
from tests.faultservers import RawHttpServer
from tests.system.faults.harness import message
from tests.system.smtpsink import SmtpSink
from tests.tenantservers import Reply, TenantServer

TIMEOUT = 2  # GMP_ATTACHMENT_TIMEOUT
FILE = "statement.pdf"
ATTACHMENT_PATH = "/mail-proxy/attachments"  # the default client_attachment_path


def _http(status: str, body: bytes, *headers: str, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body) if length is None else length}"]
    return ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode() + body


# tenant: (raw answer, what follows it, expected class, expected reason)
FAULTS: dict[str, tuple[bytes, str, str, str]] = {
    "hangs": (b"", "hang", "temporary", f"timed out after {TIMEOUT} s"),
    "resets": (b"", "reset", "temporary", "connection reset"),
    "fails": (_http("500 Internal Server Error", b"oops"), "close", "temporary", "HTTP 500"),
    "busy": (_http("503 Service Unavailable", b"", "Retry-After: 1"), "close", "temporary",
             "HTTP 503"),
    "missing": (_http("404 Not Found", b"no such document"), "close", "permanent", "HTTP 404"),
    "truncated": (_http("200 OK", b"%PDF-1.7 only the first bytes", length=5000), "close",
                  "temporary", "connection reset"),
    "not-http": (b"SSH-2.0-OpenSSH_9.6 this is no web server\r\n\r\n", "close", "temporary",
                 "connection reset"),
    "private": (_http("302 Found", b"", "Location: http://10.255.255.1/doc.pdf"), "close",
                "permanent", "address not allowed (10.255.255.1)"),
    "metadata": (_http("302 Found", b"", "Location: http://169.254.169.254/latest/meta-data/"),
                 "close", "permanent", "address not allowed (169.254.169.254)"),
}  # fmt: skip


@pytest.fixture
def raw_http() -> Iterator[Callable[..., RawHttpServer]]:
    made: list[RawHttpServer] = []

    def make(answer: bytes, after: str = "close") -> RawHttpServer:
        server = RawHttpServer(answer, after)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def _tenant(node: Node, tenant_id: str, base_url: str, smtp_port: int) -> None:
    answer = node.http(
        "POST", "/tenant", json={"id": tenant_id, "name": tenant_id, "client_base_url": base_url}
    )
    assert answer.status_code == 200, answer.text
    account = {"id": "smtp1", "tenant_id": tenant_id, "host": "127.0.0.1", "port": smtp_port,
               "tls_mode": "none", "is_default": True}  # fmt: skip
    answer = node.http("POST", "/account", json=account)
    assert answer.status_code == 200, answer.text
    attachment = {"filename": FILE, "storage_path": "doc_id=42", "fetch_mode": "endpoint"}
    body = {
        "tenant_id": tenant_id,
        "messages": [message(f"{tenant_id}-1", attachments=[attachment])],
    }
    answer = node.http("POST", "/commands/add-messages", json=body)
    assert answer.status_code == 200 and answer.json()["queued"] == 1, answer.text


def _record(node: Node, tenant_id: str) -> dict[str, Any]:
    answer = node.http("GET", f"/message/{tenant_id}-1", params={"tenant_id": tenant_id})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_broken_attachment_endpoints_end_every_message_with_the_right_text(
    daemon: Daemon,
    smtp_sink: SmtpSink,
    tenant_server: Callable[..., TenantServer],
    raw_http: Callable[..., RawHttpServer],
) -> None:
    node = daemon.serve(
        env={
            "GMP_MAX_RETRIES": "1",
            "GMP_RETRY_DELAYS": "1",
            "GMP_RETRY_JITTER": "0",
            "GMP_ATTACHMENT_TIMEOUT": str(TIMEOUT),
            "GMP_SENDER_PROCESSES": "1",
        }
    )
    servers = {}
    for tenant_id, (answer, after, _, _) in FAULTS.items():
        servers[tenant_id] = raw_http(answer, after)
        _tenant(node, tenant_id, servers[tenant_id].base_url, smtp_sink.port)
    good = tenant_server(lambda call: Reply(body=b"%PDF-1.7 fine", content_type="application/pdf"))
    _tenant(node, "good", good.base_url, smtp_sink.port)

    def settled() -> bool:
        return all(_record(node, t)["status"] in ("sent", "error") for t in [*FAULTS, "good"])

    wait_for(settled, 90, interval=0.5, what="every message settled")
    assert _record(node, "good")["status"] == "sent"
    problems = []
    for tenant_id, (_, _, kind, reason) in FAULTS.items():
        record = _record(node, tenant_id)
        events = [h["event_type"] for h in record["history"]]
        text = f"Attachment fetch failed for {FILE}: {reason}"
        want = ["deferred", "error"] if kind == "temporary" else ["error"]
        final = f"Max retries (1) exceeded: {text}" if kind == "temporary" else text
        error = str(record.get("error"))
        if record["status"] != "error" or events != want:
            problems.append(f"{tenant_id}: {record['status']} {events}, want error {want}: {error}")
        elif error != final:
            problems.append(f"{tenant_id}: {error!r}, want {final!r}")
        # A temporary fault is fetched again by the retry, a permanent one never; the
        # redirect targets are never reached (no server of ours listens there anyway).
        tries = servers[tenant_id].count(ATTACHMENT_PATH)
        if tries != (2 if kind == "temporary" else 1):
            problems.append(f"{tenant_id}: {tries} requests")
    assert problems == [], "\n".join(problems)
    # Only the good tenant's message reached the SMTP server: nothing cut short was mailed.
    assert len(smtp_sink.received()) == 1
    node.signal(signal.SIGTERM)
    assert node.wait_exit(60) == 0
