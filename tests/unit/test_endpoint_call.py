"""The endpoint-mode request (reference §11.2): URL, body, credentials, signature, override."""

from __future__ import annotations

import hashlib
import hmac
import json

from mailproxyd.services.attachments.fetch import endpoint_call

TENANT = {
    "id": "acme",
    "client_base_url": "https://app.acme.example/",
    "client_attachment_path": "/mail-proxy/attachments",
    "client_auth": {"method": "bearer", "token": "tok", "signing_secret": "s" * 16},
}


def _signed(secret: str, header: str, body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


def test_the_tenant_endpoint_with_its_credentials_and_signature() -> None:
    call = endpoint_call(TENANT, "doc_id=42&v=2", None, now=1767225600)
    assert call.url == "https://app.acme.example/mail-proxy/attachments"
    assert json.loads(call.body) == {"storage_path": "doc_id=42&v=2"}
    assert call.headers["Authorization"] == "Bearer tok"
    assert call.headers["Content-Type"] == "application/json"
    assert _signed("s" * 16, call.headers["X-Mail-Proxy-Signature"], call.body)
    assert not call.override


def test_the_attachment_auth_wins() -> None:
    auth = {"method": "basic", "user": "u", "password": "p"}
    call = endpoint_call(TENANT, "x", auth, now=0)
    assert call.headers["Authorization"] == "Basic dTpw"


def test_an_override_url_gets_the_tenant_credentials_only_on_the_same_origin() -> None:
    other = endpoint_call(TENANT, "[https://other.example/files]ref-7", None, now=0)
    assert other.url == "https://other.example/files"
    assert json.loads(other.body) == {"storage_path": "ref-7"}
    assert "Authorization" not in other.headers
    assert other.override
    same = endpoint_call(TENANT, "[https://app.acme.example:443/v2]ref-8", None, now=0)
    assert same.headers["Authorization"] == "Bearer tok"
