"""Attachments end to end (contract §11, §5.8): the real daemon, a real SMTP server, real
HTTP servers as attachment sources, the received e-mail parsed back."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailproxyd.core import largefile
from mailproxyd.core.crypto import derive_key, new_token, parse_key
from tests.daemon import Daemon, Node, wait_for
from tests.fileservers import FileServer, Serve, file_server  # noqa: F401
from tests.system.smtpsink import SmtpSink
from tests.tenantservers import Call, Reply, TenantServer, verify_signature

SECRET = "whsec_0123456789abcdef"


def _setup(
    node: Node,
    sink: SmtpSink,
    *,
    base_url: str | None = None,
    client_auth: dict[str, Any] | None = None,
    large_file_config: dict[str, Any] | None = None,
    tenant_id: str = "acme",
) -> None:
    tenant: dict[str, Any] = {"id": tenant_id, "name": "Acme"}
    if base_url:
        tenant["client_base_url"] = base_url
    if client_auth:
        tenant["client_auth"] = client_auth
    if large_file_config:
        tenant["large_file_config"] = large_file_config
    answer = node.http("POST", "/tenant", json=tenant)
    assert answer.status_code == 200, answer.text
    account = {
        "id": "smtp1",
        "tenant_id": tenant_id,
        "host": "127.0.0.1",
        "port": sink.port,
        "tls_mode": "none",
        "is_default": True,
    }
    answer = node.http("POST", "/account", json=account)
    assert answer.status_code == 200, answer.text


def _send(
    node: Node,
    message_id: str,
    attachments: list[dict[str, Any]],
    *,
    tenant_id: str = "acme",
    body: str = "See attached.",
    **extra: Any,
) -> None:
    message = {
        "id": message_id,
        "account_id": "smtp1",
        "from": "orders@acme.example",
        "to": ["ann@example.org"],
        "subject": "Your documents",
        "body": body,
        "attachments": attachments,
        **extra,
    }
    answer = node.http(
        "POST", "/commands/add-messages", json={"tenant_id": tenant_id, "messages": [message]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["queued"] == 1, answer.text


def _message(node: Node, message_id: str, tenant_id: str = "acme") -> dict[str, Any]:
    answer = node.http("GET", f"/messages/{message_id}", params={"tenant_id": tenant_id})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _wait_status(node: Node, message_id: str, *statuses: str, timeout: float = 20) -> dict:
    def done() -> dict[str, Any] | None:
        found = _message(node, message_id)
        return found if found.get("status") in statuses else None

    return wait_for(done, timeout, what=f"{message_id} to become {statuses}")


def _received(sink: SmtpSink, count: int = 1) -> list[email.message.EmailMessage]:
    wait_for(lambda: len(sink.received()) >= count, 20, what="the e-mail at the SMTP server")
    return [
        email.message_from_bytes(r.data, policy=email.policy.default)  # type: ignore[misc]
        for r in sink.received()
    ]


def _attachments(msg: email.message.EmailMessage) -> dict[str, bytes]:
    return {
        str(part.get_filename()): part.get_payload(decode=True) for part in msg.iter_attachments()
    }


def _text(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(("plain", "html"))
    assert part is not None
    return str(part.get_content())


# ------------------------------------------------------------------ the four modes


def test_http_url_attachment_bytes_arrive(
    daemon: Daemon, smtp_sink: SmtpSink, file_server: Callable[..., FileServer]
) -> None:
    content = os.urandom(150_000)  # above the disk threshold: streamed to a temporary file
    files = file_server({"/invoice.pdf": Serve(body=content)})
    node = daemon.serve(env={"GMP_ALLOW_PRIVATE_NETWORKS": "true"})
    _setup(node, smtp_sink)
    _send(node, "h1", [{"filename": "invoice.pdf", "storage_path": files.url("/invoice.pdf")}])
    [msg] = _received(smtp_sink)
    assert _attachments(msg) == {"invoice.pdf": content}
    assert [r.method for r in files.requests] == ["GET"]
