"""Every row of the reference §10.3 table through the real driver and a scripted aiosmtpd server,
with the reference §10.5 texts, ``smtp_code`` and ``refused_recipients`` of reference §13.1."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mailproxyd.core.mime import Built, build_message
from mailproxyd.core.smtp_outcome import Kind
from mailproxyd.drivers.smtp import SmtpPool
from tests.helpers import free_port
from tests.smtpservers import PASSWORD, USER, Script, SmtpServer

T, P, S, U = Kind.TEMPORARY, Kind.PERMANENT, Kind.SENT, Kind.UNCERTAIN


def message(*rcpts: str, big: bool = False) -> Built:
    built = build_message(
        {
            "id": "m1",
            "from": "shop@acme.example",
            "to": list(rcpts or ["a@example.org"]),
            "subject": "Hi",
            "body": "hello\n",
            "message_id": "<m1@acme.example>",
        },
        now=1767225605.0,
    )
    if big:  # large enough that a server which stops reading blocks the writer
        filler = (b"x" * 76 + b"\r\n") * (24 * 1024 * 1024 // 78)
        built = Built(built.data + filler, built.mail_from, built.rcpt_to, built.message_id)
    return built


@pytest.fixture
def pool(smtp_ca_file: str) -> Iterator[SmtpPool]:
    # Short timeouts keep the stalled-server cases fast; production uses 10/30/120 s.
    pool = SmtpPool(
        cafile=smtp_ca_file,
        local_hostname="sender.test",
        timeout=1.0,
        connect_timeout=1.0,
        data_timeout=1.0,
    )
    yield pool
    pool.close_blocking()  # the sessions a test left idle


ROWS: list[tuple[str, dict[str, Any], dict[str, Any], Kind, str | None, int | None]] = [
    # id, server options, script, kind, text, smtp_code
    (
        "421 greeting",
        {},
        {"greeting": "421 4.3.2 Service shutting down"},
        T,
        "greeting: 421 4.3.2 Service shutting down",
        421,
    ),
    ("421 MAIL", {}, {"mail": "421 4.3.2 Closing"}, T, "MAIL FROM: 421 4.3.2 Closing", 421),
    (
        "554 greeting",
        {},
        {"greeting": "554 5.3.2 No service here"},
        P,
        "greeting: 554 5.3.2 No service here",
        554,
    ),
    ("greeting timeout", {}, {"greeting_stall": 3.0}, T, "greeting: timed out after 1 s", None),
    ("EHLO 451", {}, {"ehlo": "451 4.3.0 Later"}, T, "EHLO: 451 4.3.0 Later", 451),
    (
        "EHLO+HELO 550",
        {},
        {"ehlo": "550 5.7.1 No", "helo": "550 5.7.1 Not you"},
        P,
        "EHLO: 550 5.7.1 Not you",
        550,
    ),
    (
        "STARTTLS 454",
        {"tls": "starttls"},
        {"starttls": "454 4.7.0 TLS not available"},
        T,
        "STARTTLS: 454 4.7.0 TLS not available",
        454,
    ),
    (
        "AUTH 454",
        {"tls": "starttls", "auth": True},
        {"auth": "454 4.7.0 Temporary authentication failure"},
        T,
        "AUTH: 454 4.7.0 Temporary authentication failure",
        454,
    ),
    (
        "MAIL 553",
        {},
        {"mail": "553 5.1.8 Sender rejected"},
        P,
        "MAIL FROM: 553 5.1.8 Sender rejected",
        553,
    ),
    (
        "MAIL 452",
        {},
        {"mail": "452 4.3.1 Insufficient storage"},
        T,
        "MAIL FROM: 452 4.3.1 Insufficient storage",
        452,
    ),
    ("MAIL malformed", {}, {"mail": "hello there"}, T, "MAIL FROM: malformed reply", None),
    (
        "DATA cmd 554",
        {},
        {"data_command": "554 5.5.1 No valid recipients"},
        P,
        "DATA: 554 5.5.1 No valid recipients",
        554,
    ),
    ("DATA cmd 451", {}, {"data_command": "451 4.3.0 Later"}, T, "DATA: 451 4.3.0 Later", 451),
    (
        "data reply 451",
        {},
        {"data_end": "451 4.3.0 Temporary failure, try again later"},
        T,
        "DATA: 451 4.3.0 Temporary failure, try again later",
        451,
    ),
    (
        "data reply 550",
        {},
        {"data_end": "550 5.7.1 Message rejected"},
        P,
        "DATA: 550 5.7.1 Message rejected",
        550,
    ),
    (
        "data reply multi-line",
        {},
        {"data_end": "550-5.7.1 Rejected\r\n550 5.7.1 see policy"},
        P,
        "DATA: 550 5.7.1 Rejected 5.7.1 see policy",
        550,
    ),
    ("data reply malformed", {}, {"data_end": "thanks"}, T, "DATA: malformed reply", None),
    (
        "no reply: drop",
        {},
        {"drop_after_data": True},
        U,
        "DATA: no reply after the message data was transmitted (outcome unknown)",
        None,
    ),
    (
        "no reply: stall",
        {},
        {"stall_after_data": 3.0},
        U,
        "DATA: no reply after the message data was transmitted (outcome unknown)",
        None,
    ),
]


@pytest.mark.parametrize(
    ("options", "script", "kind", "text", "code"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
async def test_row(
    options: dict[str, Any],
    script: dict[str, Any],
    kind: Kind,
    text: str | None,
    code: int | None,
    smtp_server: Callable[..., SmtpServer],
    pool: SmtpPool,
) -> None:
    tls = options.pop("tls", "none")
    server = smtp_server(tls, **options)
    for name, value in script.items():  # scripted after start: the controller's own probe
        setattr(server.script, name, value)  # connection must not see a stalled greeting
    account = server.account(tls_mode=tls)
    if options.get("auth"):
        account.update(user=USER, password=PASSWORD)
    result = await pool.send("k", account, message())
    assert result.outcome.kind is kind
    assert result.outcome.error_text == text
    assert result.outcome.smtp_code == code
    data_went_out = bool(server.log.messages)
    assert result.outcome.release_slot is (kind in (T, P) and not data_went_out)
    if kind is U:
        assert len(server.log.messages) == 1  # the server did get it: hence "uncertain"


async def test_helo_fallback_after_ehlo_5xx(
    smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    server = smtp_server(script=Script(ehlo="502 5.5.2 Command not recognized"))
    result = await pool.send("k", server.account(), message())
    assert result.outcome.kind is S
    assert server.log.commands[:2] == ["EHLO", "HELO"]
    assert server.log.messages[0].mail_options == []  # no ESMTP, so no SIZE


async def test_connection_refused(pool: SmtpPool) -> None:
    port = free_port()  # nothing listens there
    result = await pool.send(
        "k", {"host": "127.0.0.1", "port": port, "tls_mode": "none"}, message()
    )
    assert result.outcome.kind is T
    assert result.outcome.error_text == f"connect: connection refused (127.0.0.1:{port})"


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listen queue is full: new connection attempts hang until they time out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    held = socket.create_connection(("127.0.0.1", port))  # fills the queue; never accepted
    try:
        yield port
    finally:
        held.close()
        server.close()


async def test_connect_timeout(full_backlog: int, pool: SmtpPool) -> None:
    account = {"host": "127.0.0.1", "port": full_backlog, "tls_mode": "none"}
    result = await pool.send("k", account, message())
    assert result.outcome.kind is T
    assert result.outcome.error_text == f"connect: timed out after 1 s (127.0.0.1:{full_backlog})"


@pytest.fixture
def resetting_server() -> Iterator[int]:
    """Accepts one connection and resets it at once (SO_LINGER 0), before any greeting."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = int(server.getsockname()[1])

    def serve() -> None:
        conn, _ = server.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    thread.join(5)
    server.close()


async def test_reset_at_connect_or_greeting(resetting_server: int, pool: SmtpPool) -> None:
    account = {"host": "127.0.0.1", "port": resetting_server, "tls_mode": "none"}
    result = await pool.send("k", account, message())
    assert result.outcome.kind is T
    # The RST can overtake the end of connect() or arrive as end of stream; all three are the
    # same row of reference §10.3 (connect/greeting, reset → temporary).
    assert result.outcome.error_text in (
        f"connect: connection reset (127.0.0.1:{resetting_server})",
        "greeting: connection reset",
        "greeting: connection closed by server",
    )
    assert result.outcome.smtp_code is None and result.outcome.release_slot


async def test_dns_failure(pool: SmtpPool) -> None:
    account = {"host": "no-such-host.invalid", "port": 25, "tls_mode": "none"}
    result = await pool.send("k", account, message())
    assert result.outcome.kind is T
    assert result.outcome.error_text == "connect: host not found (no-such-host.invalid:25)"


async def test_only_recipient_refused(
    smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    server = smtp_server(script=Script(rcpt={"a@example.org": "550 5.1.1 User unknown"}))
    result = await pool.send("k", server.account(), message("a@example.org"))
    assert result.outcome.kind is P
    assert result.outcome.error_text == "RCPT TO: all recipients refused: 550 5.1.1 User unknown"
    assert result.outcome.smtp_code == 550
    assert result.outcome.refused_recipients == {
        "a@example.org": {"code": 550, "message": "5.1.1 User unknown"}
    }
    assert "DATA" not in server.log.commands and result.outcome.release_slot


async def test_all_refused_mixed_is_temporary(
    smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    script = Script(
        rcpt={"a@example.org": "550 5.1.1 User unknown", "b@example.org": "451 4.2.1 Mailbox busy"}
    )
    server = smtp_server(script=script)
    result = await pool.send("k", server.account(), message("a@example.org", "b@example.org"))
    assert result.outcome.kind is T
    assert result.outcome.error_text == "RCPT TO: all recipients refused: 451 4.2.1 Mailbox busy"
    assert result.outcome.smtp_code == 451
    assert set(result.outcome.refused_recipients) == {"a@example.org", "b@example.org"}


async def test_partial_refusal_is_sent(
    smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    server = smtp_server(script=Script(rcpt={"nobody@example.org": "550 5.1.1 User unknown"}))
    result = await pool.send("k", server.account(), message("a@example.org", "nobody@example.org"))
    assert result.outcome.kind is S and result.outcome.error_text is None
    assert result.outcome.refused_recipients == {
        "nobody@example.org": {"code": 550, "message": "5.1.1 User unknown"}
    }
    assert result.accepted_recipients == 1
    assert server.log.messages[0].rcpt_tos == ["a@example.org"]


async def test_421_at_rcpt_stops_the_transaction(
    smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    server = smtp_server(script=Script(rcpt={"b@example.org": "421 4.3.2 Closing"}))
    result = await pool.send("k", server.account(), message("a@example.org", "b@example.org"))
    assert result.outcome.kind is T
    assert result.outcome.error_text == "RCPT TO: 421 4.3.2 Closing"
    assert server.log.messages == [] and pool.idle_count() == 0


async def test_network_failure_before_the_final_dot_is_temporary(
    smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    server = smtp_server(script=Script(stall_after_354=True))
    result = await pool.send("k", server.account(), message(big=True))
    assert result.outcome.kind is T
    assert result.outcome.error_text == (
        "DATA: timed out after 1 s while transmitting the message data"
    )
    assert result.outcome.release_slot and not result.attempt.data_sent


async def test_uncertain_connection_is_not_reused(
    smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    server = smtp_server(script=Script(drop_after_data=True))
    result = await pool.send("k", server.account(), message())
    assert result.outcome.kind is U and result.outcome.uncertain
    assert not result.outcome.release_slot  # reference §9: the slot stays counted
    assert pool.idle_count() == 0
    server.script.drop_after_data = False
    result = await pool.send("k", server.account(), message())
    assert result.outcome.kind is S and not result.reused
    # The retry carries the same Message-ID, so the receiver can discard the duplicate.
    ids = {m.data.split(b"Message-ID: ")[1].split(b"\r\n")[0] for m in server.log.messages}
    assert ids == {b"<m1@acme.example>"} and len(server.log.messages) == 2
