"""The bounce mailbox under attack and under faults, through the real daemon and the pymap IMAP
server: deeply nested multiparts, huge headers, unknown and broken charsets, a DSN whose returned
message is garbage, bounces naming another tenant's message; then the mailbox connection dropped
in the middle of a FETCH and stalled past the IMAP timeout.

Expected (reference §12, §5.6, §13): no crash, no effect on another tenant, unreadable messages
shown in ``bounce_last_error`` and skipped, real bounces recorded once, and the delivery reports
keep flowing whatever the mailbox does.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import bounce_samples as samples
from tests.daemon import Daemon, Node, wait_for
from tests.faultservers import TcpProxy
from tests.imapservers import ImapServer
from tests.system.smtpsink import SmtpSink
from tests.tenantservers import TenantServer

FOLDER = "Bounces"


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def _dsn_head(boundary: str, subject: str = "Undelivered Mail Returned to Sender") -> str:
    return f"""From: MAILER-DAEMON@mx.acme.example (Mail Delivery System)
To: bounces@acme.example
Subject: {subject}
Date: Thu, 1 Jan 2026 01:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"
"""


def nested_multiparts(depth: int) -> bytes:
    """A bounce-looking message nested ``depth`` multiparts deep."""
    head = _dsn_head("b0").replace(
        "multipart/report; report-type=delivery-status", "multipart/mixed"
    )
    parts = [head, ""]
    for level in range(1, depth):
        parts += [f"--b{level - 1}", f'Content-Type: multipart/mixed; boundary="b{level}"', ""]
    parts += [f"--b{depth - 1}", "Content-Type: text/plain", "", "550 5.1.1 deep down", ""]
    for level in reversed(range(depth)):
        parts += [f"--b{level}--", ""]
    return _crlf("\n".join(parts))


def huge_headers(original: bytes) -> bytes:
    """A real DSN for ``original`` behind 5,000 header fields and a 1 MB Subject."""
    dsn = samples.postfix_dsn(original, bounce_id="HUGE000001")
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"y" * 100) for n in range(5000))
    subject = b"X-Long: " + b"z" * (1024 * 1024) + b"\r\n"
    return filler + subject + dsn


def broken_charsets(original: bytes) -> bytes:
    """A DSN for ``original`` whose text parts declare charsets nobody knows, with bytes that
    are not valid in any declared one, and an encoded-word Subject in a bogus charset."""
    head = _dsn_head("cs", "=?x-no-such-charset?B?w7xiZXI=?= Undeliverable")
    original_headers = original.split(b"\r\n\r\n", 1)[0]
    body = (
        _crlf(head + '\n--cs\nContent-Type: text/plain; charset="x-no-such-charset"\n\n')
        + b"\xff\xfe\xfa broken \xc3\x28 text\r\n"
        + _crlf(
            '\n--cs\nContent-Type: message/delivery-status; charset="utf-7-bogus"\n\n'
            "Reporting-MTA: dns; mx.acme.example\n\n"
            "Final-Recipient: rfc822; ann@example.org\nAction: failed\nStatus: 5.1.1\n"
        )
        + b"Diagnostic-Code: smtp; 550 5.1.1 \xff\xfe unknown \xc3\x28 user\r\n"
        + _crlf('\n--cs\nContent-Type: text/rfc822-headers; charset="x-bogus"\n\n')
        + original_headers
        + _crlf("\n\n--cs--\n")
    )
    return body


def garbage_original() -> bytes:
    """A DSN whose returned message part is binary garbage."""
    head = _dsn_head("gb")
    return (
        _crlf(
            head + "\n--gb\nContent-Type: text/plain\n\nDelivery failed.\n"
            "\n--gb\nContent-Type: message/delivery-status\n\n"
            "Final-Recipient: rfc822; ann@example.org\nAction: failed\nStatus: 5.1.1\n"
            "\n--gb\nContent-Type: message/rfc822\n\n"
        )
        + bytes(range(256)) * 64
        + b"\r\n\r\n\x00\x00--gb\r\n--\r\n"
        + _crlf("\n--gb--\n")
    )


def forged(message_id: str, other_tenants_id: str) -> bytes:
    """A DSN naming one message by Message-ID and another tenant's message by client id."""
    original = samples.original_message(message_id, other_tenants_id)
    return samples.postfix_dsn(original, bounce_id="F0F0F0F0F0")


def _tenant(node: Node, tenant_id: str, sync_url: str, smtp_port: int) -> None:
    answer = node.http(
        "POST", "/tenant", json={"id": tenant_id, "name": tenant_id, "client_base_url": sync_url}
    )
    assert answer.status_code == 200, answer.text
    account = {"id": "smtp1", "tenant_id": tenant_id, "host": "127.0.0.1", "port": smtp_port,
               "tls_mode": "none", "is_default": True}  # fmt: skip
    answer = node.http("POST", "/account", json=account)
    assert answer.status_code == 200, answer.text


def _add(node: Node, tenant_id: str, *keys: str) -> None:
    messages = [
        {"id": k, "account_id": "smtp1", "from": "orders@acme.example", "to": ["ann@example.org"],
         "subject": "Your order", "body": "Thanks!"}
        for k in keys
    ]  # fmt: skip
    answer = node.http(
        "POST", "/commands/add-messages", json={"tenant_id": tenant_id, "messages": messages}
    )
    assert answer.status_code == 200 and answer.json()["queued"] == len(keys), answer.text


def _enable(node: Node, host: str, port: int, ssl: bool, **changes: Any) -> None:
    body = {
        "bounce_enabled": True,
        "bounce_imap_host": host,
        "bounce_imap_port": port,
        "bounce_imap_ssl": ssl,
        "bounce_imap_user": "bounces@acme.example",
        "bounce_imap_password": "imap-secret",
        "bounce_imap_folder": FOLDER,
        "bounce_poll_interval": 3600,
        **changes,
    }
    answer = node.http("PUT", "/instance", json=body)
    assert answer.status_code == 200, answer.text


def _reload(node: Node) -> None:
    answer = node.http("POST", "/instance/reload-bounce")
    assert answer.status_code == 200, answer.text


def _bounces(sync: TenantServer) -> list[dict[str, Any]]:
    return [i for i in sync.reported_items() if i["event"] == "bounce"]


def _crashes(node: Node) -> list[str]:
    return [line for line in node.log().splitlines() if "Traceback" in line or "exited" in line]


def test_hostile_mime_in_the_bounce_mailbox_breaks_nothing_and_crosses_no_tenant(
    daemon: Daemon,
    smtp_sink: SmtpSink,
    tenant_server: Callable[..., TenantServer],
    imap_server: Callable[..., ImapServer],
    smtp_ca_file: str,
) -> None:
    imap = imap_server()
    imap.create(FOLDER)
    acme, other = tenant_server(), tenant_server()
    node = daemon.serve(env={"SSL_CERT_FILE": smtp_ca_file, "GMP_SENDER_PROCESSES": "1"})
    _tenant(node, "acme", acme.base_url, smtp_sink.port)
    _tenant(node, "other", other.base_url, smtp_sink.port)
    _enable(node, imap.host, imap.ssl_port, True)
    _add(node, "acme", "a1", "a2", "a3", "a4", "shared")
    _add(node, "other", "o1", "shared")
    wait_for(lambda: len(smtp_sink.received()) >= 7, 30, what="seven messages sent")
    sent: dict[str, bytes] = {}
    for received in smtp_sink.received():
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in received.data.split(b"\r\n")
            if line.lower().startswith(b"x-genro-mail-id:")
        )
        sent.setdefault(key, received.data)
    a1_message_id = next(
        line.split(b":", 1)[1].strip().decode()
        for line in sent["a1"].split(b"\r\n")
        if line.lower().startswith(b"message-id:")
    )
    hostile = {
        "nested": nested_multiparts(300),  # pymap itself fails to store ~900 levels
        "huge": huge_headers(sent["a2"]),
        "charsets": broken_charsets(sent["a3"]),
        "garbage": garbage_original(),
        "forged": forged(a1_message_id, "o1"),  # a1 by Message-ID, other's o1 by client id
        "ambiguous": samples.postfix_dsn(
            samples.original_message("<unknown@elsewhere.example>", "shared"), bounce_id="AB12"
        ),
        "malformed": samples.malformed_bounce(),
    }
    uids = {name: imap.append(raw, FOLDER) for name, raw in hostile.items()}
    uids["real"] = imap.append(samples.postfix_dsn(sent["a4"]), FOLDER)
    _reload(node)
    wait_for(
        lambda: {i["id"] for i in _bounces(acme)} >= {"a4"}, 60, what="the real bounce reported"
    )
    wait_for(lambda: all("\\Seen" in f for f in imap.flags(FOLDER).values()), 30, what="seen")
    got = {i["id"]: i for i in _bounces(acme)}
    assert set(got) == {"a1", "a2", "a3", "a4"}, got
    assert len(_bounces(acme)) == 4
    assert got["a3"]["bounce_code"] == "5.1.1" and got["a3"]["bounce_type"] == "hard"
    # Nothing reached the other tenant, and its records are untouched.
    assert _bounces(other) == []
    for key in ("o1", "shared"):
        record = node.http("GET", f"/message/{key}", params={"tenant_id": "other"}).json()
        assert record.get("bounce_type") is None, record
    record = node.http("GET", "/message/shared", params={"tenant_id": "acme"}).json()
    assert record.get("bounce_type") is None, record
    instance = node.http("GET", "/instance").json()
    assert f"message UID {uids['malformed']} could not be parsed" in str(
        instance.get("bounce_last_error")
    ), instance
    log = node.log()
    assert f"bounce skipped uid={uids['ambiguous']}: several retained messages match" in log
    assert _crashes(node) == [], _crashes(node)
    # The reports still flow after all that.
    _add(node, "acme", "after")
    wait_for(lambda: any(i["id"] == "after" for i in acme.reported_items()), 30, what="after")
    node.signal(signal.SIGTERM)
    assert node.wait_exit(60) == 0


@pytest.fixture
def proxies() -> Iterator[list[TcpProxy]]:
    made: list[TcpProxy] = []
    yield made
    for proxy in made:
        proxy.close()


def test_a_mailbox_that_drops_or_stalls_mid_fetch_is_shown_and_stops_nothing(
    daemon: Daemon,
    smtp_sink: SmtpSink,
    tenant_server: Callable[..., TenantServer],
    imap_server: Callable[..., ImapServer],
    proxies: list[TcpProxy],
) -> None:
    imap = imap_server()
    imap.create(FOLDER)
    # The administration port speaks plain IMAP without STARTTLS: the proxy sees the commands.
    proxy = TcpProxy((imap.host, imap.admin_port), b"FETCH", "drop")
    proxies.append(proxy)
    sync = tenant_server()
    node = daemon.serve(env={"GMP_SENDER_PROCESSES": "1"})
    _tenant(node, "acme", sync.base_url, smtp_sink.port)
    _add(node, "acme", "m1")
    wait_for(lambda: smtp_sink.received(), 30, what="m1 sent")
    imap.append(samples.postfix_dsn(smtp_sink.received()[0].data), FOLDER)
    _enable(node, "127.0.0.1", proxy.port, False)

    def instance() -> dict[str, Any]:
        return dict(node.http("GET", "/instance").json())

    _reload(node)
    failed = wait_for(
        lambda: (i := instance()).get("bounce_last_error") and i, 30, what="the dropped FETCH"
    )
    assert proxy.faults >= 1
    assert _bounces(sync) == []
    assert not any("\\Seen" in f for f in imap.flags(FOLDER).values())  # nothing was consumed

    # Stalled mid-FETCH: the poll times out; meanwhile the reports go on.
    proxy.action = "stall"
    before = proxy.faults
    _reload(node)
    wait_for(lambda: proxy.faults > before, 30, what="a stalled FETCH")
    _add(node, "acme", "m2")
    wait_for(lambda: any(i["id"] == "m2" for i in sync.reported_items()), 20, what="m2 reported")
    stalled = wait_for(
        lambda: (
            (i := instance()).get("bounce_last_error_ts", 0) > failed["bounce_last_error_ts"] and i
        ),
        60,
        what="the stalled FETCH shown",
    )
    assert "tim" in str(stalled["bounce_last_error"]).lower(), stalled
    assert _bounces(sync) == []

    # The mailbox recovers: the bounce is recorded once, the error cleared.
    proxy.armed.clear()
    _reload(node)
    wait_for(lambda: _bounces(sync), 30, what="the bounce after recovery")
    assert [i["id"] for i in _bounces(sync)] == ["m1"]
    wait_for(lambda: "bounce_last_error" not in instance(), 10, what="the error cleared")
    assert _crashes(node) == [], _crashes(node)
    node.signal(signal.SIGTERM)
    assert node.wait_exit(60) == 0
