"""The SMTP driver against real aiosmtpd servers: what arrives, TLS, AUTH, pooling (reference §7, §10)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

import pytest
import trio

from mailproxyd.core.mime import Built, Part, build_message
from mailproxyd.core.smtp_outcome import Kind
from mailproxyd.drivers.smtp import SmtpAccount, SmtpPool
from tests.smtpservers import PASSWORD, USER, SmtpServer

NOW = 1767225605.0

FULL: dict[str, Any] = {
    "id": "MSG-002",
    "from": "Jürgen Müller <orders@acme.example>",
    "to": ["b@example.org", '"Smith, Ann" <c@example.org>'],
    "cc": ["Dee Ďurová <d@example.org>"],
    "bcc": ["hidden@example.net"],
    "reply_to": ["replies@acme.example"],
    "return_path": "bounce@acme.example",
    "subject": "Grüße — your order ✓",
    "body": "<p>Grüße</p>\n<p>line two</p>\n",
    "content_type": "html",
    "headers": {"X-Campaign": "spring", "X-Count": 3},
    "message_id": "<9f1c2b7e4d3a4e5f8a6b0c1d2e3f4a5b@acme.example>",
}
PARTS = [Part("invoice.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 8), Part("naïve.txt", b"hi\n")]


def simple(mail_id: str = "m1", **over: Any) -> Built:
    payload = {
        "id": mail_id,
        "from": "shop@acme.example",
        "to": ["a@example.org"],
        "subject": "Hi",
        "body": "hello\n",
        "message_id": f"<{mail_id}@acme.example>",
        **over,
    }
    return build_message(payload, now=NOW)


@pytest.fixture
def pool(smtp_ca_file: str) -> Iterator[SmtpPool]:
    pool = SmtpPool(cafile=smtp_ca_file, local_hostname="sender.test", timeout=5.0)
    yield pool
    pool.close_blocking()  # the sessions a test left idle


def parse(data: bytes) -> EmailMessage:
    msg = BytesParser(policy=default_policy).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    return msg


async def test_full_featured_message_arrives_intact(smtp_plain: SmtpServer, pool: SmtpPool) -> None:
    built = build_message(FULL, now=NOW, attachments=PARTS)
    result = await pool.send("k", smtp_plain.account(), built)
    assert result.outcome.kind is Kind.SENT, result.outcome
    assert result.accepted_recipients == 4

    (got,) = smtp_plain.log.messages
    assert got.mail_from == "bounce@acme.example"
    assert got.rcpt_tos == ["b@example.org", "c@example.org", "d@example.org", "hidden@example.net"]
    assert f"SIZE={built.size}" in got.mail_options
    assert b"hidden@example.net" not in got.data
    assert got.data.rstrip(b"\r\n") == built.data.rstrip(b"\r\n")

    msg = parse(got.data)
    assert msg["Bcc"] is None
    assert [(a.display_name, a.addr_spec) for a in msg["From"].addresses] == [
        ("Jürgen Müller", "orders@acme.example")
    ]
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [
        ("", "b@example.org"),
        ("Smith, Ann", "c@example.org"),
    ]
    assert [(a.display_name, a.addr_spec) for a in msg["Cc"].addresses] == [
        ("Dee Ďurová", "d@example.org")
    ]
    assert msg["Reply-To"] == "replies@acme.example"
    assert msg["Subject"] == FULL["subject"]
    assert msg["Message-ID"] == FULL["message_id"]
    assert msg["X-Genro-Mail-ID"] == "MSG-002"
    assert list(msg.keys())[-1] == "X-Genro-Mail-ID"
    assert (msg["X-Campaign"], msg["X-Count"]) == ("spring", "3")
    assert msg["Date"] == "Thu, 01 Jan 2026 00:00:05 +0000"
    body = msg.get_body()
    assert body is not None and body.get_content_type() == "text/html"
    assert body.get_content() == FULL["body"].replace("\n", "\r\n")
    atts = list(msg.iter_attachments())
    assert [(a.get_filename(), a.get_payload(decode=True)) for a in atts] == [
        (p.filename, p.content) for p in PARTS
    ]
    assert [a.get_content_type() for a in atts] == ["application/pdf", "text/plain"]


async def test_smtputf8_used_when_needed(
    smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    server = smtp_server("none")
    built = simple(to=["josé@exämple.org"])
    result = await pool.send("k", server.account(), built)
    assert result.outcome.kind is Kind.SENT
    (got,) = server.log.messages
    assert got.rcpt_tos == ["josé@exämple.org"]
    assert "SMTPUTF8" in got.mail_options and "BODY=8BITMIME" in got.mail_options

    no_utf8 = smtp_server("none", enable_SMTPUTF8=False)
    result = await pool.send("k2", no_utf8.account(), built)
    assert result.outcome.kind is Kind.PERMANENT
    assert result.outcome.error_text == "MAIL FROM: SMTPUTF8 required but not offered by server"
    assert no_utf8.log.messages == []

    # A non-ASCII domain alone needs no SMTPUTF8: it is sent in IDNA form.
    result = await pool.send("k2", no_utf8.account(), simple(to=["ann@exämple.org"]))
    assert result.outcome.kind is Kind.SENT
    assert no_utf8.log.messages[0].rcpt_tos == ["ann@xn--exmple-cua.org"]


async def test_dot_stuffing(smtp_plain: SmtpServer, pool: SmtpPool) -> None:
    built = simple(body=".starts with a dot\n..two\n.\nend")
    result = await pool.send("k", smtp_plain.account(), built)
    assert result.outcome.kind is Kind.SENT
    assert parse(smtp_plain.log.messages[0].data).get_content() == (
        ".starts with a dot\r\n..two\r\n.\r\nend\r\n"
    )


# --------------------------------------------------------------------------- TLS and AUTH


async def test_starttls_with_auth(smtp_starttls_auth: SmtpServer, pool: SmtpPool) -> None:
    account = smtp_starttls_auth.account(tls_mode="starttls", user=USER, password=PASSWORD)
    result = await pool.send("k", account, simple())
    assert result.outcome.kind is Kind.SENT, result.outcome
    assert smtp_starttls_auth.log.auth_attempts == [(USER, True)]
    assert smtp_starttls_auth.log.messages[0].tls
    assert smtp_starttls_auth.log.messages[0].login == USER


async def test_opportunistic_upgrades_when_offered(
    smtp_starttls_auth: SmtpServer, pool: SmtpPool
) -> None:
    account = smtp_starttls_auth.account(tls_mode="opportunistic", user=USER, password=PASSWORD)
    result = await pool.send("k", account, simple())
    assert result.outcome.kind is Kind.SENT
    assert smtp_starttls_auth.log.auth_attempts == [(USER, True)]


async def test_opportunistic_never_sends_credentials_in_clear(
    smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    # The server offers AUTH without TLS; the client must refuse to use it.
    server = smtp_server("none", auth=True, auth_require_tls=False)
    account = server.account(tls_mode="opportunistic", user=USER, password=PASSWORD)
    result = await pool.send("k", account, simple())
    assert result.outcome.kind is Kind.PERMANENT
    assert result.outcome.error_text == (
        "STARTTLS: not offered; refusing to send credentials in clear "
        "(set tls_mode to none to allow)"
    )
    assert "AUTH" not in server.log.commands and server.log.auth_attempts == []
    assert server.log.messages == []
    # Without credentials, opportunistic continues in clear.
    result = await pool.send("k", server.account(tls_mode="opportunistic"), simple())
    assert result.outcome.kind is Kind.SENT and not server.log.messages[0].tls
    # tls_mode none allows AUTH in clear when the operator asks for it.
    result = await pool.send(
        "k2", server.account(tls_mode="none", user=USER, password=PASSWORD), simple()
    )
    assert result.outcome.kind is Kind.SENT
    assert server.log.auth_attempts == [(USER, False)]


async def test_none_never_uses_starttls(smtp_starttls_auth: SmtpServer, pool: SmtpPool) -> None:
    result = await pool.send("k", smtp_starttls_auth.account(tls_mode="none"), simple())
    assert result.outcome.kind is Kind.SENT
    assert "STARTTLS" not in smtp_starttls_auth.log.commands
    assert not smtp_starttls_auth.log.messages[0].tls


async def test_starttls_required_but_not_offered(smtp_plain: SmtpServer, pool: SmtpPool) -> None:
    result = await pool.send("k", smtp_plain.account(tls_mode="starttls"), simple())
    assert result.outcome.kind is Kind.PERMANENT
    assert result.outcome.error_text == "STARTTLS: not offered by server"
    assert smtp_plain.log.messages == []


async def test_implicit_tls(smtp_implicit: SmtpServer, pool: SmtpPool) -> None:
    account = smtp_implicit.account(tls_mode="implicit", user=USER, password=PASSWORD)
    result = await pool.send("k", account, simple())
    assert result.outcome.kind is Kind.SENT, result.outcome
    assert smtp_implicit.log.messages[0].tls
    assert smtp_implicit.log.auth_attempts == [(USER, True)]


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_unknown_ca_fails_unless_verification_is_off(
    tls: str, smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    server = smtp_server(tls, untrusted=True)
    result = await pool.send("k", server.account(tls_mode=tls), simple())
    assert result.outcome.kind is Kind.PERMANENT
    stage = "STARTTLS" if tls == "starttls" else "connect"
    assert result.outcome.error_text is not None
    assert result.outcome.error_text.startswith(f"{stage}: certificate verification failed: ")
    assert server.log.messages == []

    result = await pool.send("k", server.account(tls_mode=tls, tls_verify=False), simple())
    assert result.outcome.kind is Kind.SENT
    assert server.log.messages[0].tls


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_host_name_is_verified(
    tls: str, smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    # A certificate from the trusted CA, but for another name than the one connected to.
    server = smtp_server(tls, cert_names=("mail.other.example",))
    result = await pool.send("k", server.account(tls_mode=tls), simple())
    assert result.outcome.kind is Kind.PERMANENT
    assert "certificate verification failed" in (result.outcome.error_text or "")
    result = await pool.send("k", server.account(tls_mode=tls, tls_verify=False), simple())
    assert result.outcome.kind is Kind.SENT


async def test_system_trust_store_honours_ssl_cert_file(
    smtp_implicit: SmtpServer, smtp_ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", smtp_ca_file)
    pool = SmtpPool(local_hostname="sender.test", timeout=5.0)  # no cafile: default context
    result = await pool.send("k", smtp_implicit.account(tls_mode="implicit"), simple())
    await pool.aclose()
    assert result.outcome.kind is Kind.SENT, result.outcome


async def test_best_auth_mechanism_is_used(
    smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    both = smtp_server("starttls", auth=True)  # offers LOGIN and PLAIN
    account = both.account(tls_mode="starttls", user=USER, password=PASSWORD)
    assert (await pool.send("a", account, simple())).outcome.kind is Kind.SENT
    assert both.log.auth_mechanisms == ["PLAIN"]

    login_only = smtp_server("starttls", auth=True, auth_exclude_mechanism=["PLAIN"])
    account = login_only.account(tls_mode="starttls", user=USER, password=PASSWORD)
    assert (await pool.send("b", account, simple())).outcome.kind is Kind.SENT
    assert login_only.log.auth_mechanisms == ["LOGIN"]


async def test_wrong_password(smtp_starttls_auth: SmtpServer, pool: SmtpPool) -> None:
    account = smtp_starttls_auth.account(tls_mode="starttls", user=USER, password="wrong")
    result = await pool.send("k", account, simple())
    assert result.outcome.kind is Kind.PERMANENT
    assert result.outcome.error_text == "AUTH: 535 5.7.8 Authentication credentials invalid"
    assert result.outcome.smtp_code == 535


async def test_no_common_auth_mechanism(
    smtp_server: Callable[..., SmtpServer], pool: SmtpPool
) -> None:
    server = smtp_server("starttls", xtest_auth_only=True)
    account = server.account(tls_mode="starttls", user=USER, password=PASSWORD)
    result = await pool.send("k", account, simple())
    assert result.outcome.kind is Kind.PERMANENT
    assert result.outcome.error_text == "AUTH: no common mechanism (server offers: XTEST)"
    assert "AUTH" not in server.log.commands


# --------------------------------------------------------------------------- pooling


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_connection_reused_with_rset(smtp_plain: SmtpServer, smtp_ca_file: str) -> None:
    pool = SmtpPool(cafile=smtp_ca_file, local_hostname="sender.test", timeout=5.0)
    for i in range(3):
        result = await pool.send("acme/main", smtp_plain.account(), simple(f"m{i}"))
        assert result.outcome.kind is Kind.SENT
        assert result.reused is (i > 0)
    assert pool.connections_opened == 1
    assert smtp_plain.log.sessions == 1
    assert smtp_plain.log.count("RSET") == 2
    assert len(smtp_plain.log.messages) == 3
    await pool.aclose()
    assert smtp_plain.log.count("QUIT") == 1
    assert pool.idle_count() == 0


async def test_pools_are_per_account_key(smtp_plain: SmtpServer, pool: SmtpPool) -> None:
    # Two tenants with an account called "main" never share a connection.
    await pool.send(("acme", "main"), smtp_plain.account(), simple("a"))
    await pool.send(("beta", "main"), smtp_plain.account(), simple("b"))
    assert pool.connections_opened == 2
    assert pool.idle_count(("acme", "main")) == 1 and pool.idle_count(("beta", "main")) == 1
    assert await pool.close_idle(("acme", "main")) == 1
    assert pool.idle_count(("acme", "main")) == 0 and pool.idle_count(("beta", "main")) == 1
    assert smtp_plain.log.count("QUIT") == 1


async def test_idle_connection_closed_after_ttl(smtp_plain: SmtpServer, smtp_ca_file: str) -> None:
    clock = FakeClock()
    pool = SmtpPool(cafile=smtp_ca_file, local_hostname="sender.test", timeout=5.0, clock=clock)
    account = smtp_plain.account(ttl=60)
    await pool.send("k", account, simple("a"))
    clock.now += 59
    assert (await pool.send("k", account, simple("b"))).reused
    clock.now += 60  # idle for exactly the ttl
    result = await pool.send("k", account, simple("c"))
    assert result.outcome.kind is Kind.SENT and not result.reused
    assert pool.connections_opened == 2
    assert smtp_plain.log.count("QUIT") == 1  # the expired connection was closed politely

    assert await pool.sweep() == 0
    clock.now += 61
    assert await pool.sweep() == 1
    assert pool.idle_count() == 0
    assert smtp_plain.log.count("QUIT") == 2


async def test_changed_account_settings_do_not_reuse(
    smtp_plain: SmtpServer, pool: SmtpPool
) -> None:
    await pool.send("k", smtp_plain.account(), simple("a"))
    result = await pool.send("k", smtp_plain.account(ttl=120), simple("b"))
    assert result.outcome.kind is Kind.SENT and not result.reused


@pytest.mark.parametrize("failure", ["reply", "drop"])
async def test_failed_rset_replaces_the_connection(
    failure: str, smtp_plain: SmtpServer, pool: SmtpPool
) -> None:
    assert (await pool.send("k", smtp_plain.account(), simple("a"))).outcome.kind is Kind.SENT
    if failure == "reply":
        smtp_plain.script.rset = "421 4.3.2 Closing"
    else:
        smtp_plain.script.drop_on_rset = True
    result = await pool.send("k", smtp_plain.account(), simple("b"))
    # Not a failed attempt: a fresh connection carried the message.
    assert result.outcome.kind is Kind.SENT and not result.reused
    assert pool.connections_opened == 2
    assert len(smtp_plain.log.messages) == 2


async def test_refused_transaction_keeps_the_connection(
    smtp_plain: SmtpServer, pool: SmtpPool
) -> None:
    smtp_plain.script.rcpt = {"a@example.org": "550 5.1.1 User unknown"}
    result = await pool.send("k", smtp_plain.account(), simple("a"))
    assert result.outcome.kind is Kind.PERMANENT
    smtp_plain.script.rcpt = {}
    result = await pool.send("k", smtp_plain.account(), simple("b"))
    assert result.outcome.kind is Kind.SENT and result.reused
    assert smtp_plain.log.messages[0].rcpt_tos == ["a@example.org"]


def test_account_from_mapping_and_legacy_tls() -> None:
    acc = SmtpAccount.from_mapping({"host": "h", "port": 465, "user": "", "ttl": None})
    assert acc.tls_mode == "implicit" and acc.user is None and acc.ttl == 300

    # The driver derives the mode with the account model's rule (reference §10.1).
    def mode(**m: object) -> str:
        return SmtpAccount.from_mapping({"host": "h", **m}).tls_mode

    assert mode(port=587, use_tls=True) == "starttls"
    assert mode(port=465, use_tls=True) == "implicit"
    assert mode(port=465, use_tls=False) == "none"
    assert mode(port=587) == "opportunistic" and mode(port=587, tls_mode="") == "opportunistic"
    assert mode(port=465, tls_mode="none") == "none"


@pytest.mark.parametrize("pipelining", [False, True])
async def test_several_messages_over_one_session(
    pipelining: bool, smtp_plain: SmtpServer, pool: SmtpPool
) -> None:
    smtp_plain.script.pipelining = pipelining
    smtp_plain.script.rcpt = {"refused@example.org": "550 5.1.1 User unknown"}
    builts = [
        simple("m0"),
        simple("m1", to=["refused@example.org", "a@example.org"]),
        simple("m2", to=["refused@example.org"]),
        simple("m3"),
    ]
    results: list[Any] = []
    account = SmtpAccount.from_mapping(smtp_plain.account())
    await trio.to_thread.run_sync(pool.send_many_blocking, "k", account, builts, results)
    kinds = [r.outcome.kind for r in results]
    assert kinds == [Kind.SENT, Kind.SENT, Kind.PERMANENT, Kind.SENT]
    assert results[1].accepted_recipients == 1
    assert [r.reused for r in results] == [False, True, True, True]
    assert pool.connections_opened == 1 and smtp_plain.log.sessions == 1
    # No reset after an accepted message; one after the refused one, before the next.
    assert smtp_plain.log.count("RSET") == 1
    ids = [parse(m.data)["Message-ID"] for m in smtp_plain.log.messages]
    assert ids == ["<m0@acme.example>", "<m1@acme.example>", "<m3@acme.example>"]
    assert smtp_plain.log.messages[1].rcpt_tos == ["a@example.org"]
    assert pool.idle_count("k") == 1


async def test_pipelined_refused_sender_keeps_the_session_in_step(
    smtp_plain: SmtpServer, pool: SmtpPool
) -> None:
    smtp_plain.script.pipelining = True
    smtp_plain.script.mail = "451 4.3.0 Try again later"
    results: list[Any] = []
    account = SmtpAccount.from_mapping(smtp_plain.account())
    await trio.to_thread.run_sync(pool.send_many_blocking, "k", account, [simple("m0")], results)
    assert results[0].outcome.kind is Kind.TEMPORARY
    assert "451" in (results[0].outcome.error_text or "")
    smtp_plain.script.mail = None
    result = await pool.send("k", smtp_plain.account(), simple("m1"))
    assert result.outcome.kind is Kind.SENT and result.reused
    assert [parse(m.data)["Message-ID"] for m in smtp_plain.log.messages] == ["<m1@acme.example>"]


async def test_a_session_stops_when_told(smtp_plain: SmtpServer, pool: SmtpPool) -> None:
    results: list[Any] = []
    account = SmtpAccount.from_mapping(smtp_plain.account())
    builts = [simple(f"m{i}") for i in range(3)]
    await trio.to_thread.run_sync(
        pool.send_many_blocking, "k", account, builts, results, lambda: len(results) < 2
    )
    assert [r.outcome.kind for r in results] == [Kind.SENT, Kind.SENT]
    assert len(smtp_plain.log.messages) == 2 and pool.idle_count("k") == 1
