"""Shared field checks of the admin payloads (tenants, accounts, instance; reference §4.4).

A :class:`FieldChecker` wraps one JSON object and collects **every** problem as
``(dotted field path, message)``, so a 422 can list them all; each check returns the clean
value (or ``None`` after recording the problem). Messages are the reference's wording:
``must be an integer between 1 and 65535``, ``unknown field``, ``required``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final
from urllib.parse import urlsplit

from mailproxyd.core.addresses import domain_to_ascii
from mailproxyd.core.limits import MAX_INT, is_int_between, range_text
from mailproxyd.errors import ValidationFailed

Errors = list[tuple[str, str]]

#: Longest display name of a tenant or the instance.
NAME_MAX: Final = 200

_HOST = re.compile(
    r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?)*\.?"
)
_PATH = re.compile(r"/[^\s\x00-\x1f\x7f]*")


class FieldChecker:
    """Collects every problem of one payload object; each check returns the clean value."""

    def __init__(self, body: Any, prefix: str = "") -> None:
        self.errors: Errors = []
        self.prefix = prefix
        if type(body) is not dict:
            self.fail("", "must be an object")
            body = {}
        self.body: dict[str, Any] = body

    def fail(self, field: str, message: str) -> None:
        path = f"{self.prefix}{field}" if field else self.prefix.rstrip(".")
        self.errors.append((path, message))

    def known(self, allowed: frozenset[str], ignored: frozenset[str] = frozenset()) -> list[str]:
        """The body's known keys in body order; unknown ones are recorded as problems.

        Body order keeps the headline (the first problem) stable and meaningful to the client.
        """
        keys = []
        for key in self.body:
            if key in allowed:
                keys.append(key)
            elif key not in ignored:
                self.fail(str(key), "unknown field")
        return keys

    def raise_if_failed(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)

    def int_between(self, field: str, value: Any, low: int, high: int | None) -> int | None:
        """``value`` when an integer in ``[low, high]``; no ``high`` means 2^53 − 1 (reference §4.4)."""
        top = MAX_INT if high is None else high
        if is_int_between(value, low, top):
            return int(value)
        self.fail(field, range_text(low, top))
        return None

    def boolean(self, field: str, value: Any) -> bool | None:
        if type(value) is bool:
            return value
        self.fail(field, "must be a boolean")
        return None

    def text(self, field: str, value: Any, max_len: int | None = None) -> str | None:
        if type(value) is not str or "\r" in value or "\n" in value or "\x00" in value:
            self.fail(field, "must be a string without line breaks")
            return None
        if max_len is not None and len(value) > max_len:
            self.fail(field, f"must be at most {max_len} characters")
            return None
        return value

    def choice(self, field: str, value: Any, choices: tuple[str, ...]) -> str | None:
        if type(value) is str and value in choices:
            return value
        self.fail(field, "must be one of " + ", ".join(choices))
        return None

    def host(self, field: str, value: Any) -> str | None:
        if type(value) is str and is_host(value):
            return value
        self.fail(field, "must be a host name or IP address")
        return None

    def http_url(self, field: str, value: Any) -> str | None:
        if type(value) is str and is_http_url(value):
            return value
        self.fail(field, "must be an http:// or https:// URL")
        return None

    def path(self, field: str, value: Any) -> str | None:
        if type(value) is str and _PATH.fullmatch(value):
            return value
        self.fail(field, "must be a path starting with /")
        return None


def is_host(value: str) -> bool:
    """A host name (LDH with ``_``, or IDN) or an IP address, as SMTP and IMAP hosts are given."""
    if not value or len(value) > 253:
        return False
    try:
        ipaddress.ip_address(value.strip("[]") if value.startswith("[") else value)
        return True
    except ValueError:
        pass
    if _HOST.fullmatch(value):
        return True
    return not value.isascii() and domain_to_ascii(value) is not None


def is_http_url(value: str) -> bool:
    """An ``http://`` or ``https://`` URL with a host."""
    if any(c.isspace() or ord(c) < 0x20 for c in value):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        return False
