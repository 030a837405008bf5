"""Administration use cases: one function per operation of the HTTP API (§5).

Tenants, accounts, instance settings, suspend/activate, run-now, message listing and
removal, stats, sync status and the command log. The API routes call these; the CLI and
the control socket are meant to call the same functions, so nothing here knows about
Quart or HTTP: inputs are plain values and dicts, failures are the exceptions of
:mod:`mailproxyd.errors` (``ValidationFailed``, ``NotFound``, ``Conflict``,
``DatabaseUnavailable``), which every interface translates once in its own way.

Each function is one database transaction (``ctx.db.run``), including its command-log
entry (§5.7), so a change and its log line commit together. A request refused by
validation or a missing resource is logged too, with its status, in a transaction of
its own (nothing else changed).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import msgspec

from mailproxyd import __version__
from mailproxyd.core import models
from mailproxyd.core import sync as core_sync
from mailproxyd.core.redact import SECRET_KEYS, redact_payload
from mailproxyd.core.timefmt import iso
from mailproxyd.errors import (
    Conflict,
    DatabaseUnavailable,
    MailProxyError,
    NotFound,
    ValidationFailed,
)
from mailproxyd.store import accounts, commandlog, events, meta, sync, tenants
from mailproxyd.store import messages as store_messages

log = logging.getLogger("mailproxyd.services.admin")


class SupervisorUnavailable(MailProxyError):
    """The supervisor did not take the request: the node is shutting down (HTTP 503)."""


class AdminContext(Protocol):
    """What these use cases need: settings, the async database, the supervisor link, a clock."""

    settings: Any
    db: Any
    link: Any

    def now(self) -> float: ...


# --------------------------------------------------------------------------------------
# Shared helpers (also used by services.enqueue)
# --------------------------------------------------------------------------------------


def _status_of(exc: BaseException) -> int | None:
    if isinstance(exc, ValidationFailed):
        return 422
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    return None


def log_command(
    tx: Any,
    *,
    endpoint: str,
    tenant_id: str | None,
    payload: Any,
    status: int,
    now: float,
    redacted: bool = False,
) -> None:
    """Append a command-log entry with secrets and base64 data redacted (§5.7).

    ``redacted``: the caller proved the payload holds nothing to redact (see
    :func:`needs_redaction`), so the walk over a large batch is skipped.
    """
    safe = payload if redacted else redact_payload(payload)
    commandlog.append(tx, now, endpoint, tenant_id, safe, status)


# Any of these in the raw JSON may mean a secret or base64 data to redact. A ``\u`` escape
# could spell a key name in disguise, so it sends the payload down the full walk too.
_REDACTION_MARKERS = (
    *(f'"{key}"'.encode() for key in sorted(SECRET_KEYS)),
    b'"attachments"',
    b"\\u",
)


def needs_redaction(raw: bytes) -> bool:
    """False only when the JSON text ``raw`` cannot contain anything ``redact_payload`` masks."""
    return any(marker in raw for marker in _REDACTION_MARKERS)


async def _mutation(
    ctx: AdminContext,
    endpoint: str,
    tenant_id: str | None,
    payload: Any,
    fn: Callable[..., Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Run ``fn(tx, *args, now=…, **kwargs)`` and log the command in the same transaction."""
    now = ctx.now()

    def work(tx: Any) -> Any:
        result = fn(tx, *args, now=now, **kwargs)
        log_command(
            tx, endpoint=endpoint, tenant_id=tenant_id, payload=payload, status=200, now=now
        )
        return result

    try:
        return await ctx.db.run(work)
    except MailProxyError as exc:
        status = _status_of(exc)
        if status is not None:
            await _log_failure(ctx, endpoint, tenant_id, payload, status, now)
        raise


async def _log_failure(
    ctx: AdminContext, endpoint: str, tenant_id: str | None, payload: Any, status: int, now: float
) -> None:
    try:
        await ctx.db.run(
            log_command,
            endpoint=endpoint,
            tenant_id=tenant_id,
            payload=payload,
            status=status,
            now=now,
        )
    except (DatabaseUnavailable, ValidationFailed):
        # The refusal itself is what the caller must see; a lost log line is not worth more.
        log.warning("could not record refused %s in the command log", endpoint)


def _require_tenant(tx: Any, tenant_id: str) -> None:
    if not tenants.exists(tx, tenant_id):
        raise tenants.not_found(tenant_id)


async def _read(ctx: AdminContext, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return await ctx.db.run(fn, *args, write=False, **kwargs)


# --------------------------------------------------------------------------------------
# Authentication, health, status, stats
# --------------------------------------------------------------------------------------


async def tenant_for_api_key(ctx: AdminContext, key: str) -> str | None:
    """The tenant owning the unexpired API key ``key`` (looked up by digest), else ``None``."""
    found = await _read(ctx, tenants.find_by_api_key, key, ctx.now())
    return None if found is None else str(found["id"])


async def database_reachable(ctx: AdminContext) -> bool:
    try:
        await _read(ctx, meta.schema_version)
    except DatabaseUnavailable:
        return False
    return True


async def status(ctx: AdminContext) -> dict[str, Any]:
    """Scheduler and node state (§5.1); worker counts come from the supervisor."""
    active = await _read(ctx, meta.get_scheduler_active)
    settings = ctx.settings
    workers: dict[str, Any]
    try:
        reply = await ctx.link.call("status", {})
        workers = dict(reply.get("workers") or {})
    except MailProxyError:
        workers = {}
    if not workers or not all(isinstance(v, Mapping) for v in workers.values()):
        # The supervisor did not answer: describe what this node is configured to run.
        workers = {
            "api": {"expected": 1, "running": 1},
            "sender": {"expected": settings.sender_processes, "running": 0},
            "reporter": {"expected": 1, "running": 0},
        }
    return {
        "scheduler_active": bool(active),
        "active": bool(active),
        "test_mode": bool(settings.test_mode),
        "version": __version__,
        "node": str(settings.node_id),
        "workers": workers,
    }


def _stats(tx: Any, tenant_id: str | None, now: float) -> dict[str, Any]:
    if tenant_id is not None:
        _require_tenant(tx, tenant_id)
    return dict(store_messages.stats(tx, now, tenant_id=tenant_id))


async def stats(ctx: AdminContext, tenant_id: str | None) -> dict[str, Any]:
    """Counts of tenants, accounts and messages by status (§5.1)."""
    return await _read(ctx, _stats, tenant_id, ctx.now())


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


def _run_now_tx(tx: Any, tenant_id: str, now: float) -> None:
    _require_tenant(tx, tenant_id)
    sync.run_now(tx, tenant_id)


async def run_now(ctx: AdminContext, tenant_id: str | None) -> None:
    """Wake every worker of every node; for a tenant also clear its DND and back-off (§5.2)."""
    if tenant_id is not None:
        await ctx.db.run(_run_now_tx, tenant_id, ctx.now())
    params = {"tenant_id": tenant_id} if tenant_id is not None else {}
    try:
        await ctx.link.call("run_now", params)
    except MailProxyError as exc:
        raise SupervisorUnavailable(f"run-now not delivered: {exc.message}") from exc


def _set_active(tx: Any, active: bool, now: float) -> bool:
    meta.set_scheduler_active(tx, active)
    return active


async def set_scheduler_active(ctx: AdminContext, active: bool) -> bool:
    """Global suspend/activate: the shared ``scheduler_active`` state (§3.2, §5.2)."""
    endpoint = "activate" if active else "suspend"
    result = await _mutation(ctx, endpoint, None, {}, _set_active, active)
    await ctx.link.send({"type": "wake", "target": "all", "reason": endpoint})
    return bool(result)


async def suspend(ctx: AdminContext, tenant_id: str, batch_code: str | None) -> dict[str, Any]:
    payload = _command_payload(tenant_id, batch_code)
    return await _mutation(
        ctx, "suspend", tenant_id, payload, tenants.suspend, tenant_id, batch_code
    )


async def activate(ctx: AdminContext, tenant_id: str, batch_code: str | None) -> dict[str, Any]:
    payload = _command_payload(tenant_id, batch_code)
    state = await _mutation(
        ctx, "activate", tenant_id, payload, tenants.activate, tenant_id, batch_code
    )
    await ctx.link.send(
        {"type": "wake", "target": "sender", "reason": "activate", "tenant_id": tenant_id}
    )
    return state


def _command_payload(tenant_id: str, batch_code: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"tenant_id": tenant_id}
    if batch_code is not None:
        payload["batch_code"] = batch_code
    return payload


# --------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------


def present_tenant(tenant: dict[str, Any]) -> dict[str, Any]:
    """A store tenant in its wire form (§5.5): masked ``client_auth``, ISO times."""
    return models.present_tenant(tenant)


def present_account(account: dict[str, Any]) -> dict[str, Any]:
    """A store account in its wire form (§5.4): derived ``use_tls``, ISO times."""
    return models.present_account(account)


_TS_FIELDS = ("deferred_ts", "sent_ts", "error_ts", "bounce_ts", "reported_ts")


def present_record(record: dict[str, Any]) -> dict[str, Any]:
    """A store record in its wire form (§5.3): integer Unix times, ISO ``created_at``."""
    out = dict(record)
    out.pop("seq", None)
    out["pk"] = str(out["pk"])
    for name in _TS_FIELDS:
        if out.get(name) is not None:
            out[name] = int(out[name])
    for name in ("created_at", "updated_at"):
        if out.get(name) is not None:
            out[name] = iso(float(out[name]))
    if "history" in out:
        out["history"] = [_present_event(e) for e in out["history"]]
    return out


def _present_event(event: dict[str, Any]) -> dict[str, Any]:
    out = dict(event)
    out["event_ts"] = int(out["event_ts"])
    if out.get("reported_ts") is not None:
        out["reported_ts"] = int(out["reported_ts"])
    if not out.get("metadata"):
        out.pop("metadata", None)
    return out


def encode_cursor(cursor: tuple[int, int]) -> str:
    raw = msgspec.json.encode([int(cursor[0]), int(cursor[1])])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> tuple[int, int]:
    """The (priority, seq) of an opaque ``next_cursor``; ``ValidationFailed`` when invalid."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = msgspec.json.decode(raw)
        priority, seq = value
        if type(priority) is not int or type(seq) is not int:
            raise ValueError(text)
    except (ValueError, TypeError, msgspec.DecodeError):
        raise ValidationFailed([("cursor", "invalid cursor")]) from None
    return priority, seq


def _list_messages(
    tx: Any, tenant_id: str, now: float, cursor: str | None, **filters: Any
) -> dict[str, Any]:
    _require_tenant(tx, tenant_id)
    after = decode_cursor(cursor) if cursor is not None else None
    records, next_cursor = store_messages.list_messages(tx, tenant_id, now, after=after, **filters)
    page: dict[str, Any] = {"messages": [present_record(r) for r in records]}
    if next_cursor is not None:
        page["next_cursor"] = encode_cursor(next_cursor)
    return page


async def list_messages(
    ctx: AdminContext,
    tenant_id: str,
    *,
    statuses: list[str] | None,
    account_id: str | None,
    batch_code: str | None,
    include_history: bool,
    limit: int,
    cursor: str | None,
    offset: int,
) -> dict[str, Any]:
    """One page of a tenant's messages (§5.3): ``{"messages": [...], "next_cursor"?}``."""
    return await _read(
        ctx,
        _list_messages,
        tenant_id,
        ctx.now(),
        cursor,
        statuses=statuses,
        account_id=account_id,
        batch_code=batch_code,
        include_history=include_history,
        limit=limit,
        offset=offset,
    )


def _get_message(tx: Any, tenant_id: str, message_id: str, now: float) -> dict[str, Any]:
    _require_tenant(tx, tenant_id)
    found = store_messages.get_message(tx, tenant_id, message_id, now)
    if found is None:
        raise NotFound(
            f"Message '{message_id}' not found for tenant '{tenant_id}'", code="message_not_found"
        )
    return present_record(found)


async def get_message(ctx: AdminContext, tenant_id: str, message_id: str) -> dict[str, Any]:
    """One record with its history (§5.3); ``NotFound`` (``message_not_found``)."""
    return await _read(ctx, _get_message, tenant_id, message_id, ctx.now())


def _delete_messages(tx: Any, tenant_id: str, ids: list[str], *, now: float) -> dict[str, Any]:
    _require_tenant(tx, tenant_id)
    result = store_messages.delete_messages(tx, tenant_id, ids)
    return {
        "removed": int(result["removed"]),
        "not_found": list(result["not_found"]),
        "unauthorized": [],
        "in_flight": list(result["in_flight"]),
    }


async def delete_messages(
    ctx: AdminContext, tenant_id: str, ids: list[str], *, payload: Any = None
) -> dict[str, Any]:
    """Remove a tenant's messages by id with their events; ``sending`` ones are kept (§5.3)."""
    return await _mutation(
        ctx,
        "deleteMessages",
        tenant_id,
        payload if payload is not None else {"ids": ids},
        _delete_messages,
        tenant_id,
        ids,
    )


def _cleanup(tx: Any, tenant_id: str, older_than: int, *, now: float) -> int:
    _require_tenant(tx, tenant_id)
    return int(store_messages.cleanup_messages(tx, tenant_id, older_than, now))


async def cleanup_messages(
    ctx: AdminContext, tenant_id: str, older_than_seconds: int | None, *, payload: Any = None
) -> int:
    """Remove fully acknowledged terminal messages older than the threshold (§5.3)."""
    older = (
        older_than_seconds
        if older_than_seconds is not None
        else int(ctx.settings.delivery_report_retention_seconds)
    )
    return await _mutation(
        ctx,
        "cleanupMessages",
        tenant_id,
        payload if payload is not None else {"older_than_seconds": older_than_seconds},
        _cleanup,
        tenant_id,
        max(0, older),
    )


# --------------------------------------------------------------------------------------
# Accounts
# --------------------------------------------------------------------------------------


def _create_account(tx: Any, tenant_id: str, fields: dict[str, Any], *, now: float) -> bool:
    _require_tenant(tx, tenant_id)
    return bool(accounts.create_or_replace(tx, tenant_id, fields, now))


async def create_account(ctx: AdminContext, tenant_id: str, payload: dict[str, Any]) -> bool:
    """``POST /account``: create or replace; True when created (§5.4)."""
    body = {k: v for k, v in payload.items() if k != "tenant_id"}
    try:
        fields = models.validate_account(body, batch_default=ctx.settings.batch_size_per_account)
    except ValidationFailed:
        await _log_failure(ctx, "addAccount", tenant_id, payload, 422, ctx.now())
        raise
    return await _mutation(
        ctx, "addAccount", tenant_id, payload, _create_account, tenant_id, fields
    )


async def list_accounts(ctx: AdminContext, tenant_id: str) -> list[dict[str, Any]]:
    def work(tx: Any) -> list[dict[str, Any]]:
        _require_tenant(tx, tenant_id)
        return [present_account(a) for a in accounts.list_accounts(tx, tenant_id)]

    return await _read(ctx, work)


async def get_account(ctx: AdminContext, tenant_id: str, account_id: str) -> dict[str, Any]:
    def work(tx: Any) -> dict[str, Any]:
        _require_tenant(tx, tenant_id)
        return present_account(accounts.get(tx, tenant_id, account_id))

    return await _read(ctx, work)


def _update_account(
    tx: Any, tenant_id: str, account_id: str, body: dict[str, Any], *, now: float
) -> None:
    _require_tenant(tx, tenant_id)
    current = accounts.get(tx, tenant_id, account_id)
    # Judged against the stored account: use_tls derivation and conflicts need it (§10.1).
    changes = models.validate_account_update(body, account_id=account_id, current=current)
    accounts.update(tx, tenant_id, account_id, changes, now)


async def update_account(
    ctx: AdminContext, tenant_id: str, account_id: str, payload: dict[str, Any]
) -> None:
    """``PUT /account/{id}``: partial update; ``null`` returns a field to its default (§5.4)."""
    body = {k: v for k, v in payload.items() if k != "tenant_id"}
    await _mutation(
        ctx, "updateAccount", tenant_id, payload, _update_account, tenant_id, account_id, body
    )


def _delete_account(tx: Any, tenant_id: str, account_id: str, *, now: float) -> int:
    _require_tenant(tx, tenant_id)
    return int(accounts.delete(tx, tenant_id, account_id, now))


async def delete_account(ctx: AdminContext, tenant_id: str, account_id: str) -> int:
    """Delete an account; its queued messages fail ``account deleted``; returns their count."""
    failed = await _mutation(
        ctx,
        "deleteAccount",
        tenant_id,
        {"tenant_id": tenant_id, "id": account_id},
        _delete_account,
        tenant_id,
        account_id,
    )
    if failed:
        await ctx.link.send({"type": "wake", "target": "reporter", "reason": "event"})
    return int(failed)


# --------------------------------------------------------------------------------------
# Tenants
# --------------------------------------------------------------------------------------


async def create_tenant(ctx: AdminContext, payload: dict[str, Any]) -> dict[str, Any]:
    """``POST /tenant``: ``{"created": bool, "api_key"?: str}`` (the key only on creation)."""
    tenant_id = payload.get("id") if isinstance(payload.get("id"), str) else None
    try:
        fields = models.validate_tenant(payload)
    except ValidationFailed:
        await _log_failure(ctx, "addTenant", tenant_id, payload, 422, ctx.now())
        raise

    def work(tx: Any, *, now: float) -> dict[str, Any]:
        return dict(tenants.create_or_replace(tx, fields, now))

    result = await _mutation(ctx, "addTenant", fields["id"], payload, work)
    out: dict[str, Any] = {"created": bool(result["created"])}
    if result.get("api_key"):
        out["api_key"] = result["api_key"]
    return out


async def list_tenants(ctx: AdminContext, *, active_only: bool = False) -> list[dict[str, Any]]:
    found = await _read(ctx, tenants.list_tenants, active_only)
    return [present_tenant(t) for t in found]


async def get_tenant(ctx: AdminContext, tenant_id: str) -> dict[str, Any]:
    return present_tenant(await _read(ctx, tenants.get, tenant_id))


async def update_tenant(ctx: AdminContext, tenant_id: str, payload: dict[str, Any]) -> None:
    """``PUT /tenant/{id}``: partial update, ``client_auth`` merged key by key (§5.5)."""

    def work(tx: Any, *, now: float) -> None:
        current = tenants.get(tx, tenant_id)
        changes = models.validate_tenant_update(payload, current=current)
        tenants.update(tx, tenant_id, changes, now)

    await _mutation(ctx, "updateTenant", tenant_id, payload, work)


async def delete_tenant(ctx: AdminContext, tenant_id: str) -> None:
    def work(tx: Any, *, now: float) -> None:
        tenants.delete(tx, tenant_id)

    await _mutation(ctx, "deleteTenant", tenant_id, {"id": tenant_id}, work)


async def issue_api_key(
    ctx: AdminContext, tenant_id: str, expires_at: int | None
) -> dict[str, Any]:
    """A new tenant key (the old one stops working at once): ``{"api_key", "expires_at"?}``."""

    def work(tx: Any, *, now: float) -> str:
        _require_tenant(tx, tenant_id)
        return str(tenants.issue_api_key(tx, tenant_id, now, expires_at))

    payload = {"expires_at": expires_at} if expires_at is not None else {}
    key = await _mutation(ctx, "createApiKey", tenant_id, payload, work)
    out: dict[str, Any] = {"api_key": key}
    if expires_at is not None:
        out["expires_at"] = int(expires_at)
    return out


async def revoke_api_key(ctx: AdminContext, tenant_id: str) -> None:
    def work(tx: Any, *, now: float) -> None:
        tenants.revoke_api_key(tx, tenant_id, now)

    await _mutation(ctx, "revokeApiKey", tenant_id, {}, work)


_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(core_sync.SyncState))


def _sync_view(row: Mapping[str, Any]) -> core_sync.TenantSyncView:
    state = core_sync.SyncState(**{k: row[k] for k in _STATE_FIELDS if row.get(k) is not None})
    return core_sync.TenantSyncView(
        id=str(row["id"]),
        name=row.get("name"),
        active=bool(row["active"]),
        client_base_url=row.get("client_base_url"),
        unreported_events=int(row.get("unreported_events") or 0),
        state=state,
    )


async def sync_status(ctx: AdminContext, tenant_id: str | None) -> dict[str, Any]:
    """``GET /tenants/sync-status`` (without ``ok``): every tenant, or only ``tenant_id``."""
    now = ctx.now()
    interval = int(ctx.settings.sync_interval)

    def work(tx: Any) -> dict[str, Any]:
        if tenant_id is not None:
            _require_tenant(tx, tenant_id)
        views = [_sync_view(row) for row in sync.sync_status(tx, now, tenant_id)]
        doc = core_sync.status_document(views, now=now, interval=interval)
        doc.pop("ok", None)
        return doc

    return await _read(ctx, work)


# --------------------------------------------------------------------------------------
# Instance
# --------------------------------------------------------------------------------------


async def get_instance(ctx: AdminContext) -> dict[str, Any]:
    """Instance name, version and bounce settings (§5.6), password as a flag only."""
    found = dict(await _read(ctx, meta.get_instance))
    found["version"] = __version__
    if found.get("name") is None and getattr(ctx.settings, "instance_name", None):
        found["name"] = ctx.settings.instance_name
    return models.present_instance(found)


async def update_instance(ctx: AdminContext, payload: dict[str, Any]) -> None:
    """``PUT /instance``: partial update of the name and the bounce settings (§5.6)."""

    def work(tx: Any, *, now: float) -> None:
        changes = models.validate_instance_update(payload, current=meta.get_instance(tx))
        meta.update_instance(tx, changes, now)

    await _mutation(ctx, "updateInstance", None, payload, work)


async def reload_bounce(ctx: AdminContext) -> None:
    """Restart the bounce poller with the stored settings: a wake-up for the reporters."""
    await ctx.link.send({"type": "wake", "target": "reporter", "reason": "reload_bounce"})


# --------------------------------------------------------------------------------------
# Command log
# --------------------------------------------------------------------------------------


def _present_command(entry: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    out = {k: entry.get(k) for k in keys}
    out["command_ts"] = int(entry["command_ts"])
    return out


_LIST_KEYS = ("id", "command_ts", "endpoint", "tenant_id", "payload", "response_status")
_EXPORT_KEYS = ("endpoint", "tenant_id", "payload", "command_ts")


async def command_log(
    ctx: AdminContext,
    *,
    tenant_id: str | None,
    since_ts: int | None,
    until_ts: int | None,
    endpoint_filter: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """Command-log entries, newest first (§5.7); payloads were redacted when written."""
    rows = await _read(
        ctx,
        commandlog.list_commands,
        tenant_id=tenant_id,
        since_ts=since_ts,
        until_ts=until_ts,
        endpoint_filter=endpoint_filter,
        limit=limit,
        offset=offset,
    )
    return [_present_command(row, _LIST_KEYS) for row in rows]


async def command_log_export(
    ctx: AdminContext, *, tenant_id: str | None, since_ts: int | None, until_ts: int | None
) -> list[dict[str, Any]]:
    """At most 100,000 entries, oldest first (§5.7)."""
    rows = await _read(
        ctx, commandlog.export, tenant_id=tenant_id, since_ts=since_ts, until_ts=until_ts
    )
    return [_present_command(row, _EXPORT_KEYS) for row in rows]


# --------------------------------------------------------------------------------------
# Event stream
# --------------------------------------------------------------------------------------


async def latest_event_id(ctx: AdminContext) -> int:
    return int(await _read(ctx, events.last_event_id) or 0)


async def events_after(
    ctx: AdminContext, after_id: int, tenant_id: str | None, *, limit: int = 500
) -> tuple[list[dict[str, Any]], int]:
    """Event-stream frames (§5.9) of events newer than ``after_id``, and the new high mark."""
    rows = await _read(ctx, events.tail, after_id, tenant_id=tenant_id, limit=limit)
    frames = [core_sync.event_frame(row["tenant_id"], row) for row in rows]
    last = max((int(row["event_id"]) for row in rows), default=after_id)
    return frames, last
