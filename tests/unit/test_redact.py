"""Command-log redaction (reference §5.7)."""

from __future__ import annotations

import base64
import copy

from mailproxyd.core.redact import MASK, redact_payload


def test_account_and_tenant_secrets() -> None:
    account = {
        "id": "smtp1",
        "host": "h",
        "port": 587,
        "user": "mailer",
        "password": "app-password",
    }
    assert redact_payload(account) == {**account, "password": MASK}
    tenant = {
        "id": "acme",
        "client_auth": {
            "method": "basic",
            "user": "u",
            "password": "pw",
            "token": "tok",
            "signing_secret": "s" * 20,
        },
    }
    assert redact_payload(tenant)["client_auth"] == {
        "method": "basic",
        "user": "u",
        "password": MASK,
        "token": MASK,
        "signing_secret": MASK,
    }
    instance = {"bounce_imap_user": "b", "bounce_imap_password": "imap-secret", "api_token": "tok"}
    assert redact_payload(instance) == {
        "bounce_imap_user": "b",
        "bounce_imap_password": MASK,
        "api_token": MASK,
    }


def test_null_secret_stays_null() -> None:
    assert redact_payload({"password": None}) == {"password": None}


def test_messages_with_attachments() -> None:
    data = base64.b64encode(b"x" * 1000).decode()
    payload = {
        "messages": [
            {
                "id": "m1",
                "attachments": [
                    {"filename": "a.bin", "storage_path": "base64:" + data},
                    {"filename": "b.bin", "storage_path": data.rstrip("="), "fetch_mode": "base64"},
                    {
                        "filename": "c.pdf",
                        "storage_path": "https://x.example/c.pdf",
                        "auth": {"method": "bearer", "token": "att-token"},
                    },
                    {"filename": "d.bin", "storage_path": "base64:!!not base64!!"},
                    "not-an-object",
                ],
            },
            "junk",
        ]
    }
    original = copy.deepcopy(payload)
    redacted = redact_payload(payload)
    attachments = redacted["messages"][0]["attachments"]
    assert attachments[0] == {"filename": "a.bin", "storage_path": "base64:1000 bytes"}
    assert attachments[1]["storage_path"] == "base64:1000 bytes"
    assert attachments[2] == {
        "filename": "c.pdf",
        "storage_path": "https://x.example/c.pdf",
        "auth": {"method": "bearer", "token": MASK},
    }
    assert attachments[3]["storage_path"] == "base64:14 bytes"  # undecodable: its length
    assert attachments[4] == "not-an-object"
    assert redacted["messages"][1] == "junk"
    assert payload == original  # the input is untouched
    assert "att-token" not in repr(redacted) and data not in repr(redacted)


def test_scalars_pass_through() -> None:
    assert redact_payload(None) is None
    assert redact_payload([1, "a", {"token": "t"}]) == [1, "a", {"token": MASK}]


def test_escape_control_keeps_outside_text_on_one_line() -> None:
    from mailproxyd.core.redact import escape_control

    assert escape_control("ok") == "ok"
    assert escape_control("a\r\nb\x1b[31m\x00\x7f\u2028") == "a\\r\\nb\\x1b[31m\\x00\\x7f\\u2028"
    assert escape_control("é ☃ \t") == "é ☃ \\t"
    assert escape_control("x" * 2000) == "x" * 1000 + "…"
    assert escape_control(12) == "12"


def test_the_delivery_line_escapes_the_server_text() -> None:
    from mailproxyd.services.dispatch.record import Completion, delivery_line

    row = {"tenant_id": "acme", "id": "m1", "account_id": "smtp1", "pk": 1}
    item = Completion(row, "error", 0.0, text='DATA: 550 "no"\x1b[2J\nERROR forged')
    line = delivery_line(item)
    assert "\n" not in line and "\x1b" not in line
    assert line.endswith('reason="DATA: 550 \\"no\\"\\x1b[2J\\nERROR forged"')
