"""What every administration use case shares: the context, command logging, transactions.

A mutation is one database transaction (``ctx.db.run``) that includes its command-log entry
(reference §5.7), so a change and its log line commit together. A request refused by validation or a
missing resource is logged too, with its status, in a transaction of its own (nothing else
changed). ``log_command`` and ``needs_redaction`` are also used by ``services.enqueue``.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from mailproxyd.core.redact import SECRET_KEYS, redact_payload
from mailproxyd.errors import (
    Conflict,
    DatabaseUnavailable,
    MailProxyError,
    NotFound,
    ValidationFailed,
)
from mailproxyd.services.context import ServiceContext
from mailproxyd.store import Tx, commandlog, tenants

# The name predates the split into a package; operators' log filters may rely on it.
log = logging.getLogger("mailproxyd.services.admin")

T = TypeVar("T")

#: Who is making the current change, for the INFO line of tenant and account changes (reference §18.6):
#: set by each interface for the request it serves (``api admin from 10.0.0.1``, ``control
#: socket uid 1000``); never a token.
ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("mailproxyd_actor", default="node")

# Changes logged at INFO: endpoint → what changed.
_LOGGED_CHANGES = {
    "addTenant": "tenant",
    "updateTenant": "tenant",
    "deleteTenant": "tenant",
    "createApiKey": "tenant",
    "revokeApiKey": "tenant",
    "addAccount": "account",
    "updateAccount": "account",
    "deleteAccount": "account",
}
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def _log_change(endpoint: str, tenant_id: str | None, payload: Any, account_id: Any) -> None:
    """One INFO line per tenant or account change: who, what, which fields — never a value."""
    what = _LOGGED_CHANGES.get(endpoint)
    if what is None:
        return
    fields = ""
    if isinstance(payload, dict):
        names = sorted(k for k in payload if isinstance(k, str) and _FIELD_NAME.match(k))
        fields = " fields=" + ",".join(names) if names else ""
    account = f" account={account_id}" if what == "account" and account_id else ""
    log.info(
        "%s change by %s: %s tenant=%s%s%s", what, ACTOR.get(), endpoint, tenant_id, account, fields
    )


def _status_of(exc: BaseException) -> int | None:
    """The status a refusal is logged with; ``None`` for failures that are not refusals."""
    if isinstance(exc, ValidationFailed):
        return 422
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    return None


def log_command(
    tx: Tx,
    *,
    endpoint: str,
    tenant_id: str | None,
    payload: Any,
    status: int,
    now: float,
    redacted: bool = False,
) -> None:
    """Append a command-log entry with secrets and base64 data redacted (reference §5.7).

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


async def mutation(
    ctx: ServiceContext,
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

    def work(tx: Tx) -> Any:
        result = fn(tx, *args, now=now, **kwargs)
        log_command(
            tx, endpoint=endpoint, tenant_id=tenant_id, payload=payload, status=200, now=now
        )
        return result

    try:
        result = await ctx.db.run(work)
    except MailProxyError as exc:
        status = _status_of(exc)
        if status is not None:
            await log_failure(ctx, endpoint, tenant_id, payload, status, now)
        raise
    account_id = (
        args[1] if endpoint in ("updateAccount", "deleteAccount") and len(args) > 1 else None
    )
    if endpoint == "addAccount" and isinstance(payload, dict):
        account_id = payload.get("id")
    _log_change(endpoint, tenant_id, payload, account_id)
    return result


async def log_failure(
    ctx: ServiceContext, endpoint: str, tenant_id: str | None, payload: Any, status: int, now: float
) -> None:
    """Record a refused request in a transaction of its own; a lost line only warns."""
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


async def validated(
    ctx: ServiceContext,
    endpoint: str,
    tenant_id: str | None,
    payload: Any,
    validate: Callable[[], T],
) -> T:
    """``validate()``'s result; a ``ValidationFailed`` is logged with 422 before it propagates.

    For checks that run before any transaction, so ``mutation`` cannot log them itself.
    """
    try:
        return validate()
    except ValidationFailed:
        await log_failure(ctx, endpoint, tenant_id, payload, 422, ctx.now())
        raise


def require_tenant(tx: Tx, tenant_id: str) -> None:
    """``NotFound`` (``tenant_not_found``) unless the tenant exists."""
    if not tenants.exists(tx, tenant_id):
        raise tenants.not_found(tenant_id)


async def read(ctx: ServiceContext, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(tx, *args, **kwargs)`` in a read-only transaction."""
    return await ctx.db.run(fn, *args, write=False, **kwargs)
