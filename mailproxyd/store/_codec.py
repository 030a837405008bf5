"""Conversions between Python values and stored columns (JSON text, 0/1 flags, secrets)."""

from __future__ import annotations

from typing import Any

import msgspec

from mailproxyd.core.crypto import SecretBox
from mailproxyd.errors import StoreError

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def dumps(value: Any) -> str:
    """JSON text of ``value`` (compact, UTF-8)."""
    return _encoder.encode(value).decode("utf-8")


def loads(text: str | bytes | None, default: Any = None) -> Any:
    """The value of stored JSON text; ``default`` for NULL."""
    if text is None:
        return default
    return _decoder.decode(text)


def flag(value: Any) -> int:
    """A boolean as the 0/1 integer both backends store."""
    return 1 if value else 0


def seal(box: SecretBox, value: str | None, context: str) -> str | None:
    """Encrypt a secret for storage (None stays None)."""
    return None if value is None else box.encrypt(value, context)


def unseal(box: SecretBox, token: str | None, context: str) -> str | None:
    """Decrypt a stored secret (None stays None)."""
    if token is None:
        return None
    try:
        return box.decrypt(token, context)
    except Exception as exc:  # InvalidTag, bad base64: the key or the row is wrong
        raise StoreError(f"cannot decrypt a stored secret ({context})") from exc
