"""A stored e-mail (``.eml``) as an add-messages item (reference §15.4 ``send``), as pure code.

From, To, Cc, Bcc, Reply-To, Subject and Message-ID come from the headers; the HTML part is
the body when there is one (``content_type`` html), else the first text part; every other
part becomes a base64 attachment. The default id is ``eml-`` + the first 16 hex digits of the
SHA-256 of the file, so the same file sent twice is the same message (reference §6.7).
"""

from __future__ import annotations

import base64
import hashlib
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

_ADDRESS_FIELDS = (("to", "To"), ("cc", "Cc"), ("bcc", "Bcc"), ("reply_to", "Reply-To"))


def default_id(raw: bytes) -> str:
    """``eml-`` + the first 16 hex digits of the SHA-256 of the file."""
    return "eml-" + hashlib.sha256(raw).hexdigest()[:16]


def _addresses(msg: Message, header: str) -> list[str]:
    values = [str(v) for v in msg.get_all(header, [])]
    out = []
    for name, addr in getaddresses(values):
        if not addr:
            continue
        out.append(f"{_quoted(name)} <{addr}>" if name else addr)
    return out


def _quoted(name: str) -> str:
    if any(c in name for c in '()<>[]:;@\\,."'):
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


def _text(part: Message) -> str:
    try:
        content = part.get_content() if isinstance(part, EmailMessage) else None
    except (LookupError, ValueError):
        content = None
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return data.decode(part.get_content_charset() or "utf-8", errors="replace")


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    return disposition == "attachment" or (
        disposition == "inline" and part.get_filename() is not None
    )


def _attachment(part: Message, index: int) -> dict[str, Any]:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    name = part.get_filename() or f"part-{index}"
    # Names that cannot be attachment names (reference §6.3) are cleaned rather than refused.
    name = "".join("_" if c in "/\\" or ord(c) < 32 or ord(c) == 127 else c for c in name)
    return {
        "filename": name[:255] or f"part-{index}",
        "storage_path": base64.b64encode(data).decode("ascii"),
        "fetch_mode": "base64",
        "mime_type": part.get_content_type(),
    }


def message_from_eml(raw: bytes) -> dict[str, Any]:
    """The add-messages item for the e-mail ``raw`` (without ``id``/account/priority)."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    item: dict[str, Any] = {}
    senders = _addresses(msg, "From")
    if senders:
        item["from"] = senders[0]
    for key, header in _ADDRESS_FIELDS:
        found = _addresses(msg, header)
        if found:
            item[key] = found
    subject = msg.get("Subject")
    if subject is not None:
        item["subject"] = " ".join(str(subject).split())
    message_id = msg.get("Message-ID")
    if message_id is not None and str(message_id).strip():
        item["message_id"] = str(message_id).strip()

    leaves = [p for p in msg.walk() if not p.is_multipart()]
    html = next(
        (p for p in leaves if p.get_content_type() == "text/html" and not _is_attachment(p)),
        None,
    )
    text = next(
        (p for p in leaves if p.get_content_type() == "text/plain" and not _is_attachment(p)),
        None,
    )
    body_part = html or text
    if body_part is not None:
        # Line ends as the file had them on the wire (CRLF) become plain newlines again.
        item["body"] = _text(body_part).replace("\r\n", "\n")
        item["content_type"] = "html" if body_part is html else "plain"
    else:
        item["body"] = ""
    attachments = []
    for index, part in enumerate(leaves):
        if part is body_part:
            continue
        if part is text and html is not None:
            continue  # the plain alternative of the HTML body is not an attachment
        attachments.append(_attachment(part, index))
    if attachments:
        item["attachments"] = attachments
    return item
