"""Redaction of command-log payloads (reference §5.7).

Secrets are replaced by ``"***"`` wherever they appear (account ``password``, tenant
``client_auth`` ``token``/``password``/``signing_secret``, attachment ``auth`` credentials,
the bounce mailbox password, a refused ``api_token``), and the data of base64 attachments
by ``"base64:<N bytes>"``, N being the decoded size. Redaction is by key name at any depth,
because the same names mean the same secrets in every payload; ``null`` values stay
``null`` (clearing a secret reveals nothing). The input is never modified.
"""

from __future__ import annotations

from typing import Any, Final

from mailproxyd.core.attachment_rules import base64_size

MASK: Final = "***"
SECRET_KEYS: Final = frozenset(
    {
        "password",
        "token",
        "signing_secret",
        "bounce_imap_password",
        "imap_password",
        "api_token",
        "api_key",
        "secret",
    }
)


def redact_payload(payload: Any) -> Any:
    """A copy of ``payload`` that is safe to store in the command log."""
    if isinstance(payload, dict):
        out: dict[Any, Any] = {}
        for key, value in payload.items():
            if key in SECRET_KEYS and value is not None:
                out[key] = MASK
            elif key == "attachments" and isinstance(value, list):
                out[key] = [_attachment(item) for item in value]
            else:
                out[key] = redact_payload(value)
        return out
    if isinstance(payload, list):
        return [redact_payload(item) for item in payload]
    return payload


def _attachment(item: Any) -> Any:
    redacted = redact_payload(item)
    if not isinstance(item, dict):
        return redacted
    data = item.get("storage_path")
    if not isinstance(data, str):
        return redacted
    mode = item.get("fetch_mode")
    if mode == "base64" or (mode is None and data.startswith("base64:")):
        body = data[7:] if data.startswith("base64:") else data
        size = base64_size(body)
        # Undecodable data is still data: its length in characters is all that is kept.
        redacted["storage_path"] = f"base64:{size if size is not None else len(body)} bytes"
    return redacted


_CONTROL_ESCAPES: Final = {
    **{code: f"\\x{code:02x}" for code in range(0x20)},
    0x7F: "\\x7f",
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
    0x85: "\\x85",
}


def escape_control(value: object, limit: int | None = 1000) -> str:
    """``value`` as text safe for one log line (reference §18.6): control characters and line
    separators escaped (``\\n``, ``\\x1b``), so no outside text can start a line; at most
    ``limit`` characters kept (``…`` marks a cut). For every value that comes from outside: tenant
    answers, SMTP replies, header values, file names, request paths.
    """
    text = value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    return text.translate(_CONTROL_ESCAPES)
