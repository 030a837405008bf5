"""Pure parts of the CLI: suggestions, the .eml reader, the watch line, JSON output."""

from __future__ import annotations

import base64

import pytest

from mailproxyd.cli.commands.instance_cmds import event_line
from mailproxyd.cli.launcher import edit_distance, suggestion
from mailproxyd.cli.output import strip_nulls
from mailproxyd.core import eml


@pytest.mark.parametrize(
    ("a", "b", "n"),
    [("lst", "list", 1), ("stauts", "status", 1), ("stauts", "start", 2), ("", "ab", 2),
     ("list", "list", 0), ("serve", "stop", 4)],
)  # fmt: skip
def test_edit_distance(a: str, b: str, n: int) -> None:
    assert edit_distance(a, b) == n


def test_suggestion_names_the_closest_command_within_two_edits() -> None:
    words = ["delete", "list", "restart", "serve", "start", "status", "stop"]
    assert suggestion("lst", words) == " (did you mean 'list'?)"
    assert suggestion("stauts", words) == " (did you mean 'status'?)"
    assert suggestion("zzzzzz", words) == ""


def test_eml_html_body_text_alternative_and_attachment() -> None:
    raw = (
        b"From: \"Shop, Inc\" <orders@acme.example>\r\n"
        b"To: Ann <ann@example.org>, bob@example.org\r\n"
        b"Cc: carl@example.org\r\nBcc: dora@example.org\r\n"
        b"Reply-To: help@acme.example\r\n"
        b"Subject: =?utf-8?q?Your_order_=E2=9C=93?=\r\n"
        b"Message-ID: <m1@acme.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B1"\r\n\r\n'
        b"--B1\r\n"
        b'Content-Type: multipart/alternative; boundary="B2"\r\n\r\n'
        b"--B2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain text\r\n"
        b"--B2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html</p>\r\n"
        b"--B2--\r\n"
        b"--B1\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="inv/oice.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"%PDF-1.4 data")
        + b"\r\n--B1--\r\n"
    )  # fmt: skip
    item = eml.message_from_eml(raw)
    assert item["from"] == '"Shop, Inc" <orders@acme.example>'
    assert item["to"] == ["Ann <ann@example.org>", "bob@example.org"]
    assert (item["cc"], item["bcc"], item["reply_to"]) == (
        ["carl@example.org"], ["dora@example.org"], ["help@acme.example"],
    )  # fmt: skip
    assert item["subject"] == "Your order ✓"
    assert item["message_id"] == "<m1@acme.example>"
    assert (item["body"].strip(), item["content_type"]) == ("<p>html</p>", "html")
    [attachment] = item["attachments"]
    assert attachment["filename"] == "inv_oice.pdf"
    assert attachment["fetch_mode"] == "base64" and attachment["mime_type"] == "application/pdf"
    assert base64.b64decode(attachment["storage_path"]) == b"%PDF-1.4 data"


def test_eml_plain_only_and_default_id() -> None:
    raw = b"From: a@b.example\r\nTo: c@d.example\r\nSubject: s\r\n\r\nhello\r\n"
    item = eml.message_from_eml(raw)
    assert (item["body"], item["content_type"]) == ("hello\n", "plain")
    assert "attachments" not in item and "message_id" not in item
    assert eml.default_id(raw) == eml.default_id(bytes(raw))
    assert eml.default_id(raw).startswith("eml-") and len(eml.default_id(raw)) == 20
    assert eml.default_id(raw) != eml.default_id(raw + b"!")


def test_event_line_forms() -> None:
    sent = {"tenant_id": "acme", "id": "MSG-001", "account_id": "smtp1", "priority": 1,
            "sent_ts": 1767225605, "error_ts": None, "error": None, "deferred_ts": None,
            "event": "sent"}  # fmt: skip
    assert event_line(sent) == "2026-01-01 00:00:05 acme MSG-001 sent account=smtp1"
    failed = {**sent, "event": "error", "sent_ts": None, "error_ts": 1767225605, "error": "550 no"}
    assert event_line(failed).endswith('error account=smtp1 reason="550 no"')


def test_strip_nulls_keeps_false_and_empty() -> None:
    assert strip_nulls({"a": None, "b": False, "c": [], "d": {"e": None, "f": 0}}) == {
        "b": False, "c": [], "d": {"f": 0},
    }  # fmt: skip


def test_mailproxyd_is_mail_proxy_serve(capsys: pytest.CaptureFixture[str]) -> None:
    """The ``mailproxyd`` console script runs ``mail-proxy serve`` with its arguments."""
    from mailproxyd.cli import mailproxyd_main, main

    with pytest.raises(SystemExit) as served:
        main(["serve", "--help"])
    expected = capsys.readouterr().out
    with pytest.raises(SystemExit) as daemon:
        mailproxyd_main(["--help"])
    assert daemon.value.code == served.value.code == 0
    assert capsys.readouterr().out == expected
    assert "serve" in expected
