"""The field table of an add-messages item and of its attachments (reference §6.2, §6.3).

The rules are those :mod:`mailproxyd.core.messages` and :mod:`mailproxyd.core.attachment_rules`
apply, read from the same constants and patterns (recipient limit, content types, priority
labels, reserved headers, id and batch-code patterns), so the OpenAPI description of a message
item cannot drift from what enqueue accepts. The validation itself stays there: it judges the
fields in the reference's order and answers with per-item rejection reasons.
"""

from __future__ import annotations

import re
from typing import Final

from mailproxyd.core import attachment_rules, ids, message_ids, messages
from mailproxyd.core.limits import MAX_INT
from mailproxyd.core.models.fields import Field
from mailproxyd.core.priorities import LABELS

__all__ = ["ATTACHMENT_FIELDS", "MESSAGE_FIELDS"]


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
            Field(name, "array", items=_ADDRESS, max_length=messages.MAX_RECIPIENTS),
            Field(name, "string"),
        ),
        description=f"{description}; to + cc + bcc at most {messages.MAX_RECIPIENTS} addresses",
    )


_AUTH_METHODS: Final = tuple(sorted(attachment_rules.AUTH_METHODS))

#: ``attachments[]`` items (reference §6.3); unknown keys reject the message.
ATTACHMENT_FIELDS: Final = (
    Field(
        "filename",
        "string",
        required=True,
        pattern=_anchored(attachment_rules._FILENAME),
        min_length=1,
        max_length=255,
    ),
    Field("storage_path", "string", required=True, min_length=1),
    Field("fetch_mode", "choice", enum=tuple(sorted(attachment_rules.FETCH_MODES))),
    Field("mime_type", "string", pattern=_anchored(attachment_rules._MIME_TYPE)),
    Field("content_md5", "string", pattern=_anchored(attachment_rules._MD5)),
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

_CONTENT_TYPES: Final = tuple(messages._CONTENT_TYPES)
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
    description="printable ASCII without ':'; not " + ", ".join(sorted(messages.RESERVED_HEADERS)),
)

#: The fields of one add-messages item, in the reference's order (§6.2). Unknown keys are
#: ignored.
MESSAGE_FIELDS: Final = (
    Field(
        "id",
        "string",
        required=True,
        pattern=_anchored(ids._MESSAGE_ID),
        min_length=1,
        max_length=255,
        description="client id, unique per tenant",
    ),
    Field("tenant_id", "string", pattern=_anchored(ids._IDENTIFIER), max_length=64),
    Field("account_id", "string", pattern=_anchored(ids._IDENTIFIER), max_length=64),
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
        enum=_CONTENT_TYPES,
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
        pattern=r"^<?[^\x00-\x20<>\x7f]+@[^\x00-\x20<>@\x7f]+>?$",
        max_length=message_ids._MAX_MESSAGE_ID + 2,
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
        pattern=_anchored(ids._BATCH_CODE),
        max_length=64,
        description='campaign code; "" means none',
    ),
)
