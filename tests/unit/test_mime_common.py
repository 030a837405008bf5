"""The common-case message builder (reference §7): byte for byte the general path, and closed
to header injection. What the standard library's parser reads back from generated messages,
most of them built by this path, is checked by ``test_mime.test_round_trip``."""

from __future__ import annotations

from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailproxyd.core import mime
from mailproxyd.core.mime import build_message
from mailproxyd.core.timefmt import rfc5322_date

NOW = 1767225605.25  # Thu, 01 Jan 2026 00:00:05 +0000

_word = st.text(
    alphabet=st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\u2028\u2029\x85"),
    min_size=1,
    max_size=90,
)
_ascii_word = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=90)
_local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,14}[a-z0-9]", fullmatch=True).filter(
    lambda s: ".." not in s
)
_domain = st.sampled_from(["example.org", "acme.example", "mail.example.com", "EXAMPLE.org"])
_addr = st.builds(lambda local, domain: f"{local}@{domain}", _local, _domain)
_name = st.one_of(
    st.just(""),
    st.sampled_from(["Ann", "Smith, Ann", 'Al "Q" Bee', "Jürgen Müller", "日本 太郎", "=?x?="]),
    _word.filter(lambda s: s.strip() == s and s.isprintable()),
)


def _mailbox(name: str, addr: str) -> str:
    if not name:
        return addr
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{quoted} <{addr}>"


_box = st.one_of(_addr, st.builds(_mailbox, _name, _addr), st.builds("Shop <{}>".format, _addr))
_boxes = st.lists(_box, max_size=4)
_body = st.one_of(
    st.text(
        alphabet=st.characters(
            exclude_categories=["Cs"],
            exclude_characters="\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
        ),
        max_size=300,
    ),
    st.builds(lambda n, c: c * n, st.integers(990, 1010), st.sampled_from(["a", "é"])),
)
_header_names = st.sampled_from(["X-Campaign", "X-Tag", "List-Unsubscribe", "X-Empty"])
_header_values = st.one_of(_word, _ascii_word, st.integers(), st.booleans(), st.just(""))
_subject = st.one_of(_word, _ascii_word).filter(lambda s: "\r" not in s and "\n" not in s)


def _payload(**fields: Any) -> dict[str, Any]:
    return {
        "id": "MSG-1",
        "from": "Shop <orders@acme.example>",
        "to": ["b@example.org"],
        "subject": "Hi",
        "body": "hello\n",
        "content_type": "plain",
        "headers": {},
        "message_id": "<abc.123@acme.example>",
        **fields,
    }


_payloads = st.builds(
    _payload,
    id=_ascii_word.filter(bool) | _word,
    **{"from": _box},
    to=_boxes.filter(bool),
    cc=_boxes,
    bcc=_boxes,
    reply_to=_boxes,
    subject=_subject,
    body=_body,
    content_type=st.sampled_from(["plain", "html", "text/html", None]),
    headers=st.dictionaries(_header_names, _header_values, max_size=3),
    return_path=st.one_of(st.none(), _addr),
    message_id=st.one_of(st.none(), st.just("abc@acme.example"), st.just("<x.y@acme.example>")),
)


def _parsed(data: bytes) -> EmailMessage:
    msg = BytesParser(policy=default_policy).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    return msg


def _wire_ok(data: bytes) -> None:
    assert data.endswith(b"\r\n")
    for line in data.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line
        assert len(line) <= 998


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(payload=_payloads)
@example(payload=_payload(subject=" " + "word " * 40, headers={"X-Tag": "x" * 1200}))
@example(payload=_payload(to=["B@Example.org", "b@example.org"], bcc=["b@EXAMPLE.org"]))
def test_common_path_is_the_general_path_byte_for_byte(payload: dict[str, Any]) -> None:
    common = mime._build_common(payload, NOW)
    assert common is not None  # every generated payload is a common one: the fast path is taken
    general = mime._build_general(payload, NOW, ())
    assert common == general
    assert build_message(payload, now=NOW) == general
    _wire_ok(common.data)


@pytest.mark.parametrize(
    "field",
    ["subject", "id", "header", "name", "message_id"],
)
@pytest.mark.parametrize(
    "evil",
    [
        "x\r\nBcc: victim@example.net",
        "x\nBcc: victim@example.net",
        "x\rBcc: v@e.net",
        "\r\n\r\nbody",
    ],
)
def test_no_header_injection(field: str, evil: str) -> None:
    payload = _payload()
    if field == "header":
        payload["headers"] = {"X-Tag": evil}
    elif field == "name":
        payload["from"] = _mailbox(evil, "orders@acme.example")
    elif field == "message_id":
        payload["message_id"] = f"<{evil}@acme.example>"
    else:
        payload[field] = evil
    try:
        built = build_message(payload, now=NOW)
    except mime.MessageBuildFailed:
        return  # refused is fine too
    _wire_ok(built.data)
    msg = _parsed(built.data)
    assert msg["Bcc"] is None
    assert [k.lower() for k in msg.keys()] == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        *(["x-tag"] if field == "header" else []),
        "x-genro-mail-id",
    ]
    assert msg.get_content().replace("\r\n", "\n") == "hello\n"


def test_uncommon_payloads_take_the_general_path() -> None:
    # A non-ASCII address (SMTPUTF8 or IDNA), an invalid one, a replaced standard header,
    # a string address list: all left to the general path, which decides and reports.
    assert mime._build_common(_payload(to=["jürgen@example.org"]), NOW) is None
    assert mime._build_common(_payload(to=["a@exämple.org"]), NOW) is None
    assert mime._build_common(_payload(to=["not an address"]), NOW) is None
    assert mime._build_common(_payload(headers={"Subject": "x"}), NOW) is None
    assert mime._build_common(_payload(to="b@example.org"), NOW) is None
    with pytest.raises(mime.MessageBuildFailed):
        build_message(_payload(to=["not an address"]), now=NOW)
    built = build_message(_payload(to=["a@exämple.org"]), now=NOW)
    assert built.rcpt_to == ["a@xn--exmple-cua.org"]


def test_date_is_formatted_once_per_second() -> None:
    first = rfc5322_date(NOW)
    assert first == "Thu, 01 Jan 2026 00:00:05 +0000"
    assert rfc5322_date(NOW + 0.5) is first  # the same second: the kept text
    assert rfc5322_date(NOW + 1) == "Thu, 01 Jan 2026 00:00:06 +0000"
    assert rfc5322_date(NOW) == first  # back again: recomputed, not stale
    assert rfc5322_date(NOW - 86400) == "Wed, 31 Dec 2025 00:00:05 +0000"
