"""Message construction (reference §7): exact layout of the reference example, and equivalence proven by
parsing generated messages back with the standard library's modern parser."""

from __future__ import annotations

import email.utils
import re
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailproxyd.core.mime import Built, Part, build_message, format_date

NOW = 1767225605.0  # Thu, 01 Jan 2026 00:00:05 +0000

EXAMPLE_PAYLOAD: dict[str, Any] = {
    "id": "MSG-002",
    "from": "Shop <orders@acme.example>",
    "to": ["b@example.org", "c@example.org"],
    "cc": ["d@example.org"],
    "bcc": ["secret@example.net"],
    "reply_to": ["replies@acme.example"],
    "return_path": "bounce@acme.example",
    "subject": "Hi",
    "body": "<b>hi</b>",
    "content_type": "html",
    "headers": {"X-Campaign": "spring"},
    "message_id": "<9f1c2b7e4d3a4e5f8a6b0c1d2e3f4a5b@acme.example>",
}

EXAMPLE_WIRE = (
    "From: Shop <orders@acme.example>\r\n"
    "To: b@example.org, c@example.org\r\n"
    "Cc: d@example.org\r\n"
    "Reply-To: replies@acme.example\r\n"
    "Subject: Hi\r\n"
    "Date: Thu, 01 Jan 2026 00:00:05 +0000\r\n"
    "Message-ID: <9f1c2b7e4d3a4e5f8a6b0c1d2e3f4a5b@acme.example>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: text/html; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: 7bit\r\n"
    "X-Campaign: spring\r\n"
    "X-Genro-Mail-ID: MSG-002\r\n"
    "\r\n"
    "<b>hi</b>\r\n"
)


def parse(built: Built) -> EmailMessage:
    msg = BytesParser(policy=default_policy).parsebytes(built.data)
    assert isinstance(msg, EmailMessage)
    return msg


def assert_wire_shape(data: bytes) -> None:
    """CRLF only, no line over 998 octets."""
    assert b"\r\n" in data and data.endswith(b"\r\n")
    lines = data.split(b"\r\n")
    for line in lines:
        assert b"\r" not in line and b"\n" not in line
        assert len(line) <= 998


# --------------------------------------------------------------------------- examples


def test_contract_example_is_byte_exact() -> None:
    built = build_message(EXAMPLE_PAYLOAD, now=NOW)
    assert built.data.decode("ascii") == EXAMPLE_WIRE
    assert built.mail_from == "bounce@acme.example"
    assert built.rcpt_to == [
        "b@example.org",
        "c@example.org",
        "d@example.org",
        "secret@example.net",
    ]
    assert not built.needs_smtputf8 and not built.needs_8bitmime
    assert b"secret@example.net" not in built.data


def test_date_is_utc_with_numeric_zone() -> None:
    assert format_date(1767225605) == "Thu, 01 Jan 2026 00:00:05 +0000"
    assert format_date(1767225605.999) == "Thu, 01 Jan 2026 00:00:05 +0000"
    assert format_date(951782400) == "Tue, 29 Feb 2000 00:00:00 +0000"


def test_envelope_sender_precedence() -> None:
    base = {**EXAMPLE_PAYLOAD}
    del base["return_path"]
    assert build_message(base, now=NOW).mail_from == "orders@acme.example"
    with_bounce = {**base, "bounce_return_path": "bounces@proxy.example"}
    assert build_message(with_bounce, now=NOW).mail_from == "bounces@proxy.example"
    both = {**with_bounce, "return_path": "rp@acme.example"}
    assert build_message(both, now=NOW).mail_from == "rp@acme.example"


def test_recipients_deduplicated_case_insensitively_in_order() -> None:
    payload = {
        **EXAMPLE_PAYLOAD,
        "to": ["B@Example.org", "c@example.org"],
        "cc": ["b@example.org", "Dee <d@example.org>"],
        "bcc": ["C@EXAMPLE.ORG", "e@example.org"],
    }
    built = build_message(payload, now=NOW)
    assert built.rcpt_to == ["B@Example.org", "c@example.org", "d@example.org", "e@example.org"]


def test_custom_headers_replace_in_place_and_mail_id_is_last() -> None:
    payload = {
        **EXAMPLE_PAYLOAD,
        "headers": {
            "subject": "Replaced",
            "X-Num": 42,
            "X-Flag": True,
            "X-Float": 1.5,
            "X-None": None,
            "Reply-to": "other@acme.example",
        },
    }
    msg = parse(build_message(payload, now=NOW))
    names = [k for k, _ in msg.items()]
    assert names == [
        "From",
        "To",
        "Cc",
        "Reply-to",
        "subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "X-Num",
        "X-Flag",
        "X-Float",
        "X-Genro-Mail-ID",
    ]
    assert msg["subject"] == "Replaced"
    assert msg["Reply-To"] == "other@acme.example"
    assert (msg["X-Num"], msg["X-Flag"], msg["X-Float"]) == ("42", "true", "1.5")


def test_non_ascii_domain_is_idna_unless_smtputf8() -> None:
    payload = {**EXAMPLE_PAYLOAD, "to": ["ann@exämple.org"], "cc": [], "bcc": []}
    built = build_message(payload, now=NOW)
    assert built.rcpt_to == ["ann@xn--exmple-cua.org"]
    assert not built.needs_smtputf8
    assert parse(built)["To"].addresses[0].addr_spec == "ann@xn--exmple-cua.org"

    payload = {**payload, "to": ["josé@exämple.org"]}
    built = build_message(payload, now=NOW)
    assert built.needs_smtputf8 and built.needs_8bitmime
    assert built.rcpt_to == ["josé@exämple.org"]
    assert "To: josé@exämple.org\r\n".encode() in built.data


def test_body_encodings() -> None:
    plain = {**EXAMPLE_PAYLOAD, "content_type": "plain", "body": "line1\nline2\r\nline3\rend"}
    built = build_message(plain, now=NOW)
    assert b"Content-Transfer-Encoding: 7bit" in built.data
    assert built.data.endswith(b"\r\n\r\nline1\r\nline2\r\nline3\r\nend\r\n")
    assert parse(built).get_content() == "line1\r\nline2\r\nline3\r\nend\r\n"

    long_line = {**plain, "body": "x" * 1200}
    built = build_message(long_line, now=NOW)
    assert b"Content-Transfer-Encoding: quoted-printable" in built.data
    assert_wire_shape(built.data)
    assert parse(built).get_content().rstrip("\r\n") == "x" * 1200

    utf8 = {**plain, "body": "Grüße\n"}
    msg = parse(build_message(utf8, now=NOW))
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_content() == "Grüße\r\n"


def test_attachments_layout() -> None:
    parts = [
        Part("report.pdf", b"%PDF-1.4 " * 40),
        Part("notes", b"plain words", "text/x-notes"),
        Part("noext", b"\x00\x01"),
        Part("résumé été.txt", "é".encode()),
    ]
    built = build_message(EXAMPLE_PAYLOAD, now=NOW, attachments=parts)
    assert_wire_shape(built.data)
    msg = parse(built)
    assert msg.get_content_type() == "multipart/mixed"
    body, *atts = list(msg.iter_parts())
    assert body.get_content() == "<b>hi</b>"
    assert [a.get_filename() for a in atts] == [p.filename for p in parts]
    assert [a.get_content_type() for a in atts] == [
        "application/pdf",
        "text/x-notes",
        "application/octet-stream",
        "text/plain",
    ]
    assert [a.get_payload(decode=True) for a in atts] == [p.content for p in parts]
    assert all(a["Content-Transfer-Encoding"] == "base64" for a in atts)
    assert all(a.get_content_disposition() == "attachment" for a in atts)
    for line in built.data.split(b"\r\n"):
        if line and line.isalnum():  # base64 lines are 76 characters except the last
            assert len(line) <= 76
    assert "filename*=utf-8''r%C3%A9sum%C3%A9%20%C3%A9t%C3%A9.txt" in built.data.decode()


def test_long_non_ascii_filename_uses_continuations() -> None:
    name = "é" * 120 + ".bin"
    built = build_message(EXAMPLE_PAYLOAD, now=NOW, attachments=[Part(name, b"x")])
    assert_wire_shape(built.data)
    assert max(len(line) for line in built.data.split(b"\r\n")) <= 78
    att = next(parse(built).iter_attachments())
    assert att.get_filename() == name


def test_header_folding_limits() -> None:
    subject = " ".join(["word"] * 60)
    built = build_message({**EXAMPLE_PAYLOAD, "subject": subject}, now=NOW)
    assert max(len(line) for line in built.data.split(b"\r\n")[:20]) <= 78
    assert parse(built)["subject"] == subject

    unbreakable = "x" * 1500
    built = build_message({**EXAMPLE_PAYLOAD, "subject": unbreakable}, now=NOW)
    assert_wire_shape(built.data)
    assert parse(built)["subject"] == unbreakable


# --------------------------------------------------------------------------- property


_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\u2028\u2029\x85"),
    min_size=1,
    max_size=120,
)
_local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,14}[a-z0-9]", fullmatch=True).filter(
    lambda s: ".." not in s
)
_domain = st.sampled_from(["example.org", "acme.example", "mail.example.com", "exämple.org"])
_addr = st.builds(lambda local, domain: f"{local}@{domain}", _local, _domain)
_name = st.one_of(
    st.just(""),
    st.sampled_from(
        ["Ann", "Smith, Ann", 'Al "Q" Bee', "Jürgen Müller", "日本 太郎", "a.b@c", "x  y"]
    ),
    _text.filter(lambda s: s.strip() == s and s.isprintable()),
)


def _mailbox(name: str, addr: str) -> str:
    if not name:
        return addr
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{quoted} <{addr}>"


_mailboxes = st.lists(st.builds(_mailbox, _name, _addr), min_size=0, max_size=4)
_body = st.text(
    alphabet=st.characters(
        exclude_categories=["Cs"],
        exclude_characters="\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
    ),
    max_size=400,
) | st.builds(lambda n, c: c * n, st.integers(990, 1100), st.sampled_from(["a", "é"]))
_header_names = st.sampled_from(["X-Campaign", "X-Tag", "List-Unsubscribe", "Subject", "X-Empty"])
_header_values = st.one_of(_text, st.integers(), st.booleans(), st.just(""))
_parts = st.lists(
    st.builds(
        Part,
        st.one_of(
            st.sampled_from(
                ["a.pdf", "b.png", 'weird"name\\.txt', "naïve.doc", "x" * 200 + ".zip"]
            ),
            # The stdlib parser strips blanks around a file name, however it is encoded.
            _text.filter(
                lambda s: "/" not in s and "\\" not in s and s.isprintable() and s.strip() == s
            ),
        ),
        st.binary(max_size=300),
        st.sampled_from([None, "application/x-test", "image/png"]),
    ),
    max_size=3,
)


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    sender=st.builds(_mailbox, _name, _addr),
    to=_mailboxes.filter(bool),
    cc=_mailboxes,
    bcc=_mailboxes,
    reply_to=_mailboxes,
    subject=_text.filter(lambda s: "\r" not in s and "\n" not in s),
    body=_body,
    html=st.booleans(),
    headers=st.dictionaries(_header_names, _header_values, max_size=3),
    parts=_parts,
    mail_id=_text,
)
@example(
    sender='"é  x" <jm@example.org>',
    to=['"Ann  Smith" <a@example.org>'],
    cc=[],
    bcc=[],
    reply_to=[],
    subject="a  b",
    body="x",
    html=True,
    headers={},
    parts=[],
    mail_id="2",
)
@example(
    sender="Jürgen Müller <jm@exämple.org>",
    to=["a@example.org"],
    cc=[],
    bcc=[],
    reply_to=[],
    subject="  =?utf-8?q?x?=  spaced\tout ",
    body="",
    html=False,
    headers={},
    parts=[],
    mail_id="1",
)
def test_round_trip(
    sender: str,
    to: list[str],
    cc: list[str],
    bcc: list[str],
    reply_to: list[str],
    subject: str,
    body: str,
    html: bool,
    headers: dict[str, Any],
    parts: list[Part],
    mail_id: str,
) -> None:
    payload = {
        "id": mail_id,
        "from": sender,
        "to": to,
        "cc": cc,
        "bcc": bcc,
        "reply_to": reply_to,
        "subject": subject,
        "body": body,
        "content_type": "html" if html else "plain",
        "headers": headers,
        "message_id": "<abc.123@acme.example>",
    }
    built = build_message(payload, now=NOW, attachments=parts)
    assert_wire_shape(built.data)
    msg = parse(built)
    assert not msg.defects

    def idna(addr: str) -> str:
        return addr.replace("exämple.org", "xn--exmple-cua.org")

    def shown(name: str) -> str:
        # Non-ASCII names travel as one RFC 2047 word; the stdlib parser then reports runs of
        # blanks inside it as a single space (other decoders keep them).
        return name if name.isascii() and name.isprintable() else re.sub(r"[ \t]+", " ", name)

    def expect(items: list[str]) -> list[tuple[str, str]]:
        return [(shown(n), idna(a)) for n, a in (email.utils.parseaddr(i) for i in items)]

    def got(name: str) -> list[tuple[str, str]]:
        header = msg[name]
        return [(a.display_name, a.addr_spec) for a in header.addresses] if header else []

    replaced = {k.lower() for k in headers}
    assert got("From") == expect([sender])
    assert got("To") == expect(to)
    assert got("Cc") == expect(cc)
    assert got("Reply-To") == expect(reply_to)
    assert msg["Bcc"] is None
    expected_subject = headers["Subject"] if "subject" in replaced else subject
    if isinstance(expected_subject, bool):
        expected_subject = "true" if expected_subject else "false"
    assert msg["Subject"] == str(expected_subject)
    assert msg["Date"].datetime.timestamp() == int(NOW)
    assert msg["Message-ID"] == "<abc.123@acme.example>"
    for key, value in headers.items():
        if key == "Subject":
            continue
        want = ("true" if value else "false") if isinstance(value, bool) else str(value)
        assert msg[key] == want
    assert list(msg.keys())[-1] == "X-Genro-Mail-ID"
    assert msg["X-Genro-Mail-ID"] == mail_id

    seen: set[str] = set()
    want_rcpt: list[str] = []
    for item in (*to, *cc, *bcc):
        addr = idna(email.utils.parseaddr(item)[1])
        if addr.casefold() not in seen:
            seen.add(addr.casefold())
            want_rcpt.append(addr)
    assert built.rcpt_to == want_rcpt
    assert built.mail_from == idna(email.utils.parseaddr(sender)[1])

    text_part = msg.get_body() if parts else msg
    assert text_part is not None
    assert text_part.get_content_type() == ("text/html" if html else "text/plain")
    want_body = body.replace("\r\n", "\n").replace("\r", "\n")
    got_body = text_part.get_content().replace("\r\n", "\n")
    if parts or not want_body or want_body.endswith("\n"):
        assert got_body == want_body
    else:  # a single-part message ends with the line break that SMTP requires
        assert got_body == want_body + "\n"
    atts = list(msg.iter_attachments())
    assert [a.get_filename() for a in atts] == [p.filename for p in parts]
    assert [a.get_payload(decode=True) for a in atts] == [p.content for p in parts]
    for att, part in zip(atts, parts, strict=True):
        if part.mime_type:
            assert att.get_content_type() == part.mime_type
