"""Large-file links (reference §11.8, §5.8): signed tokens, the body footer, the size rule.

A token is ``<file_id>-<expires_at>-<hex HMAC-SHA256(link key, "<file_id>:<filename>:<expires_at>")>``
with the link key derived from the instance key (``crypto.derive_key(key, "download-links")``).
:func:`check_token` answers the download route: the signature is checked first, so only a
correctly signed token can be told apart as expired.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import html
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from mailproxyd.core.attachment_rules import MIB

LINK_PURPOSE: Final = "download-links"
DAY: Final = 86_400
#: Backends that presign cap the lifetime of a link at seven days (S3's limit).
PRESIGN_MAX_SECONDS: Final = 7 * DAY
_TOKEN: Final = re.compile(r"([0-9a-f]{32})-([0-9]{1,12})-([0-9a-f]{64})")


class TokenCheck(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"  # 404: bad signature, other name, malformed
    EXPIRED = "expired"  # 410: correctly signed, past its expiry


@dataclass(frozen=True, slots=True)
class Link:
    """One uploaded large attachment as it appears in the footer."""

    filename: str
    size: int
    url: str


def signature(link_key: bytes, file_id: str, filename: str, expires_at: int) -> str:
    message = f"{file_id}:{filename}:{expires_at}".encode()
    return hmac.new(link_key, message, hashlib.sha256).hexdigest()


def make_token(link_key: bytes, file_id: str, filename: str, expires_at: int) -> str:
    return f"{file_id}-{expires_at}-{signature(link_key, file_id, filename, expires_at)}"


def parse_token(token: str) -> tuple[str, int, str] | None:
    """``(file_id, expires_at, signature)`` of a well-formed token, else ``None``."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), match.group(3)


def check_token(link_key: bytes, token: str, filename: str, *, now: float) -> TokenCheck:
    parsed = parse_token(token)
    if parsed is None:
        return TokenCheck.INVALID
    file_id, expires_at, given = parsed
    expected = signature(link_key, file_id, filename, expires_at)
    if not hmac.compare_digest(expected, given):
        return TokenCheck.INVALID
    return TokenCheck.EXPIRED if now >= expires_at else TokenCheck.VALID


def is_large(size: int, config: Mapping[str, Any]) -> bool:
    """An attachment is large when it exceeds ``max_size_mb`` × 1 048 576 bytes."""
    return size > float(config.get("max_size_mb") or 10) * MIB


def megabytes(size: float) -> str:
    """Sizes as the texts show them: MB with one decimal."""
    return f"{size / MIB:.1f}"


def reject_text(filename: str, size: int, config: Mapping[str, Any]) -> str:
    limit = float(config.get("max_size_mb") or 10)
    return f"Attachment '{filename}' ({megabytes(size)} MB) exceeds limit ({limit:.1f} MB)"


def expiry_date(expires_at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(expires_at))


def text_footer(links: Sequence[Link], expires_at: float) -> str:
    lines = ["", "", "---", "Large attachments available for download:"]
    lines += [f"- {link.filename} ({megabytes(link.size)} MB): {link.url}" for link in links]
    lines.append(f"Links expire on {expiry_date(expires_at)} UTC.")
    return "\n".join(lines) + "\n"


def html_footer(links: Sequence[Link], expires_at: float) -> str:
    items = "".join(
        f'<li><a href="{html.escape(link.url, quote=True)}">{html.escape(link.filename)}</a>'
        f" ({megabytes(link.size)} MB)</li>"
        for link in links
    )
    return (
        "<hr><p><strong>Large attachments available for download:</strong></p>"
        f"<ul>{items}</ul><p><em>Links expire on {expiry_date(expires_at)} UTC.</em></p>"
    )


def with_footer(body: str, content_type: str, links: Sequence[Link], expires_at: float) -> str:
    """``body`` with the download links appended (HTML: before ``</body>`` when present)."""
    if not links:
        return body
    if content_type == "html":
        footer = html_footer(links, expires_at)
        at = body.lower().rfind("</body>")
        return body[:at] + footer + body[at:] if at >= 0 else body + footer
    return body.rstrip("\n") + text_footer(links, expires_at)
