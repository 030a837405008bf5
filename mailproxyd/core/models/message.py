"""The field table of an add-messages item and of its attachments (reference §6.2, §6.3).

This table is the source of the simple rules of a message item: :mod:`mailproxyd.core.messages`
reads each field's type, bounds, choices, pattern and length from it (in the reference's order,
answering with per-item rejection reasons), and ``mailproxyd.api.schemas`` turns it into the
OpenAPI description, so the two cannot drift. Rules a table cannot say (address parsing, the
recipient total, reserved headers, ``Message-ID`` brackets, ``"*"`` as a batch code) are code
there. The attachment fields are read from the constants and patterns
:mod:`mailproxyd.core.attachment_rules` checks.
"""

from __future__ import annotations

import re
from typing import Final

from mailproxyd.core import attachment_rules, ids, message_ids
from mailproxyd.core.limits import MAX_INT
from mailproxyd.core.models.fields import Field
from mailproxyd.core.priorities import LABELS

__all__ = [
    "ATTACHMENT_FIELDS",
    "CONTENT_TYPES",
    "MAX_RECIPIENTS",
    "MESSAGE_FIELDS",
    "RESERVED_HEADERS",
]

#: Most addresses in ``to`` + ``cc`` + ``bcc`` together (reference §6.4 rule 14).
MAX_RECIPIENTS: Final = 1000

#: Custom header names refused at enqueue (reference §7), lower-cased.
RESERVED_HEADERS: Final = frozenset(
    {
        "bcc",
        "x-genro-mail-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
    }
)

#: Accepted ``content_type`` values (lower-cased) and the stored name of each.
CONTENT_TYPES: Final = {
    "plain": "plain",
    "html": "html",
    "text/plain": "plain",
    "text/html": "html",
}


def _anchored(pattern: re.Pattern[str]) -> str:
    """A Python ``fullmatch`` pattern as a JSON Schema (ECMA, unanchored) pattern."""
    return f"^(?:{pattern.pattern})$"


_ADDRESS = Field("address", "string", min_length=1, description="one RFC 5322 address")


def _addresses(name: str, description: str, *, required: bool = False) -> Field:
    # An array of addresses, or one string parsed as an address list (reference §6.5).
    return Field(
        name,
        "union",
        required=required,
        variants=(
            Field(name, "array", items=_ADDRESS, max_length=MAX_RECIPIENTS),
            Field(name, "string"),
        ),
        description=f"{description}; to + cc + bcc at most {MAX_RECIPIENTS} addresses",
    )


_AUTH_METHODS: Final = tuple(sorted(attachment_rules.AUTH_METHODS))

#: ``attachments[]`` items (reference §6.3); unknown keys reject the message.
ATTACHMENT_FIELDS: Final = (
    Field(
        "filename",
        "string",
        required=True,
        pattern=_anchored(attachment_rules.FILENAME_PATTERN),
        min_length=1,
        max_length=255,
    ),
    Field("storage_path", "string", required=True, min_length=1),
    Field("fetch_mode", "choice", enum=tuple(sorted(attachment_rules.FETCH_MODES))),
    Field("mime_type", "string", pattern=_anchored(attachment_rules.MIME_TYPE_PATTERN)),
    Field("content_md5", "string", pattern=_anchored(attachment_rules.MD5_PATTERN)),
    Field(
        "auth",
        "object",
        fields=(
            Field("method", "choice", enum=_AUTH_METHODS),
            Field("token", "string", description="bearer needs it"),
            Field("user", "string", description="basic needs it"),
            Field("password", "string", description="basic needs it"),
        ),
    ),
)

_HEADER_VALUE = Field(
    "value",
    "union",
    variants=(
        Field("value", "string", pattern=r"^[^\r\n]*$"),
        Field("value", "number"),
        Field("value", "boolean"),
    ),
)
_HEADER_NAME = Field(
    "name",
    "string",
    pattern=r"^[!-9;-~]+$",
    min_length=1,
    max_length=76,
    description="printable ASCII without ':'; not " + ", ".join(sorted(RESERVED_HEADERS)),
)

# local@domain, bare or in a pair of angle brackets; no controls, blanks, brackets or DEL.
_LOCAL_AT_DOMAIN = r"[^\x00-\x20<>\x7f]+@[^\x00-\x20<>@\x7f]+"
_MESSAGE_ID_HEADER = f"^(?:<{_LOCAL_AT_DOMAIN}>|{_LOCAL_AT_DOMAIN})$"

#: The fields of one add-messages item, in the reference's order (§6.2). Unknown keys are
#: ignored.
MESSAGE_FIELDS: Final = (
    Field(
        "id",
        "string",
        required=True,
        pattern=_anchored(ids.MESSAGE_ID_PATTERN),
        min_length=1,
        max_length=255,
        description="client id, unique per tenant",
    ),
    Field("tenant_id", "string", pattern=_anchored(ids.IDENTIFIER_PATTERN), max_length=64),
    Field("account_id", "string", pattern=_anchored(ids.IDENTIFIER_PATTERN), max_length=64),
    Field("from", "string", required=True, min_length=1, description="one address"),
    _addresses("to", "recipients", required=True),
    _addresses("cc", "copy recipients"),
    _addresses("bcc", "blind copy recipients (never in the headers)"),
    _addresses("reply_to", "Reply-To addresses"),
    Field("return_path", "string", description="one bare address: the envelope sender"),
    Field(
        "subject",
        "string",
        required=True,
        min_length=1,
        pattern=r"^[^\r\n]*$",
        description="non-empty, no CR/LF",
    ),
    Field("body", "string", description='default ""'),
    Field(
        "content_type",
        "choice",
        enum=tuple(CONTENT_TYPES),
        description="case-insensitive; default plain",
    ),
    Field(
        "headers",
        "object",
        keys=_HEADER_NAME,
        values=_HEADER_VALUE,
        description="extra headers; null values are skipped",
    ),
    Field(
        "message_id",
        "string",
        pattern=_MESSAGE_ID_HEADER,
        max_length=message_ids.MAX_MESSAGE_ID + 2,
        description="local@domain, optionally in <>",
    ),
    Field("attachments", "array", items=Field("attachment", "object", fields=ATTACHMENT_FIELDS)),
    Field(
        "priority",
        "union",
        variants=(
            Field("priority", "integer", minimum=0, maximum=3),
            Field("priority", "choice", enum=("0", "1", "2", "3", *LABELS)),
        ),
        description="0 (immediate) to 3 (low), as a number, a digit string or a label",
    ),
    Field(
        "deferred_ts",
        "number",
        minimum=0,
        maximum=MAX_INT,
        description="Unix time; not sent before it",
    ),
    Field(
        "batch_code",
        "string",
        pattern=_anchored(ids.BATCH_CODE_PATTERN),
        max_length=64,
        description='campaign code; "" means none',
    ),
)
