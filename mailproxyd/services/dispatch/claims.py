"""The store functions the dispatch cycle composes: claim, admit, release, renew (reference §8.3, §9).

Each runs inside one transaction (through the sender's ``Committer`` or ``AsyncDatabase.run``)
and is made only of calls into ``mailproxyd.store``; several store operations share one
commit because a commit, not a statement, is what a write costs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from mailproxyd.core.ratelimit import Window, account_windows, tenant_windows, whole_second
from mailproxyd.services.dispatch.record import Completion, failed_instead
from mailproxyd.store import accounts, gauges, leases, meta, queue, ratelimit, sessions

DEFAULT_MAX_CONCURRENT = 3
RATE_LIMITED = "rate_limit"
RATE_REJECTED = "rate_limit_exceeded"


@dataclasses.dataclass(slots=True)
class Claim:
    """What one claim transaction returns: the account (None: gone), rows, new session slots."""

    account: dict[str, Any] | None
    rows: list[dict[str, Any]]
    new_slots: list[int]
    bounce_return_path: str | None = None
    #: Every session slot of the account is held elsewhere; nothing was claimed.
    busy: bool = False
    #: Rate-limiter verdicts for the first ``len(admissions)`` rows, taken in the claim.
    admissions: list[Admission] = dataclasses.field(default_factory=list)
    #: Messages of the account whose lease expired once too often: failed by this claim.
    lease_failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _windows(account: Mapping[str, Any], tenant_limits: Mapping[str, Any]) -> list[Window]:
    """Every rate-limit window that applies to the account's sends (reference §9)."""
    return [*account_windows(account), *tenant_windows(tenant_limits)]


def max_concurrent_of(account: Mapping[str, Any]) -> int:
    return max(1, int(account.get("max_concurrent") or DEFAULT_MAX_CONCURRENT))


def claim_tx(
    tx: Any,
    *,
    tenant_id: str,
    account_id: str,
    owner: str,
    now: float,
    lease_seconds: float,
    held_slots: int,
    default_batch: int,
    tenant_limits: Mapping[str, Any],
    processes: int = 1,
) -> Claim:
    """Store function: session slots, a batch, the delivery view of the account and the
    admission of the first messages (one per session), all in one transaction.

    Every transaction costs a commit (an fsync on PostgreSQL); doing in one what would take
    four keeps the path from "queued" to "on the wire" short. Without a session slot nothing
    is claimed: every slot of the account is held elsewhere and claimed messages would wait.

    ``processes``: the sender processes expected to share the work. The first claim of a
    drain takes only this process's share of the account's sessions; later claims of the
    same drain take whatever is still free. The first sender to wake would otherwise take
    every session of every account and the others would find them all busy: the whole load
    on one process (one core, one GIL) while the rest idle.
    """
    account = accounts.get_for_delivery(tx, tenant_id, account_id)
    if account is None:
        return Claim(None, [], [])
    lease_until = now + lease_seconds
    limit = max_concurrent_of(account)
    new_slots: list[int] = []
    if held_slots == 0:
        slot = sessions.acquire(tx, tenant_id, account_id, owner, limit, now, lease_until)
        if slot is None:
            return Claim(account, [], [], busy=True)
        new_slots.append(slot)
    batch = int(account.get("batch_size") or default_batch)
    failed: list[dict[str, Any]] = []
    rows = queue.claim_batch(tx, tenant_id, account_id, owner, batch, now, lease_seconds, failed)
    if not rows:
        for slot in new_slots:
            sessions.release(tx, slot)
        return Claim(account, [], [], lease_failures=failed)
    wanted = min(limit, len(rows))
    if held_slots == 0 and processes > 1:
        wanted = min(wanted, max(1, math.ceil(limit / processes)))
    while held_slots + len(new_slots) < wanted:
        slot = sessions.acquire(tx, tenant_id, account_id, owner, limit, now, lease_until)
        if slot is None:
            break
        new_slots.append(slot)
    instance = meta.get_instance(tx)
    bounce = instance.get("bounce_return_path") if instance.get("bounce_enabled") else None
    # Every session is free at the start of a batch: admit that many at once (reference §8.2 order).
    # Without any limit admission can never block, and its slot time only matters to a
    # limit set later: then the whole batch is admitted here, saving a commit per message.
    first = min(len(rows), held_slots + len(new_slots), limit)
    if not _windows(account, tenant_limits):
        first = len(rows)
    admissions = admit_tx(
        tx,
        rows=rows[:first],
        account=account,
        tenant_limits=tenant_limits,
        owner=owner,
        now=now,
    )
    return Claim(account, rows, new_slots, bounce, admissions=admissions, lease_failures=failed)


@dataclasses.dataclass(slots=True)
class Admission:
    """Rate-limiter verdict for one message: a slot, or the deferral/rejection already recorded."""

    slot_id: int | None
    completion: Completion | None = None
    held: bool = True


def admit_tx(
    tx: Any,
    *,
    rows: Sequence[Mapping[str, Any]],
    account: Mapping[str, Any],
    tenant_limits: Mapping[str, Any],
    owner: str,
    now: float,
) -> list[Admission]:
    """Store function: reserve rate-limit slots for ``rows`` in order (reference §8.2, §9).

    A blocked message is deferred to the whole second at which every blocking window has room
    (``deferred`` event, reason ``rate_limit``, no retry counted) or, when an account window
    with ``limit_behavior: reject`` blocks, failed with ``rate_limit_exceeded``. Both are
    recorded here, fenced by the lease, in the same transaction as the reservations.
    """
    if not rows:
        return []
    windows = _windows(account, tenant_limits)
    if not windows:
        # Nothing to count, nothing to lock: one statement stamps the whole group's slots.
        first = rows[0]
        slot_ids = ratelimit.reserve_unlimited(
            tx, str(first["tenant_id"]), str(first["account_id"]), [r["pk"] for r in rows], now
        )
        return [Admission(slot_id) for slot_id in slot_ids]
    behavior = str(account.get("limit_behavior") or "defer")
    out: list[Admission] = []
    for row in rows:
        pk = int(row["pk"])
        verdict = ratelimit.reserve(
            tx, row["tenant_id"], row["account_id"], pk, now, windows, limit_behavior=behavior
        )
        if verdict.granted:
            out.append(Admission(verdict.slot_id))
            continue
        attempt = int(row.get("retry_count") or 0) + 1
        if verdict.reject:
            item = Completion(
                row, "error", now, text=RATE_REJECTED, attempt=attempt, rate_limited=True
            )
            held = leases.complete_error(tx, pk, owner, now, error=RATE_REJECTED)
        else:
            # A whole second (core.ratelimit.whole_second), decided with the verdict.
            until = float(verdict.free_at if verdict.free_at is not None else whole_second(now + 1))
            item = Completion(
                row,
                "deferred",
                now,
                text=RATE_LIMITED,
                deferred_ts=until,
                attempt=attempt,
                rate_limited=True,
            )
            failed: list[dict[str, Any]] = []
            held = leases.complete_deferred(
                tx,
                pk,
                owner,
                now,
                deferred_ts=until,
                reason=RATE_LIMITED,
                count_retry=False,
                failures=failed,
            )
            if failed:  # the account was deleted meanwhile: the message failed instead
                item = failed_instead(item)
        out.append(Admission(None, item, held))
    return out


def release_tx(
    tx: Any,
    *,
    owner: str,
    pks: Sequence[int],
    slots: Sequence[int],
    rate_slots: Sequence[int] = (),
    now: float,
) -> list[dict[str, Any]]:
    """Store function: hand back claimed-but-not-started messages (with the rate-limit slots
    they were admitted with) and session slots; the messages that failed instead (their
    account was deleted meanwhile), with their tenant's name, for the metrics."""
    for slot in slots:
        sessions.release(tx, slot)
    for rate_slot in rate_slots:
        ratelimit.release(tx, rate_slot)
    failed: list[dict[str, Any]] = []
    if pks:
        leases.release(tx, owner, pks, now, failures=failed)
    return gauges.with_tenant_names(tx, failed)


def renew_tx(
    tx: Any, *, owner: str, pks: Sequence[int], slots: Sequence[int], lease_until: float
) -> int:
    """Store function: extend the leases of unfinished messages and the held session slots."""
    for slot in slots:
        sessions.renew(tx, slot, owner, lease_until)
    return leases.renew_leases(tx, owner, pks, lease_until)
