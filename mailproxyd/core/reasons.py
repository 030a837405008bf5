"""Rejection reasons of add-messages items (reference §6.4), as exact strings.

A reason that quotes a value shows it "as given": strings verbatim, other JSON values in
their JSON form (``5``, ``1.5``, ``true``), with CR and LF written as ``\\r`` and ``\\n`` so a
reason is always one line, and cut to 200 characters.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

SHOWN_CHARS: Final = 200

INVALID_PAYLOAD: Final = "invalid payload"
MISSING_ID: Final = "missing id"
INVALID_ID: Final = "invalid id"
MISSING_TENANT: Final = "missing tenant_id"
TENANT_NOT_FOUND: Final = "tenant not found"
DUPLICATE_ID: Final = "duplicate id in request"
MISSING_ACCOUNT: Final = "missing account_id"
ACCOUNT_NOT_FOUND: Final = "account not found for tenant"
MISSING_FROM: Final = "missing from"
MISSING_TO: Final = "missing to"
MISSING_SUBJECT: Final = "missing subject"
INVALID_SUBJECT: Final = "invalid subject: must be a string"
INVALID_SUBJECT_HEADER: Final = "invalid header: Subject"
INVALID_BODY: Final = "invalid body: must be a string"
INVALID_HEADERS: Final = "invalid headers: must be an object"
IN_FLIGHT: Final = "in flight"
ALREADY_SENT: Final = "already sent"

#: Rule numbers of reference §6.4 that are idempotency rejections rather than validation failures.
IDEMPOTENCY_RULES: Final = frozenset({6, 27, 28})


def show_value(value: Any) -> str:
    """An offending value as reference §6.4 shows it inside a reason."""
    if type(value) is not str:
        try:
            value = msgspec.json.encode(value).decode("utf-8")
        except (TypeError, ValueError, OverflowError):
            value = repr(value)
    if "\r" in value or "\n" in value:
        value = value.replace("\r", "\\r").replace("\n", "\\n")
    return value[:SHOWN_CHARS]


def invalid_address(value: Any) -> str:
    return f"invalid address: {show_value(value)}"


def invalid_list_field(field: str) -> str:
    return f"invalid {field}: must be a list of addresses or a string"


def too_many_recipients(count: int, limit: int) -> str:
    return f"too many recipients: {count} (max {limit})"


def invalid_field_value(field: str, value: Any) -> str:
    """``invalid content_type: <value>``, ``invalid priority: <value>`` and the like."""
    return f"invalid {field}: {show_value(value)}"


def invalid_header(name: Any) -> str:
    return f"invalid header: {show_value(name)}"


def invalid_attachment(index: int, problem: str) -> str:
    return f"invalid attachment[{index}]: {problem}"
