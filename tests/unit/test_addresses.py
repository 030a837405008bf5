"""Address syntax (reference §6.5) and address-list splitting (reference §6.2).

The property test compares the fast scanner with a slow reference built on the standard
library's header registry, on plain-ASCII inputs generated around the interesting edges
(dots, quotes, hyphens, brackets, commas, blanks).
"""

from __future__ import annotations

import ipaddress
import time
from email import _header_value_parser as _parser

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mailproxyd.core.addresses import (
    InvalidAddress,
    address_needs_smtputf8,
    domain_to_ascii,
    is_valid_address,
    parse_address,
    parse_bare_address,
    split_address_list,
)

REJECTED = [
    "not-an-address",
    "x@",
    "@y",
    "bad@@example..test",
    "a b@example.com",
    '"x"\r\nBcc: y@z',
    "",
    "   ",
    "a@b.c\n",
    "a\x00@b.c",
    "a@-b.example",
    "a@b-.example",
    "a@b_c.example",
    "a@example.",
    ".a@example.org",
    "a.@example.org",
    "a..b@example.org",
    "group: a@b.example;",
    "a@b.example (comment)",
    "Smith, Ann <ann@example.org>",
    "<>",
    "Ann <ann@example.org",
    "ann@example.org>",
    "a@[300.1.1.1]",
    "a@[IPv6:zz::1]",
    "a@b.example, c@d.example",
    '"Ann\x85" <ann@example.org>',  # C1 controls and U+2028 count as line breaks somewhere
    "Ann\u2028 <ann@example.org>",
    "a\u2029@example.org",
    "x" * 65 + "@example.org",
    "a@" + "b" * 64 + ".example",
    "a@" + ".".join(["b" * 60] * 5),
]

ACCEPTED = {
    "ann@example.org": (None, "ann", "example.org", "example.org", False),
    "Ann Smith <ann@example.org>": ("Ann Smith", "ann", "example.org", "example.org", False),
    '"Smith, Ann" <ann@example.org>': ("Smith, Ann", "ann", "example.org", "example.org", False),
    "josé@exämple.org": (None, "josé", "exämple.org", "xn--exmple-cua.org", True),
    "ops@[192.0.2.10]": (None, "ops", "[192.0.2.10]", "[192.0.2.10]", False),
    "user@localhost": (None, "user", "localhost", "localhost", False),
    "<ann@example.org>": (None, "ann", "example.org", "example.org", False),
    "  ann@example.org  ": (None, "ann", "example.org", "example.org", False),
    '"a b"@example.org': (None, '"a b"', "example.org", "example.org", False),
    '"a\\"b" <x@example.org>': ('a"b', "x", "example.org", "example.org", False),
    "J. Smith <j@example.org>": ("J. Smith", "j", "example.org", "example.org", False),
    "Zoë Ünal <z@bücher.example>": (
        "Zoë Ünal",
        "z",
        "bücher.example",
        "xn--bcher-kva.example",
        False,
    ),
    "ops@[IPv6:2001:db8::1]": (None, "ops", "[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]", False),
    "o'brien+tag@sub.example.co.uk": (
        None,
        "o'brien+tag",
        "sub.example.co.uk",
        "sub.example.co.uk",
        False,
    ),
    "x" * 64 + "@example.org": (None, "x" * 64, "example.org", "example.org", False),
}


@pytest.mark.parametrize("text", REJECTED)
def test_rejected_examples(text: str) -> None:
    with pytest.raises(InvalidAddress):
        parse_address(text)
    assert not is_valid_address(text)
    with pytest.raises(InvalidAddress):
        address_needs_smtputf8(text)


@pytest.mark.parametrize("text", sorted(ACCEPTED))
def test_accepted_examples(text: str) -> None:
    address = parse_address(text)
    expected = ACCEPTED[text]
    assert (
        address.display_name,
        address.local_part,
        address.domain,
        address.ascii_domain,
        address.smtputf8,
    ) == expected
    assert address.addr_spec == f"{address.local_part}@{address.domain}"
    assert address.ascii_addr_spec == f"{address.local_part}@{address.ascii_domain}"
    assert address_needs_smtputf8(text) is address.smtputf8


def test_whole_address_limit_counts_octets() -> None:
    # 64 + 1 + 189 = 254 octets is the maximum; one more is too long.
    local = "x" * 64
    domain = ".".join(["d" * 62, "d" * 62, "d" * 62]) + ".ab"  # 191 octets
    assert len(f"{local}@{domain}") == 256
    with pytest.raises(InvalidAddress):
        parse_address(f"{local}@{domain}")
    with pytest.raises(InvalidAddress):
        address_needs_smtputf8(f"{local}@{domain}")
    assert parse_address(f"{local}@{domain[2:]}").domain == domain[2:]
    assert address_needs_smtputf8(f"{local}@{domain[2:]}") is False
    # The local part and the domain each at their limit, and one past it.
    for local_size, domain_size in ((64, 63), (65, 63)):
        text = f"{'l' * local_size}@{'d' * domain_size}.example"
        assert is_valid_address(text) is (local_size <= 64)
        if local_size <= 64:
            assert address_needs_smtputf8(text) is False
        else:
            with pytest.raises(InvalidAddress):
                address_needs_smtputf8(text)
    # Non-ASCII counts in UTF-8 octets: 33 two-octet characters exceed the 64-octet local part.
    with pytest.raises(InvalidAddress):
        parse_address("é" * 33 + "@example.org")
    assert parse_address("é" * 32 + "@example.org").smtputf8


def test_bare_address_refuses_display_name() -> None:
    assert parse_bare_address("bounce@acme.example").addr_spec == "bounce@acme.example"
    assert parse_bare_address("<bounce@acme.example>").addr_spec == "bounce@acme.example"
    with pytest.raises(InvalidAddress):
        parse_bare_address("Bounces <bounce@acme.example>")


def test_domain_to_ascii() -> None:
    assert domain_to_ascii("example.org") == "example.org"
    assert domain_to_ascii("exämple.org") == "xn--exmple-cua.org"
    assert domain_to_ascii("ex ämple.org") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@x.example, b@y.example", ["a@x.example", "b@y.example"]),
        (
            '"Smith, Ann" <ann@example.org>, bob@example.org',
            ['"Smith, Ann" <ann@example.org>', "bob@example.org"],
        ),
        ("Ann <a,b@example.org>, c@example.org", ["Ann <a,b@example.org>", "c@example.org"]),
        ('"a\\", b" <x@example.org>,y@example.org', ['"a\\", b" <x@example.org>', "y@example.org"]),
        (" , a@x.example,, ,b@y.example , ", ["a@x.example", "b@y.example"]),
        ("", []),
        (",,", []),
        ("a@x.example", ["a@x.example"]),
    ],
)
def test_split_address_list(text: str, expected: list[str]) -> None:
    assert split_address_list(text) == expected


# --- property test against the standard library -------------------------------------------


def _reference_domain_ok(domain: str) -> bool:
    if domain.startswith("[") and domain.endswith("]"):
        inner = domain[1:-1]
        try:
            if inner[:5].lower() == "ipv6:":
                ipaddress.IPv6Address(inner[5:])
            else:
                ipaddress.IPv4Address(inner)
        except ValueError:
            return False
        return True
    if not domain or len(domain) > 253:
        return False
    for label in domain.split("."):
        if not 1 <= len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return False
        if not all(c.isascii() and (c.isalnum() or c == "-") for c in label):
            return False
    return True


class ReferenceBroken(Exception):
    """The standard library's parser crashed: the example says nothing either way."""


def reference(text: str) -> tuple[str | None, str, str] | None:
    """(display name, unquoted local part, domain) by the stdlib's RFC 5322 parser, or None.

    ``get_mailbox`` is the parser behind ``email.headerregistry`` for one mailbox; a mailbox
    is valid when it parses without defects and nothing but blanks follows it. The reference
    rules the parser does not know (lengths, LDH labels, IP literals) are added here.
    """
    if any(c in text for c in "\r\n\x00"):
        return None
    try:
        mailbox, rest = _parser.get_mailbox(text.strip(" \t"))
    except Exception:
        return None
    # A period inside a display name is RFC 5322's obsolete phrase syntax, which parsers must
    # accept ("J. Smith"); the parser adds a spurious "comment found without atom" when the
    # phrase ends in a period. Every other defect makes the address invalid.
    tolerated = ("period in 'phrase'", "comment found without atom")
    defects = [d for d in mailbox.all_defects if str(d) not in tolerated]
    if rest.strip(" \t") or defects:
        return None
    try:
        display_name = mailbox.display_name
    except Exception as exc:  # the parser trips over some obsolete phrases of its own making
        raise ReferenceBroken(text) from exc
    local, domain = mailbox.local_part, mailbox.domain
    if not local or not domain or not _reference_domain_ok(domain):
        return None
    if domain.startswith("[") and domain not in text:
        return None  # obsolete quoted pairs inside a literal (`[\\1.2.3.4]`): not an IP literal
    spec = mailbox.addr_spec
    if len(spec.rpartition("@")[0].encode()) > 64 or len(spec.encode()) > 254:
        return None
    return (display_name or None, local, domain)


def _unquote(local: str) -> str:
    if local.startswith('"'):
        inner = local[1:-1]
        out, escaped = [], False
        for char in inner:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return local


def mine(text: str) -> tuple[str | None, str, str] | None:
    try:
        address = parse_address(text)
    except InvalidAddress:
        return None
    return (address.display_name, _unquote(address.local_part), address.domain)


_atom = st.text("abcxyz019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=6)
_dots = st.lists(st.sampled_from(["", ".", ".."]), min_size=0, max_size=1)
_dot_atom = st.builds(
    lambda lead, parts, trail: lead + ".".join(parts) + trail,
    st.sampled_from(["", "", "", "."]),
    st.lists(_atom, min_size=1, max_size=3),
    st.sampled_from(["", "", "", "."]),
)
_quoted_local = st.builds(
    lambda body: '"' + body + '"',
    st.text('ab ,@<>.x\\"', min_size=0, max_size=6).map(
        lambda s: s.replace("\\", "\\\\").replace('"', '\\"')
    ),
)
_label = st.text("abz09-", min_size=0, max_size=5)
_domain = st.one_of(
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    st.sampled_from(["[192.0.2.1]", "[IPv6:2001:db8::1]", "[1.2.3]", "[IPv6:::1]"]),
)
_display = st.one_of(
    st.none(),
    st.lists(st.text("AnSmith", min_size=1, max_size=5), min_size=1, max_size=3).map(" ".join),
    st.text('Ann, Sm"<>@', min_size=0, max_size=6).map(
        lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    ),
)


@st.composite
def candidates(draw: st.DrawFn) -> str:
    local = draw(st.one_of(_dot_atom, _dot_atom, _quoted_local))
    domain = draw(_domain)
    spec = f"{local}@{domain}"
    display = draw(_display)
    form = draw(st.sampled_from(["bare", "angle", "named"]))
    if form == "angle":
        text = f"<{spec}>"
    elif form == "named" and display is not None:
        text = f"{display} <{spec}>"
    else:
        text = spec
    if draw(st.booleans()) and draw(st.booleans()):
        position = draw(st.integers(0, len(text)))
        # No blank: RFC 5322 allows folding white space around `@` and `.` of an addr-spec
        # (the registry accepts `a @b.example`); the reference's rule keeps addr-specs free of
        # blanks (`a b@example.com` is rejected), as SMTP paths are.
        char = draw(st.sampled_from(list(',;:@<>[]".\\')))
        text = text[:position] + char + text[position:]
    return text


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(candidates())
@example('"Smith, Ann" <ann@example.org>')
@example("a..b@example.org")
@example('"" <a@b.example>')
@example('"a". <a@b.example>')
@example("A AAA AAA .<a@b.example>")
def test_agrees_with_header_registry(text: str) -> None:
    try:
        expected = reference(text)
    except ReferenceBroken:
        assume(False)
    assert mine(text) == expected, text
    if expected is None:
        with pytest.raises(InvalidAddress):
            address_needs_smtputf8(text)
    else:
        assert address_needs_smtputf8(text) is parse_address(text).smtputf8


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(candidates(), min_size=1, max_size=3), st.sampled_from([",", ", ", " ,", ",,"]))
def test_list_of_valid_addresses_splits_back(elements: list[str], separator: str) -> None:
    valid = [element for element in elements if mine(element) is not None]
    assume(valid)
    assert split_address_list(separator.join(valid)) == [element.strip() for element in valid]


def test_throughput_simple_addresses() -> None:
    addresses = [f"user{i}.name@host{i % 50}.example.org" for i in range(100_000)]
    started = time.process_time()
    for address in addresses:
        parse_address(address)
    rate = len(addresses) / (time.process_time() - started)
    print(f"\nparse_address: {rate:,.0f} simple addresses/s of CPU time")
    named = [f"User {i} <user{i}@example.org>" for i in range(100_000)]
    started = time.process_time()
    for address in named:
        parse_address(address)
    print(
        f"parse_address: {len(named) / (time.process_time() - started):,.0f} named addresses/s of CPU time"
    )
    assert parse_address(addresses[-1]).domain == "host49.example.org"
