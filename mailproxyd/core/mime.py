"""Message construction (reference §7): a stored message payload → wire bytes + envelope.

Pure and fast. The standard library's ``EmailMessage`` costs about a millisecond per message
because it builds a policy-driven object tree and refolds every header through the header
registry; a sender that builds every attempt from scratch would be capped by it. This module
writes the headers and MIME parts directly instead, using only the cheap primitives of the
standard library (``binascii`` for base64 and quoted-printable, ``urllib.parse.quote`` for
RFC 2231). The tests parse the output back with ``email.policy.default`` to prove that every
field survives exactly.

Rules that shape the code:

* Every line ends with CRLF and no line exceeds 998 octets; header lines are folded at 78 where
  the value allows it (only at existing spaces for plain text, so unfolding restores the value).
* Text that cannot be written verbatim in a header (non-ASCII, control characters, leading
  or trailing blanks, or something that would be mistaken for an encoded word) becomes RFC 2047
  UTF-8 ``B`` encoded words, split on character boundaries. Non-ASCII display names are one
  encoded word each (see ``_display_name``); ASCII ones are atoms or a quoted string.
* Bodies are ``7bit`` when they are ASCII with lines of at most 998 octets, otherwise
  quoted-printable; attachments are always base64 with 76-character lines.
* The single-part message data always ends with CRLF: SMTP needs the line break before the
  terminating dot anyway, so a body without a final line break decodes with one appended.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec

from mailproxyd.core.addresses import InvalidAddress, domain_to_ascii, parse_address
from mailproxyd.core.message_ids import normalise_message_id
from mailproxyd.core.timefmt import rfc5322_date as format_date

__all__ = [
    "Built",
    "FileSegment",
    "MessageBuildFailed",
    "Part",
    "base64_lines_size",
    "build_message",
    "format_date",
]

CRLF = "\r\n"
_MAX_LINE = 78  # RFC 5322 "SHOULD" limit for header lines and our folding target
_HARD_LINE = 998  # RFC 5322 "MUST" limit, CRLF excluded
_EW_PREFIX = "=?utf-8?b?"
_EW_OVERHEAD = len(_EW_PREFIX) + 2  # "=?utf-8?b?" + "?="
_EW_MAX_BYTES = 45  # 45 bytes → 60 base64 chars → a 72-char encoded word (limit 75)

# Characters that force a display name into a quoted string (RFC 5322 "specials").
_SPECIALS = frozenset('()<>[]:;@\\,."')
# Printable ASCII, space included: anything else in a header value needs encoded words.
_PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F))

# Custom headers may replace these (case-insensitively); the key is the lower-case name.
_REPLACEABLE = ("from", "to", "cc", "reply-to", "subject", "date", "message-id")


class MessageBuildFailed(ValueError):
    """The payload cannot be turned into a message (reported as ``message build failed: …``)."""


@dataclass(frozen=True, slots=True)
class Part:
    """One fetched attachment: the clean file name (reference §11.6), its content, an optional type.

    Large content stays in a file: ``path`` (``size`` bytes) replaces ``content``, and the
    message carries a :class:`FileSegment` the SMTP driver encodes while it sends, so memory
    does not grow with the attachment (reference §11.5).
    """

    filename: str
    content: bytes
    mime_type: str | None = None
    path: str | None = None
    size: int = 0


@dataclass(frozen=True, slots=True)
class FileSegment:
    """Base64 of the file at ``path`` (``size`` bytes) in 76-character CRLF lines."""

    path: str
    size: int

    @property
    def encoded_size(self) -> int:
        return base64_lines_size(self.size)


def base64_lines_size(size: int) -> int:
    """Octets of :func:`_base64_lines` output for ``size`` bytes of content."""
    if size <= 0:
        return 0
    chars = 4 * ((size + 2) // 3)
    return chars + 2 * ((chars + 75) // 76)


@dataclass(frozen=True, slots=True)
class Built:
    """The result of construction: what goes after ``DATA`` and the SMTP envelope."""

    data: bytes
    mail_from: str
    rcpt_to: list[str]
    message_id: str
    needs_smtputf8: bool = False
    needs_8bitmime: bool = False
    #: With file-backed parts: the data in order, ``data`` then being empty. Every segment
    #: starts at the beginning of a line, so each can be dot-stuffed on its own.
    segments: tuple[bytes | FileSegment, ...] = ()

    @property
    def size(self) -> int:
        """Octets of the message data, as declared with ``SIZE=``."""
        if self.segments:
            return sum(len(s) if isinstance(s, bytes) else s.encoded_size for s in self.segments)
        return len(self.data)


# --------------------------------------------------------------------------- addresses


def _split_address(text: str) -> tuple[str, str]:
    """``'Name <a@b>'`` → ``('Name', 'a@b')``; a bare address has an empty name.

    Parsed by the same code that validated it at enqueue (reference §6.5), so quoting, escapes and
    blanks in display names are understood exactly as they were accepted.
    """
    try:
        address = parse_address(text)
    except InvalidAddress:
        raise MessageBuildFailed(f"invalid address: {text}") from None
    return address.display_name or "", address.addr_spec


def _idna_domain(domain: str) -> str:
    ascii_domain = domain_to_ascii(domain)
    if ascii_domain is None:
        raise MessageBuildFailed(f"invalid domain: {domain}")
    return ascii_domain


def _needs_utf8(addr: str) -> bool:
    """An address needs SMTPUTF8 when its local part is not ASCII (domains have IDNA)."""
    if addr.isascii():
        return False
    at = addr.rfind("@")
    return not addr[: at if at >= 0 else len(addr)].isascii()


def _wire_addr(addr: str, utf8: bool) -> str:
    if utf8 or addr.isascii():
        return addr
    at = addr.rfind("@")
    if at < 0:
        return addr
    return addr[: at + 1] + _idna_domain(addr[at + 1 :])


def _is_atom_phrase(name: str) -> bool:
    """Words of atext separated by single spaces: writable without quotes."""
    if not name or name[0] == " " or name[-1] == " " or "  " in name:
        return False
    return all(ch in _PRINTABLE and ch not in _SPECIALS and ch != '"' for ch in name)


def _display_name(name: str) -> str:
    """The display name as written in a header: atoms, a quoted string or an encoded word."""
    if _is_atom_phrase(name) and "=?" not in name:
        return name
    if all(ch in _PRINTABLE for ch in name):
        # A quoted string keeps every blank exactly, unlike decoded encoded words.
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    # One encoded word for the whole name, even past the 75-character guideline: decoders
    # disagree about the blank between adjacent encoded words in a phrase (RFC 2047 drops
    # it, the standard library keeps one), so splitting would change the name somewhere.
    # Addresses are at most 254 octets (reference §6.5), so the line stays far below 998.
    return _EW_PREFIX + base64.b64encode(name.encode("utf-8")).decode("ascii") + "?="


def _mailbox(name: str, addr: str) -> str:
    return f"{_display_name(name)} <{addr}>" if name else addr


# --------------------------------------------------------------------------- header text


def _encoded_words(text: str, first_room: int = _EW_MAX_BYTES) -> list[str]:
    """RFC 2047 ``B`` encoded words for ``text``, split on character boundaries.

    ``first_room`` bounds the payload bytes of the first word so that it can share the first
    line with the header name.
    """
    room = max(first_room, 12)
    whole = text.encode("utf-8", "surrogatepass")
    if len(whole) <= room:
        return [_EW_PREFIX + base64.b64encode(whole).decode("ascii") + "?="]
    words: list[str] = []
    chunk: list[bytes] = []
    size = 0
    for ch in text:
        b = ch.encode("utf-8", "surrogatepass")
        if size + len(b) > room and chunk:
            words.append(_EW_PREFIX + base64.b64encode(b"".join(chunk)).decode("ascii") + "?=")
            chunk, size, room = [], 0, _EW_MAX_BYTES
        chunk.append(b)
        size += len(b)
    words.append(_EW_PREFIX + base64.b64encode(b"".join(chunk)).decode("ascii") + "?=")
    return words


def _plain_ok(value: str) -> bool:
    """Whether an unstructured value can be written verbatim (and unfolds back exactly)."""
    if not value:
        return True
    if value[0] == " " or value[-1] == " " or "=?" in value:
        return False
    if value.isascii() and value.isprintable():
        return True
    return False


def _fold_tokens(name: str, tokens: Sequence[str]) -> str:
    """``Name: tok tok …`` folded before a space when a line would pass 78 characters.

    Folding turns the space into CRLF + space, so unfolding restores the value exactly.
    """
    head = name + ": "
    line = head + tokens[0]
    if len(tokens) == 1:
        return line
    lines: list[str] = []
    for tok in tokens[1:]:
        if len(line) + 1 + len(tok) > _MAX_LINE and len(line) > len(head):
            lines.append(line)
            line = " " + tok
        else:
            line = line + " " + tok
    lines.append(line)
    return CRLF.join(lines)


def _unstructured(name: str, value: str) -> str:
    """An unstructured header (Subject, custom headers) as folded wire text."""
    if _plain_ok(value):
        if len(name) + 2 + len(value) <= _MAX_LINE or " " not in value:
            line = f"{name}: {value}" if value else f"{name}:"
            if len(line) <= _HARD_LINE:
                return line
        else:
            # Break only before a word, never inside a run of spaces, so that no line is
            # blank; "a  b" becomes the tokens "a " and "b".
            tokens: list[str] = []
            for word in value.split(" "):
                if word == "" and tokens:
                    tokens[-1] += " "
                else:
                    tokens.append(word)
            folded = _fold_tokens(name, tokens)
            if all(len(part) <= _HARD_LINE for part in folded.split(CRLF)):
                return folded
    room = (max(_MAX_LINE - len(name) - 2 - _EW_OVERHEAD, 0) // 4) * 3
    return _fold_tokens(name, _encoded_words(value, room))


def _address_header(name: str, items: Sequence[tuple[str, str]]) -> str:
    """``Name: a, b, c`` folded between addresses (after the comma)."""
    boxes = [_mailbox(display, addr) for display, addr in items]
    tokens = [box + "," for box in boxes[:-1]]
    tokens.append(boxes[-1])
    return _fold_tokens(name, tokens)


def _header_value(value: Any) -> str:
    """Custom header values: strings as given, booleans and numbers in their JSON form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return msgspec.json.encode(value).decode("ascii")
    return str(value)


# --------------------------------------------------------------------------- bodies


def _normalise_breaks(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\n", CRLF)


def _text_part(body: str, subtype: str) -> tuple[list[str], str]:
    """Headers and encoded content of the text body (without a line break added)."""
    wire = _normalise_breaks(body)
    ctype = f'Content-Type: text/{subtype}; charset="utf-8"'
    if wire.isascii() and "\0" not in wire and _lines_fit(wire):
        return [ctype, "Content-Transfer-Encoding: 7bit"], wire
    # binascii's encoder is C; fed LF line breaks it emits LF breaks and "=" LF soft breaks,
    # which all become CRLF (it picks CRLF soft breaks only if the first break is CRLF, so it
    # must not see CRLF input). Trailing blanks, "=" and 8-bit octets come out as =XX.
    raw = wire.replace(CRLF, "\n").encode("utf-8")
    encoded = binascii.b2a_qp(raw, quotetabs=False, istext=True, header=False)
    return [ctype, "Content-Transfer-Encoding: quoted-printable"], encoded.decode("ascii").replace(
        "\n", CRLF
    )


def _lines_fit(wire: str) -> bool:
    if len(wire) <= _HARD_LINE:
        return True
    return all(len(line) <= _HARD_LINE for line in wire.split(CRLF))


def _content_type_for(part: Part) -> str:
    if part.mime_type:
        return part.mime_type
    guessed, _ = mimetypes.guess_type(part.filename, strict=False)
    return guessed or "application/octet-stream"


def _disposition(filename: str) -> str:
    """``Content-Disposition`` with an RFC 2231 encoded name when the name is not plain ASCII."""
    if (
        filename.isascii()
        and filename.isprintable()
        and "=?" not in filename
        and filename.strip(" ") == filename  # parsers strip blanks around quoted names
    ):
        quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
        line = f'Content-Disposition: attachment; filename="{quoted}"'
        if len(line) <= _MAX_LINE:
            return line
        return f'Content-Disposition: attachment;{CRLF} filename="{quoted}"'
    encoded = quote(filename, safe="!#$&+-.^_`|~")
    # RFC 2231 continuations keep each line short; a %XX triple is never split.
    chunks: list[str] = []
    while encoded:
        cut = min(54, len(encoded))
        pct = encoded.rfind("%", max(cut - 2, 0), cut)
        if pct >= 0 and cut < len(encoded):
            cut = pct
        chunks.append(encoded[:cut])
        encoded = encoded[cut:]
    if len(chunks) == 1:
        return f"Content-Disposition: attachment;{CRLF} filename*=utf-8''{chunks[0]}"
    params = [
        f"filename*{i}*=utf-8''{c}" if i == 0 else f"filename*{i}*={c}"
        for i, c in enumerate(chunks)
    ]
    return "Content-Disposition: attachment;" + CRLF + (";" + CRLF).join(" " + p for p in params)


def _base64_lines(content: bytes) -> str:
    """Base64 in 76-character CRLF lines; one C call plus slicing (``encodebytes`` loops)."""
    if not content:
        return ""
    enc = binascii.b2a_base64(content, newline=False).decode("ascii")
    return CRLF.join([enc[i : i + 76] for i in range(0, len(enc), 76)]) + CRLF


def _attachment_headers(part: Part) -> str:
    return (
        f"Content-Type: {_content_type_for(part)}{CRLF}"
        f"{_disposition(part.filename)}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{CRLF}"
    )


def _attachment(part: Part) -> str:
    return _attachment_headers(part) + _base64_lines(part.content)


def _boundary(seed: str, body: str) -> str:
    # Deterministic (pure function) and collision-checked against the only part that is not
    # encoded; base64 and quoted-printable output can never contain "=_".
    digest = hashlib.blake2b(seed.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
    boundary = f"=_mp_{digest}"
    n = 0
    while boundary in body:
        n += 1
        boundary = f"=_mp_{digest}_{n}"
    return boundary


# --------------------------------------------------------------------------- entry point


def _addresses(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [v for v in value if v]


def build_message(
    payload: Mapping[str, Any], *, now: float, attachments: Sequence[Part] = ()
) -> Built:
    """Build the message of one attempt (reference §7).

    ``payload`` is the normalised stored message: ``from``, ``to``/``cc``/``bcc``/``reply_to``
    (lists of address strings), ``subject``, ``body``, ``content_type`` (``plain``/``html``),
    ``headers`` (ordered mapping), ``message_id`` (in ``<>``), ``id``, ``return_path``, and the
    instance's ``bounce_return_path`` when bounce detection is enabled. ``now`` becomes ``Date``.
    Raises :class:`MessageBuildFailed` for a payload that cannot be written.
    """
    if not attachments:
        common = _build_common(payload, now)
        if common is not None:
            return common
    return _build_general(payload, now, attachments)


def _build_general(payload: Mapping[str, Any], now: float, attachments: Sequence[Part]) -> Built:
    try:
        sender = _split_address(str(payload["from"]))
        to = [_split_address(a) for a in _addresses(payload.get("to"))]
        cc = [_split_address(a) for a in _addresses(payload.get("cc"))]
        bcc = [_split_address(a) for a in _addresses(payload.get("bcc"))]
        reply_to = [_split_address(a) for a in _addresses(payload.get("reply_to"))]
        subject = str(payload["subject"])
        client_id = str(payload["id"])
    except KeyError as exc:
        raise MessageBuildFailed(f"missing {exc.args[0]}") from None
    if not to and not cc and not bcc:
        raise MessageBuildFailed("no recipients")

    return_path = payload.get("return_path") or payload.get("bounce_return_path") or sender[1]
    return_path = _split_address(str(return_path))[1]

    header_addrs = [sender[1], *(a for _, a in to), *(a for _, a in cc), *(a for _, a in reply_to)]
    envelope_addrs = [return_path, *(a for _, a in to), *(a for _, a in cc), *(a for _, a in bcc)]
    utf8 = any(_needs_utf8(a) for a in header_addrs) or any(_needs_utf8(a) for a in envelope_addrs)

    rcpt_to: list[str] = []
    seen: set[str] = set()
    for _, addr in (*to, *cc, *bcc):
        wire = _wire_addr(addr, utf8)
        key = wire.casefold()
        if key not in seen:
            seen.add(key)
            rcpt_to.append(wire)

    message_id = _message_id(payload.get("message_id"), client_id, sender[1])
    if message_id is None:
        raise MessageBuildFailed("invalid message_id")

    def wired(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(n, _wire_addr(a, utf8)) for n, a in items]

    # (lower-case name → rendered header) in the order of the reference §7 table.
    std: dict[str, str] = {"from": _address_header("From", wired([sender]))}
    if to:
        std["to"] = _address_header("To", wired(to))
    if cc:
        std["cc"] = _address_header("Cc", wired(cc))
    if reply_to:
        std["reply-to"] = _address_header("Reply-To", wired(reply_to))
    std["subject"] = _unstructured("Subject", subject)
    std["date"] = "Date: " + format_date(now)
    std["message-id"] = "Message-ID: " + message_id

    extra: list[str] = []
    for hname, hvalue in (payload.get("headers") or {}).items():
        if hvalue is None:
            continue
        key = hname.lower()
        rendered = _unstructured(hname, _header_value(hvalue))
        if key in _REPLACEABLE and key in std:
            std[key] = rendered
        else:
            extra.append(rendered)

    subtype = (
        "html" if str(payload.get("content_type") or "plain").lower().endswith("html") else "plain"
    )
    body_headers, body = _text_part(str(payload.get("body") or ""), subtype)

    lines = [*std.values(), "MIME-Version: 1.0"]
    if attachments:
        boundary = _boundary(f"{client_id}\0{message_id}\0{now}", body)
        lines.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        lines.extend(extra)
        lines.append("X-Genro-Mail-ID: " + _unstructured_value(client_id))
        delim = f"--{boundary}{CRLF}"
        # The CRLF before a delimiter belongs to the delimiter, so the body keeps its exact end.
        chunks = [CRLF.join(lines), CRLF, CRLF, delim, CRLF.join(body_headers), CRLF, CRLF]
        chunks.append(body + CRLF)
        streamed: list[str | FileSegment] = []
        for part in attachments:
            chunks.append(delim)
            if part.path is None:
                chunks.append(_attachment(part))
            else:
                chunks.append(_attachment_headers(part))
                streamed += ["".join(chunks), FileSegment(part.path, part.size)]
                chunks = []
        chunks.append(f"--{boundary}--{CRLF}")
        text = "".join(chunks)
        if streamed:
            codec = "utf-8" if utf8 else "ascii"
            segments = tuple(
                s.encode(codec) if isinstance(s, str) else s for s in (*streamed, text)
            )
            return Built(
                data=b"",
                mail_from=_wire_addr(return_path, utf8),
                rcpt_to=rcpt_to,
                message_id=message_id,
                needs_smtputf8=utf8,
                needs_8bitmime=utf8,
                segments=segments,
            )
    else:
        lines.extend(body_headers)
        lines.extend(extra)
        lines.append("X-Genro-Mail-ID: " + _unstructured_value(client_id))
        if body and not body.endswith(CRLF):
            body += CRLF  # SMTP ends the data with a line break anyway
        text = CRLF.join(lines) + CRLF + CRLF + body

    data = text.encode("utf-8") if utf8 else text.encode("ascii")
    return Built(
        data=data,
        mail_from=_wire_addr(return_path, utf8),
        rcpt_to=rcpt_to,
        message_id=message_id,
        needs_smtputf8=utf8,
        needs_8bitmime=utf8,
    )


# --------------------------------------------------------------------------- common case


def _ascii_mailbox(text: str) -> tuple[str, str] | None:
    """``(rendered mailbox, addr-spec)`` of an address whose addr-spec is ASCII, else None.

    None also for an invalid address: the general path then raises the build failure.
    """
    try:
        address = parse_address(text)
    except InvalidAddress:
        return None
    addr = address.addr_spec
    if not addr.isascii():
        return None
    return _mailbox(address.display_name or "", addr), addr


# The sender and the return path repeat from message to message (recipients mostly do not):
# their parsing and rendering is kept. The entries are small immutable tuples of strings.
_cached_mailbox = functools.lru_cache(maxsize=256)(_ascii_mailbox)


def _common_list(value: Any) -> list[tuple[str, str]] | None:
    """The mailboxes of an address list of the common case; None when it is not one."""
    if not value:
        return []
    if type(value) is not list:
        return None
    out = []
    for text in value:
        if not text:
            continue
        if type(text) is not str:
            return None
        box = _ascii_mailbox(text)
        if box is None:
            return None
        out.append(box)
    return out


def _common_address_header(name: str, boxes: list[tuple[str, str]]) -> str:
    if len(boxes) == 1:
        return f"{name}: {boxes[0][0]}"
    tokens = [box + "," for box, _ in boxes[:-1]]
    tokens.append(boxes[-1][0])
    return _fold_tokens(name, tokens)


def _build_common(payload: Mapping[str, Any], now: float) -> Built | None:
    """The common message, without attachments and with ASCII addresses, or None.

    What most attempts are: a text or HTML body, a few recipients, perhaps some custom
    headers that replace none of the standard ones. The output is byte for byte the general
    path's (``tests/unit/test_mime.py`` compares both on generated payloads); the saving is
    the work that case does not need: the SMTPUTF8 and IDNA decisions (every addr-spec is
    ASCII), the header replacement bookkeeping, and the parsing of a sender and return path
    seen before. None sends the payload to the general path, which also reports every error.
    """
    get = payload.get
    sender_text = get("from")
    subject = get("subject")
    client_id = get("id")
    if type(sender_text) is not str or type(subject) is not str or type(client_id) is not str:
        return None
    sender = _cached_mailbox(sender_text)
    to = _common_list(get("to"))
    cc = _common_list(get("cc"))
    bcc = _common_list(get("bcc"))
    reply_to = _common_list(get("reply_to"))
    if sender is None or to is None or cc is None or bcc is None or reply_to is None:
        return None
    if not to and not cc and not bcc:
        return None
    return_path = get("return_path") or get("bounce_return_path")
    if return_path:
        if type(return_path) is not str:
            return None
        found = _cached_mailbox(return_path)
        if found is None:
            return None
        mail_from = found[1]
    else:
        mail_from = sender[1]

    extra: list[str] = []
    headers = get("headers")
    if headers:
        for hname, hvalue in headers.items():
            if hvalue is None:
                continue
            if hname.lower() in _REPLACEABLE:
                return None
            extra.append(_unstructured(hname, _header_value(hvalue)))

    message_id = _message_id(get("message_id"), client_id, sender[1])
    if message_id is None:
        return None

    rcpt_to: list[str] = []
    seen: set[str] = set()
    for group in (to, cc, bcc):
        for _, addr in group:
            key = addr.casefold()
            if key not in seen:
                seen.add(key)
                rcpt_to.append(addr)

    lines = [f"From: {sender[0]}"]
    if to:
        lines.append(_common_address_header("To", to))
    if cc:
        lines.append(_common_address_header("Cc", cc))
    if reply_to:
        lines.append(_common_address_header("Reply-To", reply_to))
    lines.append(_unstructured("Subject", subject))
    lines.append("Date: " + format_date(now))
    lines.append("Message-ID: " + message_id)
    lines.append("MIME-Version: 1.0")
    subtype = "html" if str(get("content_type") or "plain").lower().endswith("html") else "plain"
    body_headers, body = _text_part(str(get("body") or ""), subtype)
    lines += body_headers
    lines += extra
    lines.append("X-Genro-Mail-ID: " + _unstructured_value(client_id))
    if body and not body.endswith(CRLF):
        body += CRLF
    text = CRLF.join(lines) + CRLF + CRLF + body
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:  # not expected: every part above is ASCII by construction
        return None
    return Built(data=data, mail_from=mail_from, rcpt_to=rcpt_to, message_id=message_id)


def _unstructured_value(value: str) -> str:
    """The value part of an unstructured header named ``X-Genro-Mail-ID``."""
    return _unstructured("X-Genro-Mail-ID", value)[len("X-Genro-Mail-ID: ") :]


def _message_id(given: Any, client_id: str, sender: str) -> str | None:
    """The ``Message-ID`` to write: the stored one in ``<>``, None when it is not a valid id.

    Checked here too, not only at enqueue: a value with a line break would otherwise become
    a header of its own.
    """
    if not given:
        return _fallback_message_id(client_id, sender)
    return normalise_message_id(given) if type(given) is str else None


def _fallback_message_id(client_id: str, sender: str) -> str:
    # The store generates Message-IDs at enqueue (reference §7); this keeps a payload without one
    # buildable, and stable across attempts because it depends only on the message.
    digest = hashlib.blake2b(client_id.encode("utf-8", "surrogatepass"), digest_size=16)
    domain = _idna_domain(sender.rpartition("@")[2] or "localhost")
    return f"<{digest.hexdigest()}@{domain}>"
