"""Reading one message of the bounce mailbox (reference §12): facts in, bounce facts out.

:func:`parse_bounce` takes the raw bytes of a message and says what it is:

* a :class:`Bounce` — a DSN (``multipart/report; report-type=delivery-status``) with a recipient
  whose ``Action`` is ``failed`` or ``delayed``, or a bounce-like message recognised by its
  ``From`` or ``Subject`` — with the reference §12 fields and what identifies the original message (its
  ``Message-ID`` and ``X-Genro-Mail-ID`` from the returned headers);
* :class:`NotBounce` — anything else (a reply, a success notification, spam);
* :class:`Malformed` — a message whose structure cannot be read (broken MIME boundaries, a
  header section that is not one, a DSN without its status part).

The recipient of a non-DSN bounce only serves to tell two bounces of one message apart (reference §12
"same message, code and recipient"); GNU Mailman's ``flufl.bounce`` detectors find it in the
many formats that are not DSNs (qmail, Exim, Exchange, Yahoo, …). Pure code: no I/O.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.message
import email.parser
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from typing import Final

import flufl.bounce

REASON_MAX: Final = 500
BACKOFF_MAX_FACTOR: Final = 10
TEXT_REASON_LINES: Final = 5

_BOUNCE_FROM: Final = re.compile(r"mailer-daemon|postmaster|mail-daemon", re.I)
_BOUNCE_SUBJECT: Final = re.compile(
    r"undeliverable|delivery status notification \(failure\)"
    r"|(mail|message|delivery) (delivery )?failed|returned mail|failure notice",
    re.I,
)
_STATUS: Final = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_TEXT_CODE: Final = re.compile(r"(?<![\w.])[45]\d\d(?!\w|\.\d)")
_MESSAGE_ID_LINE: Final = re.compile(
    r"^[ \t>]*Message-ID:[ \t]*(.*(?:\r?\n[ \t]+.*)*)", re.I | re.M
)
_MAIL_ID_LINE: Final = re.compile(r"^[ \t>]*X-Genro-Mail-ID:[ \t]*(.*)$", re.I | re.M)
_ANGLE: Final = re.compile(r"<([^<>\s]+)>")
_FOLD: Final = re.compile(r"\r?\n[ \t]+")
_TAG: Final = re.compile(r"<[^>]*>")
# MIME defects that mean the structure of a message cannot be trusted.
_FATAL_DEFECTS: Final = (
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.MissingHeaderBodySeparatorDefect,
)
_RETURNED_MESSAGE_TYPES: Final = ("message/rfc822", "message/global")
_RETURNED_HEADER_TYPES: Final = ("text/rfc822-headers", "message/rfc822-headers")
_STATUS_TYPES: Final = ("message/delivery-status", "message/global-delivery-status")


@dataclass(frozen=True)
class Bounce:
    """A bounce: the reference §12 fields and what identifies the original message."""

    bounce_type: str  # "hard" or "soft"
    bounce_code: str | None
    bounce_reason: str | None
    recipient: str | None  # the failed recipient, lower-case, when known
    message_id: str | None  # the original Message-ID, in angle brackets
    mail_id: str | None  # the original X-Genro-Mail-ID (the client id)
    dsn: bool  # True for a DSN, False for a bounce-like text message


@dataclass(frozen=True)
class NotBounce:
    """Not a bounce; ``why`` says so in a few words (for the INFO line)."""

    why: str


@dataclass(frozen=True)
class Malformed:
    """The message cannot be read; ``why`` is the reason (for ``bounce_last_error``)."""

    why: str


Parsed = Bounce | NotBounce | Malformed


def parse_bounce(raw: bytes) -> Parsed:
    """What the message ``raw`` (as fetched from the mailbox) is, per reference §12."""
    if not raw.strip():
        return Malformed("empty message")
    try:
        msg = email.message_from_bytes(raw)
    except Exception as exc:  # the parser is lenient; this is only a safety net
        return Malformed(f"unreadable MIME structure ({type(exc).__name__})")
    broken = _fatal_defect(msg)
    if broken is not None:
        return Malformed(broken)
    try:
        if _is_dsn(msg):
            return _parse_dsn(msg)
        if _looks_like_bounce(msg):
            return _parse_text_bounce(msg)
    except (LookupError, ValueError, TypeError, AttributeError) as exc:
        return Malformed(f"unreadable MIME structure ({type(exc).__name__})")
    return NotBounce("not a bounce")


# --------------------------------------------------------------------------- recognition


def _fatal_defect(msg: Message) -> str | None:
    for part in msg.walk():
        for defect in getattr(part, "defects", ()):
            if isinstance(defect, _FATAL_DEFECTS):
                return _defect_text(defect)
    return None


def _defect_text(defect: email.errors.MessageDefect) -> str:
    if isinstance(defect, email.errors.NoBoundaryInMultipartDefect):
        return "multipart message without a boundary"
    if isinstance(defect, email.errors.StartBoundaryNotFoundDefect):
        return "multipart boundary not found in the body"
    if isinstance(defect, email.errors.MissingHeaderBodySeparatorDefect):
        return "malformed header section"
    return "inconsistent multipart structure"


def _is_dsn(msg: Message) -> bool:
    return (
        msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type", "") or "").lower() == "delivery-status"
    )


def _looks_like_bounce(msg: Message) -> bool:
    return bool(
        _BOUNCE_FROM.search(header_text(msg.get("From")))
        or _BOUNCE_SUBJECT.search(header_text(msg.get("Subject")))
    )


def header_text(value: object) -> str:
    """A header value as text: RFC 2047 words decoded, folding removed ('' when absent)."""
    if value is None:
        return ""
    text = str(value)
    try:
        text = str(email.header.make_header(email.header.decode_header(text)))
    except (email.errors.HeaderParseError, LookupError, UnicodeError, ValueError):
        pass
    return _FOLD.sub(" ", text).strip()


# --------------------------------------------------------------------------- DSN


def _parse_dsn(msg: Message) -> Parsed:
    blocks = _status_blocks(msg)
    if blocks is None:
        return Malformed("delivery status notification without a delivery-status part")
    for block in blocks[1:]:  # the first block holds the per-message fields
        action = header_text(block.get("Action")).lower()
        if action not in ("failed", "delayed"):
            continue
        status_match = _STATUS.search(header_text(block.get("Status")))
        code = status_match.group(0) if status_match else None
        status_class = status_match.group(1) if status_match else None
        # "failed" is final whatever the class (a message expired in the queue has 4.x.x).
        hard = status_class == "5" or action == "failed"
        diagnostic = header_text(block.get("Diagnostic-Code")) or None
        recipient = _address_field(block.get("Final-Recipient")) or _address_field(
            block.get("Original-Recipient")
        )
        message_id, mail_id = _original_ids(msg)
        return Bounce(
            bounce_type="hard" if hard else "soft",
            bounce_code=code,
            bounce_reason=_cut(diagnostic),
            recipient=recipient,
            message_id=message_id,
            mail_id=mail_id,
            dsn=True,
        )
    return NotBounce("delivery status notification without a failed or delayed recipient")


def _status_blocks(msg: Message) -> list[Message] | None:
    """The field blocks of the first delivery-status part, or None when there is none."""
    for part in msg.walk():
        if part.get_content_type() not in _STATUS_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and all(isinstance(p, Message) for p in payload):
            return list(payload)
        text = _decoded_text(part)
        parser = email.parser.HeaderParser()
        blocks = [parser.parsestr(chunk) for chunk in re.split(r"\r?\n\s*\r?\n", text.strip())]
        return [b for b in blocks if len(b)] or None
    return None


def _address_field(value: object) -> str | None:
    """``rfc822; ann@example.org`` → ``ann@example.org`` (lower-case)."""
    text = header_text(value)
    if not text:
        return None
    address = text.split(";", 1)[1] if ";" in text else text
    address = address.strip().strip("<>").strip()
    return address.lower() or None


# --------------------------------------------------------------------------- other bounces


def _parse_text_bounce(msg: Message) -> Bounce:
    text = _bounce_text(msg)
    code_match = _TEXT_CODE.search(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = "\n".join(lines[:TEXT_REASON_LINES]) or None
    message_id, mail_id = _original_ids(msg)
    return Bounce(
        bounce_type="hard",
        bounce_code=code_match.group(0) if code_match else None,
        bounce_reason=_cut(reason),
        recipient=_detected_recipient(msg),
        message_id=message_id,
        mail_id=mail_id,
        dsn=False,
    )


def _bounce_text(msg: Message) -> str:
    """The human-readable text of the bounce itself (not of a returned message)."""
    html_text: str | None = None
    for part in _own_parts(msg):
        ctype = part.get_content_type()
        if ctype == "text/plain":
            return _decoded_text(part)
        if ctype == "text/html" and html_text is None:
            html_text = html.unescape(_TAG.sub(" ", _decoded_text(part)))
    return html_text or ""


def _own_parts(msg: Message) -> Iterator[Message]:
    """The leaf parts of ``msg`` outside returned messages, in order."""
    if msg.is_multipart():
        for sub in msg.get_payload():
            if isinstance(sub, Message) and sub.get_content_type() not in _RETURNED_MESSAGE_TYPES:
                yield from _own_parts(sub)
    elif msg.get_content_type() not in _RETURNED_MESSAGE_TYPES:
        yield msg


def _detected_recipient(msg: Message) -> str | None:
    try:
        temporary, permanent = flufl.bounce.all_failures(msg)
    except Exception:  # a detector tripping over an odd message only costs the recipient
        return None
    found = sorted(
        a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a)
        for a in (*permanent, *temporary)
    )
    return found[0].strip().lower() if found else None


# --------------------------------------------------------------------------- the original


def _original_ids(msg: Message) -> tuple[str | None, str | None]:
    """``(Message-ID, X-Genro-Mail-ID)`` of the returned original, each None when not found.

    The returned headers come as a ``message/rfc822`` part or a ``text/rfc822-headers`` part;
    a bounce that quotes the original in its text is searched line by line.
    """
    message_id: str | None = None
    mail_id: str | None = None
    for headers in _returned_headers(msg):
        message_id = message_id or normalise_message_id(headers.get("Message-ID"))
        mail_id = mail_id or (header_text(headers.get("X-Genro-Mail-ID")) or None)
        if message_id and mail_id:
            return message_id, mail_id
    for part in _own_parts(msg):
        if part.get_content_maintype() != "text":
            continue
        text = _decoded_text(part)
        if message_id is None:
            found = _MESSAGE_ID_LINE.search(text)
            message_id = normalise_message_id(found.group(1)) if found else None
        if mail_id is None:
            found = _MAIL_ID_LINE.search(text)
            mail_id = header_text(found.group(1)) or None if found else None
    return message_id, mail_id


def _returned_headers(msg: Message) -> Iterator[Message]:
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in _RETURNED_MESSAGE_TYPES:
            payload = part.get_payload()
            if isinstance(payload, list):
                yield from (p for p in payload if isinstance(p, Message))
            elif isinstance(payload, str):
                yield email.parser.HeaderParser().parsestr(_decoded_text(part))
        elif ctype in _RETURNED_HEADER_TYPES:
            yield email.parser.HeaderParser().parsestr(_decoded_text(part).lstrip())


def normalise_message_id(value: object) -> str | None:
    """A Message-ID as stored with the message: ``<local@domain>`` (None when there is none)."""
    text = header_text(value)
    if not text:
        return None
    found = _ANGLE.search(text)
    if found:
        return f"<{found.group(1)}>"
    token = text.split()[0].strip("<>")
    return f"<{token}>" if token else None


# --------------------------------------------------------------------------- polling


def poll_delay(interval: float, failures: int) -> float:
    """Seconds until the next poll: the interval, doubled per consecutive failed poll up to
    ``BACKOFF_MAX_FACTOR`` times the interval."""
    if failures <= 0:
        return float(interval)
    return float(interval) * min(2.0 ** min(failures, 16), BACKOFF_MAX_FACTOR)


# --------------------------------------------------------------------------- helpers


def _decoded_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _cut(text: str | None) -> str | None:
    if text is None:
        return None
    return text[:REASON_MAX]


_LOG_ESCAPES: Final = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)} | {
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
}


def printable(text: object) -> str:
    """``text`` for a log line: control characters escaped, so it cannot start a new line."""
    return str(text).translate(_LOG_ESCAPES)
