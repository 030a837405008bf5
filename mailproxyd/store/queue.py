"""The message queue: enqueue, claim with leases, fenced completion (reference §6.7, §6.9, §8).

Rows carry ``ready_ts``: 0 for ``pending``, ``deferred_ts`` for ``deferred``, NULL otherwise. The
queue indexes are partial on ``ready_ts IS NOT NULL`` (and on ``status = 'sending'`` for leases),
so finding and claiming work costs the same with ten or a million rows kept for retention.

Leases and completion live in ``store.leases``, listing and reads of records in
``store.messages``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailproxyd.errors import NotFound

from . import meta
from ._codec import dumps, loads
from ._eventlog import event_row, record_events
from ._payload import open_payload, seal_payload
from .database import Tx
from .leases import end_leases

IN_FLIGHT = "in flight"
ALREADY_SENT = "already sent"
DEFERRED_REQUESTED = "requested"


@dataclass
class EnqueueResult:
    """``queued``: inserted + replaced + re-queued; ``rejected``: idempotency rejections as
    ``{"index", "id", "reason"}`` (index into ``items``), in item order."""

    queued: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


def _reserve_seq(tx: Tx, n: int) -> list[int]:
    """``n`` fresh arrival sequence numbers, ascending."""
    if n <= 0:
        return []
    if tx.backend == "postgres":
        return sorted(int(row["value"]) for row in tx.all("seq_reserve", {"n": n}))
    last = int(tx.value("seq_reserve", {"n": n}))
    return list(range(last - n + 1, last + 1))


def _schedule(item: Mapping[str, Any], now: float) -> dict[str, Any]:
    deferred_ts = item.get("deferred_ts")
    if deferred_ts is not None and float(deferred_ts) > now:
        return {
            "status": "deferred",
            "ready_ts": float(deferred_ts),
            "deferred_ts": float(deferred_ts),
            "deferred_reason": DEFERRED_REQUESTED,
        }
    return {"status": "pending", "ready_ts": 0.0, "deferred_ts": None, "deferred_reason": None}


def enqueue(
    tx: Tx,
    tenant_id: str,
    items: Sequence[Mapping[str, Any]],
    rejections: Sequence[Mapping[str, Any]],
    now: float,
) -> EnqueueResult:
    """Apply a validated batch for one tenant (reference §6.7) and record its rejections (reference §6.9).

    ``items``: normalised messages (stored as the payload) with ``id``, ``account_id``,
    ``priority``, ``message_id``, ``deferred_ts``, ``batch_code``, and optionally
    ``message_id_generated: True`` (then a stored Message-ID is kept on replacement).
    ``rejections``: ``{"id", "reason", "account_id"?, "priority", "batch_code"?, "payload"?}``
    for validation failures of rules 7–26 that must be recorded. Raises ``NotFound`` when
    the tenant does not exist.
    """
    # Stands in for a foreign key on messages.tenant_id (see the schema): the tenant must
    # exist, and cannot be deleted before this transaction ends.
    if tx.one("tenant_key_share", {"tenant_id": tenant_id}) is None:
        raise NotFound(f"Tenant '{tenant_id}' not found", code="tenant_not_found")
    ids = [str(item["id"]) for item in items] + [str(rej["id"]) for rej in rejections]
    # Planned each time: a generic plan made while the queue was young seq-scanned it, and
    # each request grew slower with the backlog until autovacuum's next ANALYZE (PostgreSQL:
    # 12 → 37 ms for 100 messages over the first 10,000).
    existing = {
        row["id"]: row
        for row in tx.all(
            "messages_existing", {"tenant_id": tenant_id, "ids": dumps(ids)}, plan_each_time=True
        )
    }
    result = EnqueueResult()
    inserts: list[dict[str, Any]] = []
    requeues: list[dict[str, Any]] = []
    needs_seq: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        message_key = str(item["id"])
        old = existing.get(message_key)
        if old is not None and old["status"] in ("sending", "sent"):
            reason = IN_FLIGHT if old["status"] == "sending" else ALREADY_SENT
            result.rejected.append({"index": index, "id": message_key, "reason": reason})
            continue
        payload = dict(item)
        generated = payload.pop("message_id_generated", False)
        message_id = item.get("message_id")
        if old is not None and generated and old["message_id"]:
            message_id = old["message_id"]
            payload["message_id"] = message_id
        params = {
            "tenant_id": tenant_id,
            "id": message_key,
            "account_id": item.get("account_id"),
            "priority": int(item["priority"]),
            "batch_code": item.get("batch_code") or None,
            "message_id": message_id,
            "payload": seal_payload(tx.box, tenant_id, payload),
            "error": None,
            "error_ts": None,
            "now": now,
            **_schedule(item, now),
        }
        if old is None:
            inserts.append(params)
            needs_seq.append(params)
        elif old["pk"] is None:
            # The same id earlier in this batch (the service normally rejects that, rule 6):
            # the later item wins and keeps the earlier one's place.
            inserts[inserts.index(old["params"])] = params
            needs_seq[needs_seq.index(old["params"])] = params
        else:
            params["pk"] = old["pk"]
            if old["status"] == "error":
                needs_seq.append(params)
            else:
                params["seq"] = old["seq"]
            requeues.append(params)
        # What this batch made of the key, so later items and rejections see it.
        existing[message_key] = {
            **(old or {"pk": None}),
            "status": params["status"],
            "message_id": message_id,
            "params": params,
        }
        result.queued += 1
    for params, seq in zip(needs_seq, _reserve_seq(tx, len(needs_seq)), strict=True):
        params["seq"] = seq
    if tx.backend == "postgres" and inserts:
        for params in inserts:
            params["created_at"] = params["updated_at"] = now
        tx.copy("message_copy", inserts)
    else:
        tx.many("message_insert", inserts)
    tx.many("message_requeue", requeues)
    _record_rejections(tx, tenant_id, rejections, existing, now)
    return result


def _record_rejections(
    tx: Tx,
    tenant_id: str,
    rejections: Sequence[Mapping[str, Any]],
    existing: dict[str, dict[str, Any]],
    now: float,
) -> None:
    events = []
    for rejection in rejections:
        message_key = str(rejection["id"])
        old = existing.get(message_key)
        payload = dict(rejection.get("payload") or {"id": message_key})
        payload.setdefault("id", message_key)
        reason = str(rejection["reason"])
        params: dict[str, Any] = {
            "tenant_id": tenant_id,
            "id": message_key,
            "account_id": rejection.get("account_id"),
            "priority": int(rejection["priority"]),
            "batch_code": rejection.get("batch_code") or None,
            "message_id": None,
            "payload": seal_payload(tx.box, tenant_id, payload),
            "error": reason,
            "error_ts": now,
            "status": "error",
            "ready_ts": None,
            "deferred_ts": None,
            "deferred_reason": None,
            "now": now,
        }
        if old is None:
            params["seq"] = _reserve_seq(tx, 1)[0]
            pk = tx.value("message_insert_returning", params)
            existing[message_key] = {"pk": pk, "status": "error", "message_id": None}
        elif old["status"] == "error" and old["pk"] is not None:
            pk = old["pk"]
            params["pk"] = pk
            tx.execute("message_rerecord_error", params)
        else:
            continue  # never alter a pending, deferred, sending or sent message (reference §6.9)
        events.append(event_row({**params, "pk": pk}, "error", now, reason))
    record_events(tx, events, now)


# ---------------------------------------------------------------- finding work


def ready_accounts(tx: Tx, now: float) -> list[dict[str, Any]]:
    """Accounts with at least one ready message (reference §8.1), with their settings.

    Each item: ``tenant_id``, ``account_id``, ``settings`` (the account's stored settings:
    limits, ``batch_size``, ``max_concurrent``, …) and ``tenant_rate_limits``. Empty while the
    scheduler is inactive.
    """
    if not meta.get_scheduler_active(tx):
        return []
    result = []
    for row in tx.all("ready_accounts", {"now": now}):
        tenant_settings = loads(row["tenant_settings"], {})
        result.append(
            {
                "tenant_id": row["tenant_id"],
                "account_id": row["account_id"],
                "settings": loads(row["settings"], {}),
                "tenant_rate_limits": tenant_settings.get("rate_limits") or {},
            }
        )
    return result


def next_ready_ts(tx: Tx, now: float) -> float | None:
    """The earliest future time a deferred message becomes ready (for the idle sleep)."""
    value = tx.value("next_ready_ts", {"now": now})
    return float(value) if value is not None else None


def claim_batch(
    tx: Tx,
    tenant_id: str,
    account_id: str,
    owner: str,
    limit: int,
    now: float,
    lease_seconds: float,
    failures: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Claim up to ``limit`` ready messages of one account, in (priority, seq) order.

    They become ``sending`` with ``lease_owner = owner`` and ``lease_until = now +
    lease_seconds``. ``owner`` must be unique per worker process and start with the node id
    and ``/`` (e.g. ``"mail-1/prod/sender-0-4711"``): completions are fenced by it and
    ``release_node`` finds a node's leases by that prefix. Expired leases of the account are
    handled first (reference §8.3). Each result holds
    ``pk``, ``tenant_id``, ``id``, ``account_id``, ``priority``, ``seq``, ``batch_code``,
    ``message_id``, ``payload`` (decoded, attachment secrets in clear), ``retry_count``,
    ``expiry_count``, ``outcome_uncertain``, ``lease_until``, ``created_at``, ``tenant_name``.
    ``failures`` receives the expired messages that became ``error`` (with ``tenant_name``).
    """
    if limit <= 0 or not meta.get_scheduler_active(tx):
        return []
    gate = tx.one("claim_gate", {"tenant_id": tenant_id, "account_id": account_id})
    if (
        not gate
        or not gate["tenant_active"]
        or gate["whole_suspended"]
        or not gate["account_exists"]
    ):
        return []
    params = {"tenant_id": tenant_id, "account_id": account_id, "now": now}
    expired: list[dict[str, Any]] = []
    end_leases(
        tx, tx.all("leases_expired_for_account", params), now, expired=True, failures=expired
    )
    for row in expired:
        row["tenant_name"] = gate["tenant_name"]
    if failures is not None:
        failures.extend(expired)
    rows = tx.all(
        "claim_batch",
        {**params, "owner": owner, "lease_until": now + lease_seconds, "limit": int(limit)},
    )
    rows.sort(key=lambda row: (row["priority"], row["seq"]))
    for row in rows:
        row["payload"] = open_payload(tx.box, row["tenant_id"], row["payload"])
        row["outcome_uncertain"] = bool(row["outcome_uncertain"])
        # The metrics label the outcome with the tenant's name at the time (reference §14).
        row["tenant_name"] = gate["tenant_name"]
    return rows
