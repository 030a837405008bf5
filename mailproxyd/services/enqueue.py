"""The add-messages use case (reference §6): envelope → validation → store → wake-up.

Everything that touches the database happens in **one** transaction in one worker
thread: the tenant/account lookups validation needs, the pure validation of every item
(``core.messages``), the store's insert/replace/re-queue with the recorded rejections of
reference §6.9, and the command-log entry. Keeping validation inside the transaction means an
account deleted concurrently can never receive a message; running it in the thread keeps
the event loop free while a large batch is checked. After the commit, senders are woken.
In the API, that transaction is a savepoint of a group transaction shared with the concurrent
requests (``services.ingest``): one commit for all of them, each still applied or not alone.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mailproxyd.core import messages as core_messages
from mailproxyd.core import reasons as R
from mailproxyd.core.ids import is_batch_code
from mailproxyd.core.messages import (
    Accepted,
    Envelope,
    Rejected,
    TenantView,
    ValidationContext,
)
from mailproxyd.errors import NotFound
from mailproxyd.services.admin import log_command, needs_redaction
from mailproxyd.services.context import ServiceContext
from mailproxyd.services.ingest import Bounds, IngestWriter
from mailproxyd.store import accounts, commandlog, queue, tenants


@dataclass(frozen=True, slots=True)
class EnqueueOutcome:
    """The answer of reference §6.8: ``queued`` and every rejection in request order."""

    queued: int
    rejected: list[dict[str, Any]]
    #: True when nothing was queued and some rejection is a validation failure (HTTP 400).
    nothing_queued: bool
    status: int


def _tenant_view(tx: Any, tenant_id: str) -> TenantView | None:
    """What add-messages validation needs to know about a tenant, ``None`` if unknown."""
    try:
        tenant = tenants.get(tx, tenant_id)
    except NotFound:
        return None
    rows = accounts.list_accounts(tx, tenant_id)
    default_id = next((str(a["id"]) for a in rows if a.get("is_default")), None)
    return TenantView(
        default_id, frozenset(str(a["id"]) for a in rows), bool(tenant.get("client_base_url"))
    )


def _store_batch(
    tx: Any, tenant_id: str, items: list[Any], rejections: list[Any], now: float
) -> tuple[int, list[Any]]:
    """Store one tenant's accepted items and recorded rejections (reference §6.7, §6.9).

    ``items`` are ``core.messages.Accepted``, ``rejections`` recordable ``Rejected``.
    Returns the queued count and the store's idempotency rejections (rules 27/28) as
    ``Rejected`` values carrying the original request index.
    """
    rows: list[dict[str, Any]] = []
    for acc in items:
        row = acc.message  # fresh per item: adding the store's keys in place is safe
        row["message_id"] = acc.message_id
        if acc.message_id_generated:
            row["message_id_generated"] = True
        rows.append(row)
    records = [_rejection_record(rej) for rej in rejections]
    result = queue.enqueue(tx, tenant_id, rows, records, now)
    late = [
        Rejected(
            items[r["index"]].index,
            r["id"],
            r["reason"],
            28 if r["reason"] == R.ALREADY_SENT else 27,
            tenant_id,
        )
        for r in result.rejected
    ]
    return int(result.queued), late


def _rejection_record(rej: Rejected) -> dict[str, Any]:
    raw = rej.raw if isinstance(rej.raw, dict) else {}
    record: dict[str, Any] = {
        "id": rej.id,
        "reason": rej.reason,
        "account_id": rej.account_id,
        "priority": rej.priority,
        "payload": raw,
    }
    batch_code = raw.get("batch_code")
    if isinstance(batch_code, str) and is_batch_code(batch_code):
        record["batch_code"] = batch_code
    return record


def _rejection(item: Rejected) -> dict[str, Any]:
    return {"id": item.id, "reason": item.reason}


def _run(
    tx: Any,
    envelope: Envelope,
    *,
    caller_tenant: str | None,
    envelope_tenant: str | None,
    settings: Any,
    payload: dict[str, Any],
    logged: str | None,
    now: float,
) -> EnqueueOutcome:
    def lookup(tenant_id: str) -> TenantView | None:
        return _tenant_view(tx, tenant_id)

    vctx = ValidationContext(
        caller_tenant=caller_tenant,
        lookup=lookup,
        envelope_tenant=envelope_tenant,
        default_priority=(
            envelope.default_priority
            if envelope.default_priority is not None
            else int(settings.default_priority)
        ),
        attachment_max_mb=int(settings.attachment_max_mb),
        attachment_fs_roots=tuple(settings.attachment_fs_roots),
    )
    result = core_messages.validate_batch(envelope, vctx)
    # The store sees one tenant at a time; requests usually name a single tenant.
    by_tenant: dict[str, list[Accepted]] = {}
    for acc in result.accepted:
        by_tenant.setdefault(acc.tenant_id, []).append(acc)
    recordable: dict[str, list[Rejected]] = {}
    for rej in result.rejected:
        if rej.recordable and rej.tenant_id is not None:
            recordable.setdefault(rej.tenant_id, []).append(rej)

    # Rules 27/28 (in flight, already sent) are decided by the store against stored rows.
    late: dict[int, Rejected] = {}
    queued = 0
    for tenant_id in _ordered(by_tenant, recordable):
        count, refused = _store_batch(
            tx,
            tenant_id,
            by_tenant.get(tenant_id, []),
            recordable.get(tenant_id, []),
            now,
        )
        queued += count
        for rej in refused:
            late[rej.index] = rej

    rejected = sorted([*result.rejected, *late.values()], key=lambda r: r.index)
    nothing = queued == 0 and any(r.validation_failure for r in rejected)
    status = 400 if nothing else 200
    log_tenant = envelope_tenant or caller_tenant or _single_tenant(by_tenant, recordable)
    if logged is not None:
        # The body as received holds nothing to redact: its own text is the entry.
        commandlog.append(tx, now, "addMessages", log_tenant, None, status, encoded=logged)
    else:
        log_command(
            tx,
            endpoint="addMessages",
            tenant_id=log_tenant,
            payload=payload,
            status=status,
            now=now,
        )
    return EnqueueOutcome(queued, [_rejection(r) for r in rejected], nothing, status)


def _ordered(*groups: dict[str, Any]) -> Iterable[str]:
    seen: dict[str, None] = {}
    for group in groups:
        for key in group:
            seen.setdefault(key, None)
    return seen


def _single_tenant(*groups: dict[str, Any]) -> str | None:
    names = set(_ordered(*groups))
    return next(iter(names)) if len(names) == 1 else None


async def add_messages(
    ctx: ServiceContext,
    body: dict[str, Any],
    *,
    caller_tenant: str | None,
    envelope_tenant: str | None,
    raw: bytes | None = None,
    writer: IngestWriter | None = None,
) -> EnqueueOutcome:
    """Validate and queue one add-messages request; wake the senders if anything was queued.

    ``caller_tenant`` is the tenant of a tenant key (``None`` for the admin);
    ``envelope_tenant`` the request's ``tenant_id`` (query or body), already scoped.
    ``raw`` (the request bytes, when the caller has them): a body that provably holds nothing
    to redact is logged as its own text, without a redacting walk and a second encoding.
    ``writer`` (the API's): the request shares a group transaction with concurrent ones and may
    be refused with ``ingest.Overloaded`` (nothing applied) when too much work is waiting.
    Raises ``ValidationFailed`` (422) and ``TooManyMessages`` (413) for envelope problems.
    """
    settings = ctx.settings
    envelope = core_messages.validate_envelope(body, int(settings.max_batch))
    if envelope_tenant is not None and envelope.tenant_id != envelope_tenant:
        envelope = envelope._replace(tenant_id=envelope_tenant)
    if not envelope.messages:
        return EnqueueOutcome(0, [], False, 200)
    store = functools.partial(
        _run,
        envelope=envelope,
        caller_tenant=caller_tenant,
        envelope_tenant=envelope.tenant_id,
        settings=settings,
        payload=body,
        logged=raw.decode("utf-8") if raw is not None and not needs_redaction(raw) else None,
        now=ctx.now(),
    )
    outcome: EnqueueOutcome
    if writer is None:
        outcome = await ctx.db.run(store)
    else:
        outcome = await writer.submit(
            store,
            messages=len(envelope.messages),
            size=len(raw) if raw is not None else 0,
            bounds=Bounds.of(settings),
        )
    if outcome.queued:
        await ctx.link.wake("sender", "enqueue")
    return outcome
