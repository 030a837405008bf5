"""Wire models of the API's responses and of the bodies the route handlers read.

These msgspec Structs document the HTTP surface: the OpenAPI generator turns them into
JSON Schema (``msgspec.json.schema_components``). Validation of tenant, account,
instance and message payloads happens in ``mailproxyd.core`` with the reference's exact
messages; the request Structs here describe those payloads for clients. Optional
response fields default to ``None`` because ``null`` keys are omitted on the wire.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Status = Literal["pending", "deferred", "sending", "sent", "error"]


class Struct(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    """Base: optional keys are simply absent from documents."""


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


class AttachmentIn(Struct):
    filename: str
    storage_path: str
    fetch_mode: Literal["endpoint", "http_url", "base64", "filesystem"] | None = None
    mime_type: str | None = None
    content_md5: str | None = None
    auth: dict[str, Any] | None = None


class MessageIn(Struct):
    id: str
    to: list[str] | str
    subject: str
    from_: str = msgspec.field(name="from", default="")
    tenant_id: str | None = None
    account_id: str | None = None
    cc: list[str] | str | None = None
    bcc: list[str] | str | None = None
    reply_to: list[str] | str | None = None
    return_path: str | None = None
    body: str | None = None
    content_type: str | None = None
    headers: dict[str, str | int | float | bool | None] | None = None
    message_id: str | None = None
    attachments: list[AttachmentIn] | None = None
    priority: int | str | None = None
    deferred_ts: float | None = None
    batch_code: str | None = None


class AddMessagesIn(Struct):
    messages: list[dict[str, Any]]
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


class AccountIn(Struct):
    id: str
    host: str
    port: int
    tenant_id: str | None = None
    user: str | None = None
    password: str | None = None
    tls_mode: Literal["none", "opportunistic", "starttls", "implicit"] | None = None
    use_tls: bool | None = None
    tls_verify: bool | None = None
    limit_per_minute: int | None = None
    limit_per_hour: int | None = None
    limit_per_day: int | None = None
    limit_behavior: Literal["defer", "reject"] | None = None
    batch_size: int | None = None
    max_concurrent: int | None = None
    ttl: int | None = None
    is_default: bool | None = None


class AccountPatch(Struct):
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None
    tls_mode: Literal["none", "opportunistic", "starttls", "implicit"] | None = None
    use_tls: bool | None = None
    tls_verify: bool | None = None
    limit_per_minute: int | None = None
    limit_per_hour: int | None = None
    limit_per_day: int | None = None
    limit_behavior: Literal["defer", "reject"] | None = None
    batch_size: int | None = None
    max_concurrent: int | None = None
    ttl: int | None = None
    is_default: bool | None = None


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


class ClientAuthIn(Struct):
    method: Literal["none", "bearer", "basic"] | None = None
    token: str | None = None
    user: str | None = None
    password: str | None = None
    signing_secret: str | None = None


class RateLimits(Struct):
    hourly: int | None = None
    daily: int | None = None


class LargeFileConfig(Struct):
    enabled: bool | None = None
    max_size_mb: float | None = None
    action: Literal["warn", "reject", "rewrite"] | None = None
    storage_url: str | None = None
    public_base_url: str | None = None
    file_ttl_days: int | None = None


class TenantIn(Struct):
    id: str
    name: str | None = None
    client_base_url: str | None = None
    client_sync_path: str | None = None
    client_attachment_path: str | None = None
    client_auth: ClientAuthIn | None = None
    rate_limits: RateLimits | None = None
    large_file_config: LargeFileConfig | None = None
    active: bool | None = None


class TenantPatch(Struct):
    name: str | None = None
    client_base_url: str | None = None
    client_sync_path: str | None = None
    client_attachment_path: str | None = None
    client_auth: ClientAuthIn | None = None
    rate_limits: RateLimits | None = None
    large_file_config: LargeFileConfig | None = None
    active: bool | None = None


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
    rate_limits: RateLimits | None = None
    large_file_config: LargeFileConfig | None = None
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


class InstancePatch(Struct):
    name: str | None = None
    bounce_enabled: bool | None = None
    bounce_imap_host: str | None = None
    bounce_imap_port: int | None = None
    bounce_imap_user: str | None = None
    bounce_imap_password: str | None = None
    bounce_imap_folder: str | None = None
    bounce_imap_ssl: bool | None = None
    bounce_poll_interval: int | None = None
    bounce_return_path: str | None = None


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
