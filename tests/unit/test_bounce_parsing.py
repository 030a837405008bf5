"""Bounce parsing (reference §12) on messages written the way real mail systems write them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailproxyd.core.bounces import (
    REASON_MAX,
    Bounce,
    Malformed,
    NotBounce,
    normalise_message_id,
    parse_bounce,
    printable,
)
from tests import bounce_samples as samples

MID = "<5f1e0c8e9d2a4b7c8e1f00aa11bb22cc@acme.example>"
ORIGINAL = samples.original_message(MID, "MSG-001")


def _bounce(raw: bytes) -> Bounce:
    parsed = parse_bounce(raw)
    assert isinstance(parsed, Bounce), parsed
    return parsed


def test_postfix_dsn() -> None:
    b = _bounce(samples.postfix_dsn(ORIGINAL))
    assert (b.bounce_type, b.bounce_code) == ("hard", "5.1.1")
    assert b.bounce_reason == "smtp; 550 5.1.1 <ann@example.org>: Recipient address rejected"
    assert (b.recipient, b.message_id, b.mail_id, b.dsn) == (
        "ann@example.org",
        MID,
        "MSG-001",
        True,
    )


def test_exchange_dsn_unfolds_the_diagnostic_and_reads_returned_headers() -> None:
    b = _bounce(samples.exchange_dsn(ORIGINAL))
    assert (b.bounce_type, b.bounce_code, b.recipient) == ("hard", "5.1.10", "nobody@example.org")
    assert b.bounce_reason == (
        "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
    )
    assert (b.message_id, b.mail_id) == (MID, "MSG-001")


def test_delayed_dsn_is_soft() -> None:
    b = _bounce(samples.postfix_delayed(ORIGINAL))
    assert (b.bounce_type, b.bounce_code) == ("soft", "4.4.1")
    assert b.bounce_reason == (
        "X-Postfix; connect to mx.example.org[203.0.113.5]:25: Connection timed out"
    )
    assert b.message_id == MID


@pytest.mark.parametrize(
    ("action", "status", "kind"),
    [
        ("failed", "5.1.1", "hard"),
        ("failed", "4.4.7", "hard"),  # expired in the queue: final all the same
        ("delayed", "4.4.1", "soft"),
        ("delayed", "5.0.0", "hard"),
    ],
)
def test_dsn_type_follows_action_and_class(action: str, status: str, kind: str) -> None:
    raw = samples.postfix_dsn(ORIGINAL, status=status).replace(
        b"Action: failed", f"Action: {action}".encode()
    )
    assert _bounce(raw).bounce_type == kind


def test_dsn_without_failed_recipient_is_not_a_bounce() -> None:
    raw = samples.postfix_dsn(ORIGINAL).replace(b"Action: failed", b"Action: delivered")
    assert isinstance(parse_bounce(raw), NotBounce)


def test_long_diagnostic_is_cut_to_500_characters() -> None:
    b = _bounce(samples.postfix_dsn(ORIGINAL, diagnostic="smtp; 550 " + "x" * 900))
    assert b.bounce_reason is not None and len(b.bounce_reason) == REASON_MAX


def test_text_bounce_first_code_and_first_five_lines() -> None:
    b = _bounce(samples.text_bounce(ORIGINAL))
    assert (b.bounce_type, b.bounce_code, b.dsn) == ("hard", "552", False)
    assert b.bounce_reason == "\n".join(
        [
            "Hi. This is the qmail-send program at relay.example.net.",
            "I'm afraid I wasn't able to deliver your message to the following addresses.",
            "This is a permanent error; I've given up. Sorry it didn't work out.",
            "<bob@example.org>:",
            "203.0.113.9 does not like recipient.",
        ]
    )
    assert (b.recipient, b.message_id, b.mail_id) == ("bob@example.org", MID, "MSG-001")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("From", "postmaster@example.net"),
        ("From", "Mail-Daemon <mail-daemon@example.net>"),
        ("Subject", "Undeliverable: hello"),
        ("Subject", "Delivery Status Notification (Failure)"),
        ("Subject", "Mail delivery failed: returning message to sender"),
        ("Subject", "Message failed"),
        ("Subject", "Delivery delivery failed"),
        ("Subject", "Returned mail: see transcript for details"),
        ("Subject", "failure notice"),
    ],
)
def test_bounce_like_by_from_or_subject(header: str, value: str) -> None:
    other = "Subject: hi" if header == "From" else "From: someone@example.net"
    raw = (
        f"{header}: {value}\r\n{other}\r\nTo: b@acme.example\r\n\r\n"
        "Sorry.\r\n550 no such user\r\n"
        f"Message-ID: {MID}\r\n"
    ).encode()
    b = _bounce(raw)
    assert (b.bounce_code, b.message_id, b.mail_id) == ("550", MID, None)


def test_codes_inside_enhanced_status_or_words_are_not_reply_codes() -> None:
    raw = (
        b"From: MAILER-DAEMON@x.example\r\nSubject: failure notice\r\n\r\n"
        b"Status 5.5.0 for user550 at 192.0.2.45; then 451 later\r\n"
    )
    assert _bounce(raw).bounce_code == "451"


def test_reply_and_non_bounce_are_not_bounces() -> None:
    assert parse_bounce(samples.not_a_bounce()) == NotBounce("not a bounce")


@pytest.mark.parametrize(
    "raw",
    [
        samples.malformed_bounce(),
        b"",
        b"this is not a header line\r\nFrom: MAILER-DAEMON@x\r\n\r\nbody\r\n",
        b"From: MAILER-DAEMON@x\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n",
    ],
)
def test_malformed_messages(raw: bytes) -> None:
    assert isinstance(parse_bounce(raw), Malformed)


def test_dsn_without_status_part_is_malformed() -> None:
    raw = samples.postfix_dsn(ORIGINAL).replace(
        b"Content-Type: message/delivery-status", b"Content-Type: text/plain"
    )
    assert isinstance(parse_bounce(raw), Malformed)


def test_message_id_normalisation_and_log_escaping() -> None:
    assert normalise_message_id(" <a@b> (comment)") == "<a@b>"
    assert normalise_message_id("a@b") == "<a@b>"
    assert normalise_message_id("") is None
    assert printable("a\nb\x1bc") == "a\\nb\\x1bc"


def test_poll_delay_backs_off_to_ten_intervals() -> None:
    from mailproxyd.core.bounces import poll_delay

    assert [poll_delay(60, n) for n in range(6)] == [60, 120, 240, 480, 600, 600]
    assert poll_delay(60, 1000) == 600


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"From: MAILER-DAEMON@x\r\n",
                b"Subject: failure notice\r\n",
                b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
                b"Content-Type: message/delivery-status\r\n",
                b"Content-Type: message/rfc822\r\n",
                b"Content-Type: text/rfc822-headers\r\n",
                b"Content-Transfer-Encoding: base64\r\n",
                b"Content-Type: text/plain; charset=no-such-charset\r\n",
                b"\r\n",
                b"--b\r\n",
                b"--b--\r\n",
                b"Action: failed\r\nStatus: 5.1.1\r\n",
                b"Message-ID: <a@b>\r\n",
                b"X-Genro-Mail-ID: =?utf-8?q?caf=C3=A9?=\r\n",
                b"550 no\r\n",
            ]
        )
        | st.binary(max_size=40),
        max_size=30,
    )
)
def test_any_input_gives_an_answer_never_an_exception(pieces: list[bytes]) -> None:
    assert isinstance(parse_bounce(b"".join(pieces)), Bounce | NotBounce | Malformed)
