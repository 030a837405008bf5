"""E-mail address syntax (reference §6.5) and the string form of address lists (reference §6.2).

The add-messages path checks every address of every message, so this module is a
hand-written scanner over compiled regular expressions instead of the standard
library's header registry (about 5,000 addresses/s there, several hundred thousand
here). What is accepted:

* ``addr-spec`` or ``display-name <addr-spec>``; no groups, no comments, no CR/LF/NUL;
* local part: dot-atom or quoted string, at most 64 octets, UTF-8 allowed (RFC 6532;
  such an address needs SMTPUTF8 to be sent);
* domain: LDH labels (internationalised labels converted with IDNA/UTS-46), each at
  most 63 octets, at most 253 in all, or an address literal ``[IPv4]``/``[IPv6:…]``;
* no blanks inside the addr-spec (RFC 5322 tolerates folding white space around ``@`` and
  ``.``; SMTP paths and the reference's ``a b@example.com`` example do not);
* addr-spec at most 254 octets; a display name is a phrase of atoms (``.`` tolerated,
  as RFC 5322's obsolete phrase syntax allows) and quoted strings.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import NamedTuple

try:  # UTS-46 mapping (what browsers and MTAs do); `idna` ships with httpx.
    import idna as _idna
except ImportError:  # pragma: no cover - the stdlib codec (IDNA 2003) is the fallback
    _idna = None  # type: ignore[assignment]

MAX_ADDRESS_OCTETS = 254
MAX_LOCAL_OCTETS = 64
MAX_DOMAIN_OCTETS = 253

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
# Non-ASCII allowed in addresses (RFC 6532), minus the C1 controls and U+2028/U+2029, which
# some line-splitting code (str.splitlines among it) treats as line breaks.
_UTF8 = r"\u00a0-\u2027\u202a-\U0010ffff"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"

# The common case, `plain.ascii@example.org`: one fullmatch decides it.
_SIMPLE = re.compile(rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@({_LABEL}(?:\.{_LABEL})*)")
# `Name <plain@example.org>` and `"Name, Esq." <plain@example.org>`, names in ASCII or UTF-8.
_SIMPLE_NAMED = re.compile(
    rf"(?:([{_ATEXT}{_UTF8}][{_ATEXT}.{_UTF8}]*(?:[ \t]+[{_ATEXT}.{_UTF8}]+)*)"
    rf'|"([ \t!#-\[\]-~{_UTF8}]*)")?[ \t]*'
    rf"<([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@({_LABEL}(?:\.{_LABEL})*)>"
)
_DOT_ATOM = re.compile(rf"[{_ATEXT}{_UTF8}]+(?:\.[{_ATEXT}{_UTF8}]+)*")
# Inside quotes: printable ASCII but `"` and `\`, space, tab, UTF-8; or a quoted pair.
_QUOTED = re.compile(rf'"((?:[ \t!#-\[\]-~{_UTF8}]|\\[ \t!-~{_UTF8}])*)"')
_LDH_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
# A display-name phrase: atoms (with the obsolete `.`), quoted strings and blanks between.
# The first word is not a bare `.`: obs-phrase is `word *(word / "." / CFWS)`.
_PHRASE = re.compile(
    rf'(?=[{_ATEXT}{_UTF8}"])'
    rf'(?:[{_ATEXT}.{_UTF8}]+|"(?:[ \t!#-\[\]-~{_UTF8}]|\\[ \t!-~{_UTF8}])*"|[ \t]+)+'
)
_PHRASE_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|[ \t]+|[^ \t"]+')
_QUOTED_PAIR = re.compile(r"\\(.)")
_FORBIDDEN = re.compile(r"[\r\n\x00]")
_WSP = " \t"


class InvalidAddress(ValueError):
    """The text is not one valid address; ``args[0]`` is the text as given."""


class Address(NamedTuple):
    """One parsed address.

    ``addr_spec`` is ``local_part@domain`` as written; ``ascii_domain`` is the domain in
    IDNA ASCII form (equal to ``domain`` when that is already ASCII or a literal);
    ``smtputf8`` is true when the local part is not ASCII, the one case IDNA cannot fix.
    """

    display_name: str | None
    local_part: str
    domain: str
    ascii_domain: str
    smtputf8: bool
    addr_spec: str

    @property
    def ascii_addr_spec(self) -> str:
        """``local_part@ascii_domain``: the envelope form when SMTPUTF8 is not in use."""
        return f"{self.local_part}@{self.ascii_domain}"


# ``Address(...)`` runs the NamedTuple's Python ``__new__``; the tuple's own is several times
# cheaper and makes the same value.
_new_address = tuple.__new__


def parse_address(text: str) -> Address:
    """Parse one address (with or without display name) or raise :class:`InvalidAddress`."""
    s = text.strip(_WSP)
    simple = _SIMPLE.fullmatch(s)
    if simple is not None:
        local, domain = simple.group(1, 2)
        if len(s) > MAX_ADDRESS_OCTETS or len(local) > MAX_LOCAL_OCTETS:
            raise InvalidAddress(text)
        if len(domain) > MAX_DOMAIN_OCTETS:
            raise InvalidAddress(text)
        return _new_address(Address, (None, local, domain, domain, False, s))
    named = _SIMPLE_NAMED.fullmatch(s)
    if named is not None:
        atoms, quoted, local, domain = named.group(1, 2, 3, 4)
        spec = f"{local}@{domain}"
        if len(spec) > MAX_ADDRESS_OCTETS or len(local) > MAX_LOCAL_OCTETS:
            raise InvalidAddress(text)
        if len(domain) > MAX_DOMAIN_OCTETS:
            raise InvalidAddress(text)
        name = " ".join(atoms.split()) if atoms else (quoted or None)
        return _new_address(Address, (name, local, domain, domain, False, spec))
    if not s or _FORBIDDEN.search(s) is not None:
        raise InvalidAddress(text)
    display: str | None = None
    spec = s
    if s[-1] == ">":
        open_at = _angle_open(s)
        if open_at < 0:
            raise InvalidAddress(text)
        display = _display_name(s[:open_at].rstrip(_WSP), text)
        spec = s[open_at + 1 : -1]
    local, domain = _split_addr_spec(spec, text)
    ascii_domain = _domain_ascii(domain, text)
    if len(spec.encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise InvalidAddress(text)
    return Address(display, local, domain, ascii_domain, not local.isascii(), spec)


def address_needs_smtputf8(text: str) -> bool:
    """Whether the address ``text`` needs SMTPUTF8 (``parse_address(text).smtputf8``);
    raises :class:`InvalidAddress` exactly when :func:`parse_address` does.

    The check of every recipient at enqueue: a plain ``local@domain`` is decided by one
    match and two lengths, with no ``Address`` made.
    """
    s = text.strip(_WSP)
    simple = _SIMPLE.fullmatch(s)
    if simple is None:
        return parse_address(text).smtputf8
    if len(s) > MAX_ADDRESS_OCTETS or simple.end(1) > MAX_LOCAL_OCTETS:
        raise InvalidAddress(text)
    if len(s) - simple.start(2) > MAX_DOMAIN_OCTETS:
        raise InvalidAddress(text)
    return False


def is_valid_address(text: str) -> bool:
    """True when :func:`parse_address` accepts ``text``."""
    try:
        parse_address(text)
    except InvalidAddress:
        return False
    return True


def parse_bare_address(text: str) -> Address:
    """Parse an address that must not carry a display name (``return_path``, reference §6.2).

    ``<addr-spec>`` without a name is tolerated, as SMTP paths are written that way.
    """
    address = parse_address(text)
    if address.display_name is not None:
        raise InvalidAddress(text)
    return address


def split_address_list(text: str) -> list[str]:
    """Split the string form of an address list at top-level commas (reference §6.2).

    Commas inside quoted strings or angle brackets do not split; elements are stripped and
    empty ones dropped. The elements are not validated here.
    """
    if '"' not in text and "<" not in text:
        # No quoting at all: every comma splits (the overwhelmingly common case).
        return [part for part in (p.strip(_WSP) for p in text.split(",")) if part]
    parts: list[str] = []
    start = 0
    in_quotes = False
    escaped = False
    depth = 0
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif in_quotes:
            if char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == "<":
            depth += 1
        elif char == ">":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part for part in (p.strip(_WSP) for p in parts) if part]


def _angle_open(s: str) -> int:
    """Index of the ``<`` that opens the angle address, skipping quoted display names."""
    in_quotes = False
    escaped = False
    for index, char in enumerate(s):
        if escaped:
            escaped = False
        elif in_quotes:
            if char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == "<":
            return index
    return -1


def _display_name(phrase: str, text: str) -> str | None:
    if not phrase:
        return None
    if _PHRASE.fullmatch(phrase) is None:
        raise InvalidAddress(text)
    if '"' not in phrase:
        return " ".join(phrase.split())
    # Unquote each quoted string and keep atoms as they are; a run of blanks between words
    # becomes one space, and words written without blanks between them stay joined.
    parts = []
    for token in _PHRASE_TOKEN.finditer(phrase):
        quoted = token.group(1)
        if quoted is not None:
            parts.append(_QUOTED_PAIR.sub(r"\1", quoted))
        elif token.group(0)[0] in _WSP:
            parts.append(" ")
        else:
            parts.append(token.group(0))
    name = "".join(parts)
    return name or None


def _split_addr_spec(spec: str, text: str) -> tuple[str, str]:
    if spec.startswith('"'):
        quoted = _QUOTED.match(spec)
        # An empty quoted local part (`""@host`) is legal RFC 5322 but names no mailbox.
        if quoted is None or not quoted.group(1) or spec[quoted.end() : quoted.end() + 1] != "@":
            raise InvalidAddress(text)
        local = quoted.group(0)
        domain = spec[quoted.end() + 1 :]
    else:
        local, at, domain = spec.partition("@")
        if not at or _DOT_ATOM.fullmatch(local) is None:
            raise InvalidAddress(text)
    if not domain or len(local.encode("utf-8")) > MAX_LOCAL_OCTETS:
        raise InvalidAddress(text)
    return local, domain


def _domain_ascii(domain: str, text: str) -> str:
    if domain[0] == "[":
        if domain[-1] != "]" or not _is_address_literal(domain[1:-1]):
            raise InvalidAddress(text)
        return domain
    if domain.isascii():
        if len(domain) > MAX_DOMAIN_OCTETS or _LDH_DOMAIN.fullmatch(domain) is None:
            raise InvalidAddress(text)
        return domain
    ascii_domain = _idna_encode(domain)
    if ascii_domain is None:
        raise InvalidAddress(text)
    return ascii_domain


def _is_address_literal(inner: str) -> bool:
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def _idna_encode(domain: str) -> str | None:
    """The IDNA ASCII form of an internationalised domain, ``None`` when it has none.

    Cached: a batch usually repeats a handful of sender and recipient domains.
    """
    try:
        if _idna is not None:
            encoded = _idna.encode(domain, uts46=True).decode("ascii")
        else:  # pragma: no cover
            encoded = domain.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return None
    if len(encoded) > MAX_DOMAIN_OCTETS or _LDH_DOMAIN.fullmatch(encoded) is None:
        return None
    return encoded


def domain_to_ascii(domain: str) -> str | None:
    """IDNA ASCII form of a host/domain name (ASCII names are returned unchanged)."""
    if domain.isascii():
        return domain
    return _idna_encode(domain)
