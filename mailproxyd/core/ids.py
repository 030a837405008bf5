"""Identifier rules of reference §0: tenant and account ids, message ids, batch codes.

Each rule is a compiled regular expression and a predicate; ``check_*`` wraps a predicate
into the 422 of reference §4.4 for payloads where a bad id rejects the whole request. The predicates
are on the add-messages hot path, so they avoid anything slower than one ``fullmatch``.
"""

from __future__ import annotations

import re
from typing import Any

from mailproxyd.errors import ValidationFailed

# First character alphanumeric, then up to 63 more of A–Z a–z 0–9 _ - . (ASCII only:
# ``re.ASCII`` keeps ``\w``-style classes from matching other scripts' letters).
IDENTIFIER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", re.ASCII)
# 1–255 characters, none of U+0000–U+001F or U+007F.
MESSAGE_ID_PATTERN = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
# 1–64 characters, no control characters and no comma; "*" (the whole-tenant marker) is refused
# separately because it is a valid single character otherwise.
BATCH_CODE_PATTERN = re.compile(r"[^\x00-\x1f\x7f,]{1,64}")

#: Names that cannot be instance names because they are top-level CLI commands (reference §2.3).
RESERVED_INSTANCE_NAMES = frozenset(
    {"start", "stop", "restart", "status", "list", "delete", "serve", "help", "version"}
)

IDENTIFIER_PROBLEM = (
    "must be 1-64 characters from A-Z a-z 0-9 _ - . starting with a letter or digit"
)
MESSAGE_ID_PROBLEM = "must be 1-255 characters without control characters"
BATCH_CODE_PROBLEM = "must be 1-64 characters without control characters or ',' and not '*'"


def is_identifier(value: object) -> bool:
    """True for a valid tenant id, account id or node-style identifier (reference §0)."""
    return isinstance(value, str) and IDENTIFIER_PATTERN.fullmatch(value) is not None


def is_message_id(value: object) -> bool:
    """True for a valid client message id (reference §0)."""
    return isinstance(value, str) and MESSAGE_ID_PATTERN.fullmatch(value) is not None


def is_batch_code(value: object) -> bool:
    """True for a valid, non-empty batch code (reference §0). ``""`` ("no batch") is not a code."""
    return (
        isinstance(value, str) and value != "*" and BATCH_CODE_PATTERN.fullmatch(value) is not None
    )


def is_instance_name(value: object) -> bool:
    """True for a name usable as an instance directory (reference §2.3)."""
    return is_identifier(value) and value not in RESERVED_INSTANCE_NAMES


def check_identifier(field: str, value: Any) -> str:
    """Return ``value`` if it is an identifier, else raise the 422 for ``field``."""
    if value is None:
        raise ValidationFailed([(field, "required")])
    if not is_identifier(value):
        raise ValidationFailed([(field, IDENTIFIER_PROBLEM)])
    return str(value)


def check_batch_code(field: str, value: Any) -> str:
    """Return ``value`` if it is a batch code, else raise the 422 for ``field`` (reference §5.2)."""
    if not is_batch_code(value):
        raise ValidationFailed([(field, BATCH_CODE_PROBLEM)])
    return str(value)
