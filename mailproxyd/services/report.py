"""The report cycle: pushing every tenant's unacknowledged events to its sync URL (reference §13).

Three entry points over one per-tenant routine (:func:`serve_tenant`):

* :func:`run_report_cycle` — one full cycle (test mode's step 2 of reference §8.7): every tenant that is
  due is served until nothing more is due, then the retention sweep runs;
* :func:`reporter_loop` — normal mode: a scheduler that starts one task per tenant as soon as it
  becomes due (a wake-up for new events, a heartbeat, the end of a back-off or DND), so one slow
  tenant never delays another;
* :func:`flush_before_exit` — shutdown step 3 of reference §18.3: one last POST per tenant with events.

Serving a tenant means: take its reporter lock in the database (so two reporter processes, on
one node or several, never push one tenant at the same time), then call it while reference §13.5 says so
— follow-ups at once while events remain after an acknowledgement or ``queued > 0`` asks for
more — and persist the sync state after every call. The decisions themselves are the pure
functions of :mod:`mailproxyd.core.report`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from mailproxyd.core import report as core_report
from mailproxyd.core.redact import escape_control
from mailproxyd.core.report import ReportState
from mailproxyd.drivers.http import Answer
from mailproxyd.errors import DatabaseUnavailable
from mailproxyd.services.context import Doorbell, ServiceContext
from mailproxyd.store import Tx
from mailproxyd.store import events as store_events
from mailproxyd.store import report as store_report
from mailproxyd.store import retention as store_retention
from mailproxyd.store import tenants as store_tenants

log = logging.getLogger("mailproxyd.report")

# Safety net under the wake-ups: how often the loop looks at the database on its own, so events
# recorded by another node (or missed wake-ups) are still reported within a second.
POLL_INTERVAL = 0.5
RETENTION_INTERVAL = 60.0
# A tenant whose lock another reporter holds is looked at again this soon.
LOCKED_RETRY = 0.5
# Wake-ups arrive per recorded group of events; looking at the database at most this often
# lets a busy sender's events gather into large POSTs (a POST's cost is mostly per call, not
# per item) while every event is still reported well within the second of reference §13.5.
MIN_POLL_GAP = 0.2


@dataclass
class CycleStats:
    """What one cycle (or one tenant serving) did."""

    calls: int = 0
    items_sent: int = 0
    items_acknowledged: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    tenants_served: int = 0
    tenants_locked: int = 0
    retention: dict[str, int] | None = None

    def add(self, other: CycleStats) -> None:
        self.calls += other.calls
        self.items_sent += other.items_sent
        self.items_acknowledged += other.items_acknowledged
        self.outcomes.update(other.outcomes)
        self.tenants_served += other.tenants_served
        self.tenants_locked += other.tenants_locked


@dataclass(frozen=True)
class TenantServing:
    """How one serving of a tenant ended."""

    stats: CycleStats
    locked: bool  # another reporter holds the tenant
    next_check: float | None  # when it could be due again without a new event or run-now


# --- store adapters: the only place that knows the store's function names ---------------------


def _state_from_row(row: Mapping[str, Any]) -> ReportState:
    """The pure state from a store row (``store.report.get_state`` or ``tenants_to_consider``).

    ``queued_wanted`` comes from the database like the rest, so a ``queued > 0`` answer held
    back by DND, or followed by a reporter restart, still leads to its follow-up call.
    """
    return ReportState(
        last_sync_ts=row.get("last_sync_ts"),
        dnd_until=row.get("dnd_until"),
        consecutive_failures=int(row.get("consecutive_failures") or 0),
        backoff_until=row.get("backoff_until"),
        queued_calls=int(row.get("queued_calls") or 0),
        queued_wanted=bool(row.get("queued_wanted")),
        heartbeat_due=bool(row.get("heartbeat_due")),
        last_error=row.get("last_error"),
    )


def _state_columns(state: ReportState) -> dict[str, Any]:
    return {
        "last_sync_ts": state.last_sync_ts,
        "dnd_until": state.dnd_until,
        "consecutive_failures": state.consecutive_failures,
        "backoff_until": state.backoff_until,
        "queued_calls": state.queued_calls,
        "queued_wanted": state.queued_wanted,
        "heartbeat_due": state.heartbeat_due,
        "last_error": state.last_error,
    }


def _record_call(
    tx: Tx,
    tenant_id: str,
    owner: str,
    event_ids: list[int],
    state: ReportState,
    *,
    now: float,
    lock_until: float,
) -> bool:
    """Acknowledge the POST's events and store the new state in one transaction.

    Returns False when the lock was lost meanwhile (expired and taken by another reporter):
    the acknowledgement still stands — the tenant did receive those items — but this reporter
    stops serving the tenant.
    """
    if event_ids:
        store_events.acknowledge(tx, event_ids, now)
    store_report.save_state(tx, tenant_id, last_attempt_ts=now, **_state_columns(state))
    return store_report.try_lock(tx, tenant_id, owner, until=lock_until, now=now)


Snapshot = tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]


def _record_and_load(
    tx: Tx,
    tenant_id: str,
    owner: str,
    event_ids: list[int],
    state: ReportState,
    *,
    now: float,
    lock_until: float,
    limit: int | None,
) -> tuple[bool, Snapshot | None]:
    """``_record_call`` and, while the lock holds and ``limit`` is given, the next ``_load``:
    one transaction (one commit, one trip to a thread) per POST instead of two."""
    held = _record_call(tx, tenant_id, owner, event_ids, state, now=now, lock_until=lock_until)
    if not held or limit is None:
        return held, None
    return held, _load(tx, tenant_id, limit=limit)


def _lock_and_load(
    tx: Tx, tenant_id: str, owner: str, *, until: float, now: float, limit: int
) -> tuple[bool, Snapshot | None]:
    """Take the tenant's reporter lock and, when taken, ``_load`` in the same transaction."""
    if not store_report.try_lock(tx, tenant_id, owner, until=until, now=now):
        return False, None
    return True, _load(tx, tenant_id, limit=limit)


def _load(
    tx: Tx, tenant_id: str, *, limit: int
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]] | None:
    """The tenant (with plaintext ``client_auth``), its sync state row and oldest events."""
    tenant = store_tenants.get_for_sync(tx, tenant_id)
    if tenant is None:
        return None
    state = store_report.get_state(tx, tenant_id)
    rows = store_events.unreported(tx, tenant_id, limit)
    return tenant, state, rows


def _due_tenants(
    overview: Sequence[Mapping[str, Any]], ctx: ServiceContext, now: float
) -> tuple[list[str], dict[str, float]]:
    """Which tenants of the store's overview are due now, and when the others may become due."""
    due: list[str] = []
    later: dict[str, float] = {}
    for row in overview:
        if not row.get("client_base_url"):
            continue
        tenant_id = str(row["id"])
        state = _state_from_row(row)
        decision = core_report.decide(
            state,
            active=bool(row.get("active", True)),
            has_events=int(row.get("unreported_events") or 0) > 0,
            now=now,
            interval=ctx.settings.sync_interval,
        )
        if decision.call:
            due.append(tenant_id)
        elif decision.next_check is not None:
            later[tenant_id] = decision.next_check
    return due, later


async def _tenants_due(ctx: ServiceContext, now: float) -> tuple[list[str], dict[str, float]]:
    overview = await ctx.db.run(store_report.tenants_to_consider, now, write=False)
    return _due_tenants(overview, ctx, now)


# --- one tenant -------------------------------------------------------------------------------


def _log_call(tenant_id: str, url: str, items: int, answer: Answer) -> None:
    status = answer.status if answer.status is not None else "-"
    log.info(
        "sync tenant=%s url=%s items=%d status=%s ok=%s queued=%d duration_ms=%d",
        tenant_id,
        escape_control(url),
        items,
        status,
        "true" if answer.reply.acknowledged else "false",
        answer.reply.queued,
        round(answer.duration * 1000),
    )


async def serve_tenant(
    ctx: ServiceContext,
    tenant_id: str,
    *,
    now_fn: Callable[[], float] = time.time,
    max_calls: int | None = None,
    only_events: bool = False,
    stopping: trio.Event | None = None,
) -> TenantServing:
    """Call one tenant while reference §13.5 says it is due, under its reporter lock.

    ``max_calls`` bounds the number of POSTs (the shutdown flush makes one); ``only_events``
    restricts the reasons to unacknowledged events (no heartbeat, no queued follow-up); once
    ``stopping`` is set no new POST starts (the one in flight finishes).
    """
    settings = ctx.settings
    stats = CycleStats()
    lease = settings.sync_timeout + 30.0
    now = now_fn()
    locked, snapshot = await ctx.db.run(
        _lock_and_load,
        tenant_id,
        ctx.owner,
        until=now + lease,
        now=now,
        limit=settings.sync_batch_size,
    )
    if not locked:
        stats.tenants_locked = 1
        return TenantServing(stats, locked=True, next_check=now + LOCKED_RETRY)
    next_check: float | None = None
    try:
        while (max_calls is None or stats.calls < max_calls) and not (
            stopping is not None and stopping.is_set()
        ):
            if snapshot is None or not snapshot[0].get("client_base_url"):
                break  # deleted, or no longer has a sync URL
            tenant, state_row, rows = snapshot
            state = _state_from_row(state_row)
            now = now_fn()
            if only_events:
                due = bool(rows) and not state.in_backoff(now)
                decision = core_report.Decision(due, "events" if due else None)
            else:
                decision = core_report.decide(
                    state,
                    active=bool(tenant.get("active", True)),
                    has_events=bool(rows),
                    now=now,
                    interval=settings.sync_interval,
                )
            if not decision.call:
                next_check = decision.next_check
                break
            assert decision.reason is not None
            reply = (await _call(ctx, tenant, rows, stats, now_fn=now_fn)).reply
            now = now_fn()
            new_state = core_report.after_call(state, reply, reason=decision.reason, now=now)
            acked_ids = [int(r["event_id"]) for r in rows] if reply.acknowledged else []
            # The next snapshot is read with the acknowledgement when another call may follow.
            more = reply.acknowledged and (max_calls is None or stats.calls < max_calls)
            still_locked, snapshot = await ctx.db.run(
                _record_and_load,
                tenant_id,
                ctx.owner,
                acked_ids,
                new_state,
                now=now,
                lock_until=now + lease,
                limit=settings.sync_batch_size if more else None,
            )
            stats.items_acknowledged += len(acked_ids)
            if not still_locked:
                break
            if not reply.acknowledged:
                next_check = new_state.backoff_until
                break
    finally:
        with trio.CancelScope(shield=True):
            await ctx.db.run(store_report.unlock, tenant_id, ctx.owner)
    stats.tenants_served = 1 if stats.calls else 0
    return TenantServing(stats, locked=False, next_check=next_check)


async def _call(
    ctx: ServiceContext,
    tenant: Mapping[str, Any],
    rows: list[dict[str, Any]],
    stats: CycleStats,
    *,
    now_fn: Callable[[], float],
) -> Answer:
    """Build, sign and send one POST; count, log and observe it."""
    tenant_id = str(tenant["id"])
    url = core_report.sync_url(tenant["client_base_url"], tenant.get("client_sync_path"))
    body = core_report.encode_body([core_report.encode_item(r) for r in rows])
    headers = core_report.request_headers(tenant.get("client_auth"), body, now=now_fn())
    reporting = ctx.reporter()
    answer = await reporting.client.post_report(
        url,
        body,
        headers,
        ctx.settings.sync_timeout,
        trusted=not tenant.get(store_tenants.UNTRUSTED_URL_KEY),
        allow_private=bool(ctx.settings.allow_private_networks),
    )
    stats.calls += 1
    stats.items_sent += len(rows)
    stats.outcomes[answer.outcome] += 1
    if ctx.settings.log_delivery_activity:
        _log_call(tenant_id, url, len(rows), answer)
    for warning in answer.reply.warnings:
        log.warning("sync tenant=%s answered %s", tenant_id, escape_control(warning))
    if reporting.observe is not None:
        reporting.observe(tenant_id, answer.outcome, answer.duration)
    return answer


# --- a whole cycle ----------------------------------------------------------------------------


async def _sweep(ctx: ServiceContext, now: float) -> dict[str, int]:
    """The retention sweep (reference §13.7), in chunks so no transaction grows with the backlog."""
    settings = ctx.settings
    totals: Counter[str] = Counter()
    while True:
        counts = await ctx.db.run(
            store_retention.sweep,
            now,
            settings.delivery_report_retention_seconds,
            settings.command_log_retention_seconds,
        )
        totals.update(counts)
        if counts.get("messages", 0) < store_retention.SWEEP_CHUNK:
            break
    extras = ctx.reporting.extra_sweeps if ctx.reporting is not None else []
    for extra in extras:
        try:
            await extra(now)
        except Exception:
            log.exception("sweep %s failed", getattr(extra, "__name__", extra))
    return dict(totals)


async def run_report_cycle(
    ctx: ServiceContext,
    *,
    now_fn: Callable[[], float] = time.time,
    test_mode: bool = False,
    retention: bool = True,
) -> CycleStats:
    """Serve every tenant that is due, concurrently, until none is; then sweep retention.

    In test mode this is the reporter's whole share of a run-now cycle (reference §8.7 step 2). A tenant
    whose lock another reporter holds is left to that reporter.
    """
    del (
        test_mode
    )  # the same code path in both modes (reference §8.7); kept for the callers' clarity
    total = CycleStats()
    tenant_ids, _ = await _tenants_due(ctx, now_fn())
    limiter = trio.CapacityLimiter(ctx.settings.sync_concurrency)

    async def one(tenant_id: str) -> None:
        try:
            async with limiter:
                result = await serve_tenant(ctx, tenant_id, now_fn=now_fn)
        except Exception:  # one tenant's trouble (say, a database hiccup) must not stop the rest
            log.exception("report for tenant %s failed", tenant_id)
            return
        total.add(result.stats)

    async with trio.open_nursery() as nursery:
        for tenant_id in tenant_ids:
            nursery.start_soon(one, tenant_id)
    if retention:
        total.retention = await _sweep(ctx, now_fn())
    return total


async def flush_before_exit(
    ctx: ServiceContext, *, now_fn: Callable[[], float] = time.time
) -> CycleStats:
    """Shutdown step 3 (reference §18.3): one last POST per tenant with events and not in back-off.

    The caller bounds it with the remaining grace time (``trio.move_on_after``).
    """
    total = CycleStats()
    now = now_fn()
    overview = await ctx.db.run(store_report.tenants_to_consider, now, write=False)
    tenant_ids = [
        str(row["id"])
        for row in overview
        if row.get("client_base_url")
        and int(row.get("unreported_events") or 0) > 0
        and not _state_from_row(row).in_backoff(now)
    ]
    limiter = trio.CapacityLimiter(ctx.settings.sync_concurrency)

    async def one(tenant_id: str) -> None:
        try:
            async with limiter:
                result = await serve_tenant(
                    ctx, tenant_id, now_fn=now_fn, max_calls=1, only_events=True
                )
        except Exception:
            log.exception("final report for tenant %s failed", tenant_id)
            return
        total.add(result.stats)

    async with trio.open_nursery() as nursery:
        for tenant_id in tenant_ids:
            nursery.start_soon(one, tenant_id)
    return total


# --- normal mode ------------------------------------------------------------------------------


async def reporter_loop(
    ctx: ServiceContext,
    wake: Doorbell,
    *,
    now_fn: Callable[[], float] = time.time,
    poll_interval: float = POLL_INTERVAL,
    stopping: trio.Event | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Normal mode: serve each tenant in its own task whenever it becomes due.

    Per tenant at most one task at a time; ``GMP_SYNC_CONCURRENCY`` bounds how many POST at
    once. The loop itself only decides whom to start: it looks at the database when woken,
    every ``poll_interval`` seconds, and when a known next-check time arrives.

    Runs until cancelled, or until ``stopping`` is set: then it starts nothing new, lets the
    POSTs in flight finish (shutdown step 3, reference §18.3) and returns; the caller bounds that wait.
    """
    limiter = trio.CapacityLimiter(ctx.settings.sync_concurrency)
    running: set[str] = set()
    # Tenants not to start again before a time: held by another reporter, just found with
    # nothing to do, or failed. Without it a due-looking tenant would be retried in a tight loop.
    hold_until: dict[str, float] = {}
    # When each tenant's last serving ended (trio time). An overview read before that may show
    # events that serving has since reported: starting from it would find nothing to do and
    # hold the tenant while new events arrive. The serving's end rings the loop to look again.
    ended_at: dict[str, float] = {}
    sweeping = False
    last_sweep = -math.inf

    async def tenant_task(tenant_id: str) -> None:
        hold: float | None = None
        try:
            async with limiter:
                result = await serve_tenant(ctx, tenant_id, now_fn=now_fn, stopping=stopping)
            if result.locked:
                hold = now_fn() + LOCKED_RETRY
            elif result.stats.calls == 0:
                # Short: an event recorded now must still be reported within the second.
                hold = now_fn() + min(poll_interval, MIN_POLL_GAP)
        except Exception:  # as in run_report_cycle: the other tenants go on
            log.exception("report for tenant %s failed", tenant_id)
            hold = now_fn() + 1.0
        finally:
            running.discard(tenant_id)
            ended_at[tenant_id] = trio.current_time()
            if hold is not None:
                hold_until[tenant_id] = hold
            wake.ring()  # events may have arrived while it ran: look again at once

    async def sweep_task() -> None:
        nonlocal sweeping
        try:
            await _sweep(ctx, now_fn())
        except Exception:
            log.exception("retention sweep failed")
        finally:
            sweeping = False

    async def ring_on_stop(event: trio.Event) -> None:
        await event.wait()
        wake.ring()

    async with trio.open_nursery() as nursery:
        if stopping is not None:
            nursery.start_soon(ring_on_stop, stopping)
        task_status.started()
        while not (stopping is not None and stopping.is_set()):
            now, looked_at = now_fn(), trio.current_time()
            try:
                due, later = await _tenants_due(ctx, now)
            except DatabaseUnavailable as exc:
                # An outage is expected and retried: one line, not a traceback a second.
                log.warning("reporter cannot read the database, retrying: %s", exc.message)
                due, later = [], {}
            except Exception:
                log.exception("reporter cannot read the database")
                due, later = [], {}
            for tenant_id in [t for t, until in hold_until.items() if until <= now]:
                del hold_until[tenant_id]
            for tenant_id in due:
                if tenant_id in running or tenant_id in hold_until:
                    continue
                if ended_at.pop(tenant_id, -math.inf) >= looked_at:
                    continue  # the overview predates the end of its last serving
                running.add(tenant_id)
                nursery.start_soon(tenant_task, tenant_id)
            for tenant_id in [t for t, at in ended_at.items() if at < looked_at]:
                del ended_at[tenant_id]  # every later overview is read after it
            if now - last_sweep >= RETENTION_INTERVAL and not sweeping:
                last_sweep, sweeping = now, True
                nursery.start_soon(sweep_task)
            # Sleep until woken, the next poll, or the earliest time something becomes due.
            times = [t for tid, t in (*later.items(), *hold_until.items()) if tid not in running]
            wait_until = min([now + poll_interval, *times])
            await wake.wait(wait_until - now_fn())
            if not (stopping is not None and stopping.is_set()):
                await trio.sleep_until(looked_at + MIN_POLL_GAP)
        # Stopping: tenant tasks end after their POST in flight; nothing else should linger.
        while running:
            await wake.wait(math.inf)
        nursery.cancel_scope.cancel()
