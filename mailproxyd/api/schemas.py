"""Wire models of the API's responses and of the bodies the route handlers read.

These msgspec Structs document the HTTP surface: the OpenAPI generator turns them into
JSON Schema (``msgspec.json.schema_components``). Optional response fields default to
``None`` because ``null`` keys are omitted on the wire.

The request models of tenants, accounts, the instance and message items are not written
here: they are generated (:func:`request_model`) from the field tables of
:mod:`mailproxyd.core.models`, the same tables the validators check bodies with, so every
bound, choice and pattern a validator applies is in the document. A Patch model is its In
model's fields minus those a partial update may not carry, all optional.
"""

from __future__ import annotations

import keyword
from collections.abc import Sequence
from typing import Annotated, Any, Literal, cast

import msgspec

from mailproxyd.core.models.account import ACCOUNT_FIELDS
from mailproxyd.core.models.fields import Field
from mailproxyd.core.models.instance import INSTANCE_FIELDS
from mailproxyd.core.models.message import MESSAGE_FIELDS
from mailproxyd.core.models.tenant import TENANT_FIELDS

Status = Literal["pending", "deferred", "sending", "sent", "error"]


class Struct(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    """Base: optional keys are simply absent from documents."""


# --- request models from the field tables ------------------------------------------------

_SCALARS: dict[str, Any] = {
    "identifier": str,
    "host": str,
    "http_url": str,
    "path": str,
    "text": str,
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "any": Any,
}
_FORMATS = {"http_url": "uri"}


def _meta(field: Field) -> msgspec.Meta | None:
    """The constraints of ``field`` as msgspec metadata (JSON Schema keywords)."""
    bounds: dict[str, Any] = {}
    if field.kind in ("integer", "number"):
        bounds = {"ge": field.minimum, "le": field.maximum, "gt": field.exclusive_minimum}
    elif field.kind in ("array", "object") or _SCALARS.get(field.kind) is str:
        bounds = {"min_length": field.min_length, "max_length": field.max_length}
        if field.pattern is not None:
            bounds["pattern"] = field.pattern
    given = {k: v for k, v in bounds.items() if v is not None}
    extra: dict[str, Any] = {}
    if field.kind in _FORMATS:
        extra["format"] = _FORMATS[field.kind]
    if field.description:
        given["description"] = field.description
    if extra:
        given["extra_json_schema"] = extra
    return msgspec.Meta(**given) if given else None


def _type(field: Field, owner: str) -> Any:
    """The Python type msgspec turns into ``field``'s JSON Schema."""
    kind = field.kind
    base: Any
    if kind == "choice":
        assert field.enum is not None
        base = Literal[field.enum]
    elif kind == "object" and field.fields is not None:
        base = _nested(owner + _camel(field.name), field.fields)
    elif kind == "object":
        keys = _type(field.keys, owner) if field.keys else str
        values = _type(field.values, owner) if field.values else Any
        base = dict[keys, values]  # type: ignore[valid-type]
    elif kind == "array":
        assert field.items is not None
        base = list[_type(field.items, owner)]  # type: ignore[misc]
    elif kind == "union":
        assert field.variants
        base = _union([_type(variant, owner) for variant in field.variants])
    else:
        base = _SCALARS[kind]
    meta = _meta(field)
    return base if meta is None else Annotated[base, meta]


def _union(types: Sequence[Any]) -> Any:
    result = types[0]
    for other in types[1:]:
        result = result | other
    return result


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


_NESTED: dict[str, type[Struct]] = {}


def request_model(name: str, fields: Sequence[Field]) -> type[Struct]:
    """A request Struct named ``name`` with one attribute per field of ``fields``.

    Required fields (of a full definition) have no default; the others may be absent or
    ``null`` (``null`` means "the default").
    """
    attrs: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    owner = name.removesuffix("In")
    for field in fields:
        annotation = _type(field, owner)
        attr = field.name + "_" if keyword.iskeyword(field.name) else field.name
        attrs.append((attr, annotation) if field.required else (attr, annotation | None, None))
    renamed = {f.name + "_": f.name for f in fields if keyword.iskeyword(f.name)}
    # Keyword-only, so the document lists the fields in the table's (the reference's) order.
    model = msgspec.defstruct(
        name, attrs, bases=(Struct,), rename=renamed or None, module=__name__, kw_only=True
    )
    return cast("type[Struct]", model)


def _nested(name: str, fields: Sequence[Field]) -> type[Struct]:
    # An In model and its Patch twin share the models of their object fields.
    if name not in _NESTED:
        _NESTED[name] = request_model(name, fields)
    return _NESTED[name]


def patch_model(name: str, model: type[Struct], fields: Sequence[Field]) -> type[Struct]:
    """The Patch twin of the In ``model``: its fields that ``fields`` lets a partial update
    carry (not ``id``), with the same types, every one optional (``null``: the default)."""
    allowed = {field.name for field in fields if field.patch}
    kept = [
        (info.name, info.type | None, None)
        for info in msgspec.structs.fields(model)
        if info.encode_name in allowed
    ]
    renamed = {
        info.name: info.encode_name
        for info in msgspec.structs.fields(model)
        if info.encode_name in allowed and info.name != info.encode_name
    }
    twin = msgspec.defstruct(
        name, kept, bases=(Struct,), rename=renamed or None, module=__name__, kw_only=True
    )
    return cast("type[Struct]", twin)


# --- errors ---------------------------------------------------------------------------


class FieldError(Struct):
    field: str
    message: str


class ErrorBody(Struct):
    ok: bool
    error: str
    detail: str
    field: str | None = None
    errors: list[FieldError] | None = None


class Rejection(Struct):
    id: str | None
    reason: str


class NothingQueuedDetail(Struct):
    error: None
    rejected: list[Rejection]


class NothingQueuedBody(Struct):
    ok: bool
    error: str
    queued: int
    rejected: list[Rejection]
    detail: NothingQueuedDetail


# --- system ---------------------------------------------------------------------------


class HealthBody(Struct):
    status: str
    detail: str | None = None


class WorkerCount(Struct):
    expected: int
    running: int


class StatusBody(Struct):
    ok: bool
    scheduler_active: bool
    active: bool
    test_mode: bool
    version: str
    node: str
    workers: dict[str, WorkerCount]


class MessageCounts(Struct):
    pending: int
    deferred: int
    sending: int
    sent: int
    error: int


class StatsBody(Struct):
    ok: bool
    tenants: int
    accounts: int
    messages: MessageCounts


class OkBody(Struct):
    ok: bool


# --- commands -------------------------------------------------------------------------


class CommandParams(Struct):
    tenant_id: str | None = None
    batch_code: str | None = None


class RunNowBody(Struct):
    ok: bool
    triggered: bool


class SchedulerStateBody(Struct):
    ok: bool
    scheduler_active: bool
    active: bool


class SuspendBody(Struct):
    ok: bool
    tenant_id: str
    suspended_batches: list[str]
    pending_messages: int
    batch_code: str | None = None


# --- messages -------------------------------------------------------------------------


MessageItem = request_model("MessageItem", MESSAGE_FIELDS)


class AddMessagesIn(Struct):
    messages: list[MessageItem]  # type: ignore[valid-type]
    default_priority: int | str | None = None
    tenant_id: str | None = None


class AddMessagesBody(Struct):
    ok: bool
    queued: int
    rejected: list[Rejection]


class HistoryEntry(Struct):
    event_id: int
    event_type: str
    event_ts: int
    description: str | None = None
    metadata: dict[str, Any] | None = None
    reported_ts: int | None = None


class MessageRecord(Struct):
    pk: str
    id: str
    tenant_id: str
    priority: int
    status: Status
    retry_count: int
    created_at: str
    updated_at: str
    message: dict[str, Any]
    account_id: str | None = None
    tenant_name: str | None = None
    batch_code: str | None = None
    message_id: str | None = None
    deferred_ts: int | None = None
    deferred_reason: str | None = None
    smtp_code: int | None = None
    sent_ts: int | None = None
    error_ts: int | None = None
    error: str | None = None
    refused_recipients: dict[str, Any] | None = None
    outcome_uncertain: bool | None = None
    bounce_type: str | None = None
    bounce_code: str | None = None
    bounce_reason: str | None = None
    bounce_ts: int | None = None
    reported_ts: int | None = None
    history: list[HistoryEntry] | None = None


class MessagesBody(Struct):
    ok: bool
    messages: list[MessageRecord]
    next_cursor: str | None = None


class DeleteMessagesIn(Struct):
    ids: list[str]
    tenant_id: str | None = None


class DeleteMessagesBody(Struct):
    ok: bool
    removed: int
    not_found: list[str]
    unauthorized: list[str]
    in_flight: list[str]


class CleanupIn(Struct):
    older_than_seconds: int | None = None
    tenant_id: str | None = None


class RemovedBody(Struct):
    ok: bool
    removed: int


# --- accounts -------------------------------------------------------------------------


AccountIn = request_model("AccountIn", ACCOUNT_FIELDS)
AccountPatch = patch_model("AccountPatch", AccountIn, ACCOUNT_FIELDS)


class Account(Struct):
    id: str
    tenant_id: str
    host: str
    port: int
    password_set: bool
    tls_mode: str
    tls_verify: bool
    limit_behavior: str
    max_concurrent: int
    ttl: int
    is_default: bool
    created_at: str
    updated_at: str
    user: str | None = None
    use_tls: bool | None = None
    limit_per_minute: int | None = None
    limit_per_hour: int | None = None
    limit_per_day: int | None = None
    batch_size: int | None = None


class CreatedBody(Struct):
    ok: bool
    created: bool


class AccountsBody(Struct):
    ok: bool
    accounts: list[Account]


class FailedMessagesBody(Struct):
    ok: bool
    failed_messages: int


# --- tenants --------------------------------------------------------------------------


TenantIn = request_model("TenantIn", TENANT_FIELDS)
TenantPatch = patch_model("TenantPatch", TenantIn, TENANT_FIELDS)


#: The object fields of a tenant, as generated for TenantIn; responses carry the same shapes.
RateLimits = _NESTED["TenantRateLimits"]
LargeFileConfig = _NESTED["TenantLargeFileConfig"]


class ClientAuthOut(Struct):
    method: str
    user: str | None = None
    token_set: bool | None = None
    password_set: bool | None = None
    signing_secret_set: bool | None = None


class Tenant(Struct):
    id: str
    client_sync_path: str
    client_attachment_path: str
    client_auth: ClientAuthOut
    active: bool
    suspended_batches: list[str]
    api_key_set: bool
    created_at: str
    updated_at: str
    name: str | None = None
    client_base_url: str | None = None
    rate_limits: RateLimits | None = None  # type: ignore[valid-type]
    large_file_config: LargeFileConfig | None = None  # type: ignore[valid-type]
    api_key_expires_at: int | None = None


class TenantCreatedBody(Struct):
    ok: bool
    created: bool
    api_key: str | None = None


class TenantsBody(Struct):
    ok: bool
    tenants: list[Tenant]


class ApiKeyIn(Struct):
    expires_at: int | None = None


class ApiKeyBody(Struct):
    ok: bool
    api_key: str
    expires_at: int | None = None


class SyncTenant(Struct):
    id: str
    active: bool
    next_sync_due: bool
    in_dnd: bool
    consecutive_failures: int
    unreported_events: int
    name: str | None = None
    client_base_url: str | None = None
    last_sync_ts: int | None = None
    dnd_until: int | None = None
    backoff_until: int | None = None
    last_error: str | None = None


class SyncStatusBody(Struct):
    ok: bool
    sync_interval_seconds: int
    tenants: list[SyncTenant]


# --- instance -------------------------------------------------------------------------


#: The instance has no full definition: its In model only exists to derive the Patch.
InstancePatch = patch_model(
    "InstancePatch", request_model("InstanceIn", INSTANCE_FIELDS), INSTANCE_FIELDS
)


class Instance(Struct):
    version: str
    bounce_enabled: bool
    name: str | None = None
    bounce_imap_host: str | None = None
    bounce_imap_port: int | None = None
    bounce_imap_user: str | None = None
    bounce_imap_password_set: bool | None = None
    bounce_imap_folder: str | None = None
    bounce_imap_ssl: bool | None = None
    bounce_poll_interval: int | None = None
    bounce_return_path: str | None = None
    bounce_last_sync: int | None = None
    bounce_last_error: str | None = None
    bounce_last_error_ts: int | None = None
    created_at: str | None = None
    updated_at: str | None = None


# --- command log ----------------------------------------------------------------------


class CommandEntry(Struct):
    id: int
    command_ts: int
    endpoint: str
    payload: Any
    response_status: int
    tenant_id: str | None = None


class CommandLogBody(Struct):
    ok: bool
    total: int
    commands: list[CommandEntry]


class ExportEntry(Struct):
    endpoint: str
    payload: Any
    command_ts: int
    tenant_id: str | None = None


class CommandExportBody(Struct):
    ok: bool
    commands: list[ExportEntry]
