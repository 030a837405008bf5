"""Outcome classification (reference §10.3) and error texts (reference §10.5), one row per case."""

from __future__ import annotations

import pytest

from mailproxyd.core.smtp_outcome import (
    Attempt,
    Failure,
    Kind,
    RcptReply,
    Stage,
    account_deleted,
    build_failed,
    classify,
    delivery_log_line,
    reply_text,
)

OK = RcptReply("a@example.org", 250, "2.1.5 Ok")
T, P, S, U = Kind.TEMPORARY, Kind.PERMANENT, Kind.SENT, Kind.UNCERTAIN

ROWS = [
    # --- any stage: 421 is temporary
    (
        "421 greeting",
        Attempt(Stage.GREETING, 421, "4.3.2 Shutting down"),
        T,
        "greeting: 421 4.3.2 Shutting down",
        421,
    ),
    ("421 MAIL", Attempt(Stage.MAIL, 421, "Bye"), T, "MAIL FROM: 421 Bye", 421),
    (
        "421 RCPT",
        Attempt(Stage.RCPT, 421, "closing", rcpts=[OK, RcptReply("b@x.org", 421, "closing")]),
        T,
        "RCPT TO: 421 closing",
        421,
    ),
    (
        "421 data reply",
        Attempt(Stage.DATA_REPLY, 421, "closing", rcpts=[OK], data_sent=True),
        T,
        "DATA: 421 closing",
        421,
    ),
    # --- connect / greeting network failures: temporary
    (
        "DNS",
        Attempt(Stage.CONNECT, failure=Failure.DNS, detail="(nohost.invalid:25)"),
        T,
        "connect: host not found (nohost.invalid:25)",
        None,
    ),
    (
        "refused",
        Attempt(Stage.CONNECT, failure=Failure.REFUSED, detail="(smtp.example.com:587)"),
        T,
        "connect: connection refused (smtp.example.com:587)",
        None,
    ),
    (
        "reset",
        Attempt(Stage.GREETING, failure=Failure.RESET),
        T,
        "greeting: connection reset",
        None,
    ),
    (
        "connect timeout",
        Attempt(Stage.CONNECT, failure=Failure.TIMEOUT, timeout=10, detail="(h:25)"),
        T,
        "connect: timed out after 10 s (h:25)",
        None,
    ),
    (
        "greeting timeout",
        Attempt(Stage.GREETING, failure=Failure.TIMEOUT, timeout=30),
        T,
        "greeting: timed out after 30 s",
        None,
    ),
    # --- greeting, EHLO/HELO, MAIL FROM, DATA command: 4xx temporary / 5xx permanent
    (
        "greeting 554",
        Attempt(Stage.GREETING, 554, "5.3.2 No service"),
        P,
        "greeting: 554 5.3.2 No service",
        554,
    ),
    ("greeting 450", Attempt(Stage.GREETING, 450, "busy"), T, "greeting: 450 busy", 450),
    ("EHLO 550", Attempt(Stage.EHLO, 550, "5.7.1 Go away"), P, "EHLO: 550 5.7.1 Go away", 550),
    ("EHLO 451", Attempt(Stage.EHLO, 451, "4.3.0 later"), T, "EHLO: 451 4.3.0 later", 451),
    (
        "MAIL 553",
        Attempt(Stage.MAIL, 553, "5.1.8 Bad sender"),
        P,
        "MAIL FROM: 553 5.1.8 Bad sender",
        553,
    ),
    ("MAIL 452", Attempt(Stage.MAIL, 452, "4.3.1 Full"), T, "MAIL FROM: 452 4.3.1 Full", 452),
    (
        "DATA 554",
        Attempt(Stage.DATA, 554, "5.5.1 No valid recipients", rcpts=[OK]),
        P,
        "DATA: 554 5.5.1 No valid recipients",
        554,
    ),
    ("DATA 451", Attempt(Stage.DATA, 451, "later", rcpts=[OK]), T, "DATA: 451 later", 451),
    # --- STARTTLS: permanent when not offered / handshake / certificate; 4xx temporary
    (
        "starttls not offered",
        Attempt(Stage.STARTTLS, failure=Failure.STARTTLS_NOT_OFFERED),
        P,
        "STARTTLS: not offered by server",
        None,
    ),
    (
        "opportunistic creds",
        Attempt(Stage.STARTTLS, failure=Failure.CLEAR_CREDENTIALS),
        P,
        "STARTTLS: not offered; refusing to send credentials in clear (set tls_mode to none to allow)",
        None,
    ),
    (
        "handshake",
        Attempt(Stage.STARTTLS, failure=Failure.TLS_HANDSHAKE, detail="wrong version"),
        P,
        "STARTTLS: TLS handshake failed: wrong version",
        None,
    ),
    (
        "certificate",
        Attempt(Stage.STARTTLS, failure=Failure.CERTIFICATE, detail="self-signed certificate"),
        P,
        "STARTTLS: certificate verification failed: self-signed certificate",
        None,
    ),
    (
        "implicit cert",
        Attempt(Stage.CONNECT, failure=Failure.CERTIFICATE, detail="Hostname mismatch"),
        P,
        "connect: certificate verification failed: Hostname mismatch",
        None,
    ),
    (
        "STARTTLS 454",
        Attempt(Stage.STARTTLS, 454, "4.7.0 TLS not available"),
        T,
        "STARTTLS: 454 4.7.0 TLS not available",
        454,
    ),
    # --- AUTH: 4xx temporary, 5xx / no mechanism permanent
    (
        "AUTH 454",
        Attempt(Stage.AUTH, 454, "4.7.0 Temporary authentication failure"),
        T,
        "AUTH: 454 4.7.0 Temporary authentication failure",
        454,
    ),
    (
        "AUTH 535",
        Attempt(Stage.AUTH, 535, "5.7.8 Authentication credentials invalid"),
        P,
        "AUTH: 535 5.7.8 Authentication credentials invalid",
        535,
    ),
    (
        "AUTH no mech",
        Attempt(Stage.AUTH, failure=Failure.NO_COMMON_MECHANISM, detail="XOAUTH2"),
        P,
        "AUTH: no common mechanism (server offers: XOAUTH2)",
        None,
    ),
    (
        "AUTH not offered",
        Attempt(Stage.AUTH, failure=Failure.AUTH_NOT_OFFERED),
        P,
        "AUTH: not offered by server",
        None,
    ),
    (
        "SMTPUTF8",
        Attempt(Stage.MAIL, failure=Failure.SMTPUTF8_NOT_OFFERED),
        P,
        "MAIL FROM: SMTPUTF8 required but not offered by server",
        None,
    ),
    # --- RCPT TO, all refused
    (
        "all 5xx",
        Attempt(Stage.RCPT, 550, rcpts=[RcptReply("a@x.org", 550, "5.1.1 User unknown")]),
        P,
        "RCPT TO: all recipients refused: 550 5.1.1 User unknown",
        550,
    ),
    (
        "all 5xx, first decides",
        Attempt(
            Stage.RCPT,
            553,
            rcpts=[RcptReply("a@x.org", 551, "5.1.6 moved"), RcptReply("b@x.org", 553, "no")],
        ),
        P,
        "RCPT TO: all recipients refused: 551 5.1.6 moved",
        551,
    ),
    (
        "mixed → temporary, first 4xx",
        Attempt(
            Stage.RCPT,
            550,
            rcpts=[
                RcptReply("a@x.org", 550, "5.1.1 unknown"),
                RcptReply("b@x.org", 451, "4.2.1 Mailbox busy"),
                RcptReply("c@x.org", 452, "x"),
            ],
        ),
        T,
        "RCPT TO: all recipients refused: 451 4.2.1 Mailbox busy",
        451,
    ),
    (
        "all 4xx",
        Attempt(Stage.RCPT, 451, rcpts=[RcptReply("a@x.org", 451, "4.2.1 Mailbox busy")]),
        T,
        "RCPT TO: all recipients refused: 451 4.2.1 Mailbox busy",
        451,
    ),
    # --- message data: network error before the dot → temporary
    (
        "data timeout",
        Attempt(Stage.MESSAGE, failure=Failure.TIMEOUT, timeout=30, rcpts=[OK]),
        T,
        "DATA: timed out after 30 s while transmitting the message data",
        None,
    ),
    (
        "data reset",
        Attempt(Stage.MESSAGE, failure=Failure.RESET, rcpts=[OK]),
        T,
        "DATA: connection reset while transmitting the message data",
        None,
    ),
    # --- reply to the data
    (
        "data 250",
        Attempt(Stage.DATA_REPLY, 250, "2.0.0 Ok: queued", rcpts=[OK], data_sent=True),
        S,
        None,
        None,
    ),
    (
        "data 451",
        Attempt(
            Stage.DATA_REPLY,
            451,
            "4.3.0 Temporary failure, try again later",
            rcpts=[OK],
            data_sent=True,
        ),
        T,
        "DATA: 451 4.3.0 Temporary failure, try again later",
        451,
    ),
    (
        "data 550",
        Attempt(Stage.DATA_REPLY, 550, "5.7.1 Message rejected", rcpts=[OK], data_sent=True),
        P,
        "DATA: 550 5.7.1 Message rejected",
        550,
    ),
    (
        "data no reply (timeout)",
        Attempt(Stage.DATA_REPLY, failure=Failure.TIMEOUT, timeout=120, rcpts=[OK], data_sent=True),
        U,
        "DATA: no reply after the message data was transmitted (outcome unknown)",
        None,
    ),
    (
        "data no reply (closed)",
        Attempt(Stage.DATA_REPLY, failure=Failure.CLOSED, rcpts=[OK], data_sent=True),
        U,
        "DATA: no reply after the message data was transmitted (outcome unknown)",
        None,
    ),
    # --- malformed / unexpected / protocol: temporary
    ("malformed", Attempt(Stage.EHLO, failure=Failure.MALFORMED), T, "EHLO: malformed reply", None),
    (
        "malformed after data",
        Attempt(Stage.DATA_REPLY, failure=Failure.MALFORMED, rcpts=[OK], data_sent=True),
        T,
        "DATA: malformed reply",
        None,
    ),
    ("unexpected 250 to DATA", Attempt(Stage.DATA, 250, "Ok", rcpts=[OK]), T, "DATA: 250 Ok", 250),
    (
        "unexpected 354 to MAIL",
        Attempt(Stage.MAIL, 354, "go ahead"),
        T,
        "MAIL FROM: 354 go ahead",
        354,
    ),
    ("out of range", Attempt(Stage.MAIL, 999, "what"), T, "MAIL FROM: 999 what", 999),
    ("no reply at EHLO", Attempt(Stage.EHLO), T, "EHLO: no reply", None),
]


@pytest.mark.parametrize(
    ("attempt", "kind", "text", "code"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_classification_table(
    attempt: Attempt, kind: Kind, text: str | None, code: int | None
) -> None:
    outcome = classify(attempt)
    assert outcome.kind is kind
    assert outcome.error_text == text
    assert outcome.smtp_code == code
    assert outcome.uncertain is (kind is U)
    assert outcome.retryable is (kind in (T, U))
    # reference §9: the slot is returned only when the data did not go out.
    assert outcome.release_slot is (kind in (T, P) and not attempt.data_sent)


def test_partial_refusal_is_sent_with_refused_recipients() -> None:
    attempt = Attempt(
        Stage.DATA_REPLY,
        250,
        "2.0.0 Ok",
        rcpts=[
            OK,
            RcptReply("nobody@example.org", 550, "5.1.1 User unknown"),
            RcptReply("later@example.org", 450, "4.2.0 Greylisted\nplease retry"),
        ],
        data_sent=True,
    )
    outcome = classify(attempt)
    assert outcome.kind is Kind.SENT and outcome.error_text is None
    assert outcome.refused_recipients == {
        "nobody@example.org": {"code": 550, "message": "5.1.1 User unknown"},
        "later@example.org": {"code": 450, "message": "4.2.0 Greylisted please retry"},
    }


def test_all_refused_carries_every_refusal() -> None:
    attempt = Attempt(
        Stage.RCPT,
        550,
        rcpts=[RcptReply("a@x.org", 550, "5.1.1 unknown"), RcptReply("b@x.org", 451, "busy")],
    )
    assert set(classify(attempt).refused_recipients) == {"a@x.org", "b@x.org"}


def test_multiline_reply_joined_with_a_space() -> None:
    assert (
        reply_text(554, "5.7.1 Rejected\nsee https://example.org\n")
        == "554 5.7.1 Rejected see https://example.org"
    )
    assert reply_text(250, "") == "250"


def test_failures_before_contact() -> None:
    assert build_failed("bad header").error_text == "message build failed: bad header"
    assert build_failed("x").kind is Kind.PERMANENT
    assert account_deleted().error_text == "account deleted"


def test_delivery_log_lines_match_the_contract() -> None:
    assert (
        delivery_log_line(
            "sent",
            tenant="acme",
            message_id="MSG-001",
            account="smtp1",
            attempt=1,
            rcpts=2,
            duration_ms=184,
        )
        == "delivery sent tenant=acme id=MSG-001 account=smtp1 rcpts=2 attempt=1 duration_ms=184"
    )
    assert delivery_log_line(
        "deferred",
        tenant="acme",
        message_id="MSG-005",
        account="smtp2",
        attempt=2,
        until=1767225960,
        reason="RCPT TO: all recipients refused: 451 4.3.0 Try again later",
    ) == (
        "delivery deferred tenant=acme id=MSG-005 account=smtp2 attempt=2 "
        'until=2026-01-01T00:06:00Z reason="RCPT TO: all recipients refused: 451 4.3.0 Try again later"'
    )
    assert (
        delivery_log_line(
            "failed",
            tenant="acme",
            message_id="MSG-002",
            account="smtp1",
            attempt=1,
            reason="DATA: 550 5.7.1 Message rejected",
        )
        == 'delivery failed tenant=acme id=MSG-002 account=smtp1 attempt=1 reason="DATA: 550 5.7.1 Message rejected"'
    )
    # Client ids may hold blanks and quotes: they are quoted so the line stays parseable.
    line = delivery_log_line(
        "failed", tenant="t", message_id='a "b" c', account=None, attempt=3, reason='x"y'
    )
    assert line == 'delivery failed tenant=t id="a \\"b\\" c" account=- attempt=3 reason="x\\"y"'
