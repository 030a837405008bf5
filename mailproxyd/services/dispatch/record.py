"""Recording delivery outcomes: fenced completions in grouped transactions (reference §8.3, §10).

Every attempt of the dispatch cycle ends in one ``Completion``: the message was sent, deferred
(a temporary failure with retries left, or a rate-limit deferral), failed, or handed back
without an event (released at shutdown before its transaction started). A ``Recorder`` writes
them through the store's fenced ``complete_*`` functions, so a sender that lost its lease cannot
overwrite another sender's result; the store answers False and the result is discarded with a
WARNING.

All writes of the sender go through one ``Committer`` per process, which puts the calls that
arrive while a transaction is being written into the next one (group commit): with a
transaction per message the database's commits, not SMTP, would set the pace, while a lone
call is still written at once, so latency does not suffer.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import trio

from mailproxyd.core.smtp_outcome import delivery_log_line
from mailproxyd.drivers import metrics
from mailproxyd.errors import DatabaseUnavailable
from mailproxyd.store import Tx, accounts, leases, ratelimit

Kind = Literal["sent", "deferred", "error", "release"]

# Operations written per transaction at most; bounds the time one write holds the locks.
MAX_GROUP = 200
# A reporter wake-up is a hint (the reporter also polls); never let it hold up recording.
WAKE_TIMEOUT = 1.0
# A result that cannot be written because the database is unreachable is written again every
# RECORD_RETRY_SECONDS, for up to the lease time: giving up at once left the message `sending`
# until its lease expired and then sent it a second time (an outage of a few seconds caused
# duplicates). Writing late is safe: the completion is fenced by the lease owner.
RECORD_RETRY_SECONDS = 0.5


@dataclasses.dataclass(slots=True)
class Completion:
    """The recorded result of one attempt of one claimed message.

    ``release_slot``: the rate-limit slot to give back (the attempt failed before the message
    data was transmitted, reference §9). ``attempt``/``duration_ms``/``rcpts`` only feed the delivery log
    and the metrics: ``duration_ms`` is None when no SMTP attempt was made; ``rate_limited``
    marks the deferral or rejection of the rate limiter (reference §9).
    """

    row: Mapping[str, Any]
    kind: Kind
    now: float
    text: str | None = None
    smtp_code: int | None = None
    refused_recipients: Mapping[str, Any] | None = None
    deferred_ts: float | None = None
    count_retry: bool = False
    outcome_uncertain: bool = False
    release_slot: int | None = None
    attempt: int = 1
    rcpts: int = 0
    duration_ms: int | None = None
    rate_limited: bool = False


def failed_instead(item: Completion) -> Completion:
    """``item`` as the store recorded it when the message failed with ``account deleted``
    instead (a deferral or a release after the account was deleted, reference §5.4)."""
    return dataclasses.replace(item, kind="error", text=accounts.ACCOUNT_DELETED, deferred_ts=None)


def _write_one(tx: Tx, item: Completion, owner: str) -> Completion | None:
    pk = int(item.row["pk"])
    failed: list[dict[str, Any]] = []
    held = _write_kind(tx, item, owner, pk, failed)
    if not held:
        return None
    return failed_instead(item) if failed else item


def _write_kind(
    tx: Tx, item: Completion, owner: str, pk: int, failed: list[dict[str, Any]]
) -> bool:
    if item.release_slot is not None:
        ratelimit.release(tx, item.release_slot)
    if item.kind == "sent":
        return leases.complete_sent(
            tx,
            pk,
            owner,
            item.now,
            smtp_code=item.smtp_code,
            refused_recipients=item.refused_recipients,
            outcome_uncertain=item.outcome_uncertain,
        )
    if item.kind == "deferred":
        assert item.deferred_ts is not None and item.text is not None
        return leases.complete_deferred(
            tx,
            pk,
            owner,
            item.now,
            deferred_ts=item.deferred_ts,
            reason=item.text,
            smtp_code=item.smtp_code,
            count_retry=item.count_retry,
            outcome_uncertain=item.outcome_uncertain,
            failures=failed,
        )
    if item.kind == "error":
        assert item.text is not None
        return leases.complete_error(
            tx,
            pk,
            owner,
            item.now,
            error=item.text,
            smtp_code=item.smtp_code,
            refused_recipients=item.refused_recipients,
            outcome_uncertain=item.outcome_uncertain,
        )
    result = leases.release(tx, owner, [pk], item.now, failures=failed)
    return bool(result.get("returned") or result.get("failed"))


def write_completion(tx: Tx, *, item: Completion, owner: str) -> Completion | None:
    """Store function: record one completion; what was recorded (``item``, or the error it
    became), or None when the lease no longer held."""
    return _write_one(tx, item, owner)


@dataclasses.dataclass(slots=True, eq=False)
class _Op:
    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    locking: bool = False
    done: trio.Event = dataclasses.field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


def _sent_completion(op: _Op) -> Completion | None:
    item = op.kwargs.get("item") if op.fn is write_completion else None
    return item if isinstance(item, Completion) and item.kind == "sent" else None


def write_sent_many(tx: Tx, *, items: Sequence[Completion], owner: str) -> list[bool]:
    """Store function: record many ``sent`` completions in a few set-based statements.

    The same effect as ``write_completion`` for each of them, in their order, fenced per row.
    """
    for item in items:
        if item.release_slot is not None:
            ratelimit.release(tx, item.release_slot)
    rows = [
        {
            "pk": int(item.row["pk"]),
            "now": item.now,
            "smtp_code": item.smtp_code,
            "refused_recipients": item.refused_recipients,
            "outcome_uncertain": item.outcome_uncertain,
        }
        for item in items
    ]
    return leases.complete_sent_many(tx, owner, rows, max(item.now for item in items))


def _run_group(tx: Tx, ops: Sequence[_Op]) -> list[Any]:
    """Every operation of ``ops`` in one transaction; their results in their order.

    The ``sent`` completions of the group (the bulk of a busy sender's writes) are written
    together by ``write_sent_many``: per message, a statement costs a round trip on PostgreSQL
    and the single writer's time on SQLite, so a few statements per group, not five per
    message, is what lets recording keep up with sending.
    """
    results: list[Any] = [None] * len(ops)
    sent: dict[str, list[int]] = {}
    for index, op in enumerate(ops):
        if _sent_completion(op) is not None:
            sent.setdefault(str(op.kwargs["owner"]), []).append(index)
            continue
        results[index] = op.fn(tx, **op.kwargs)
    for owner, indexes in sent.items():
        items = [_sent_completion(ops[index]) for index in indexes]
        held = write_sent_many(tx, items=[item for item in items if item is not None], owner=owner)
        for index, answer in zip(indexes, held, strict=True):
            results[index] = ops[index].kwargs["item"] if answer else None
    return results


class Committer:
    """Runs the sender's writes as store functions, several per transaction (group commit).

    Every claim, admission and completion of every account of the process goes through
    ``call``. While one transaction is being written, the calls that arrive queue up and go
    into the next one, in arrival order; a lone call is written at once. A commit is the
    expensive part of a write (an fsync on PostgreSQL), so under load the cost per message
    falls with the number of messages in flight, and an idle sender pays no extra latency.
    """

    def __init__(self, db: Any, lanes: int = 1, linger: float = 0.0) -> None:
        self._db = db
        self._queue: list[_Op] = []
        # Transactions written at the same time. SQLite serialises writers anyway, so one
        # lane is best there; PostgreSQL overlaps commits, and since a transaction holds at
        # most one locking operation, the lanes are what lets several accounts admit at once.
        self._lanes = max(1, lanes)
        self._writers = 0
        # How long a write of completions only may wait for more operations to share its
        # commit (see ``_gather``); 0: written at once.
        self._linger = max(0.0, linger)
        self._flush = trio.Event()

    async def call(self, fn: Callable[..., Any], /, *, locking: bool = False, **kwargs: Any) -> Any:
        """``fn(tx, **kwargs)`` in the next group transaction; its result (or exception).

        ``locking``: ``fn`` locks an account or tenant row (claims, rate-limit admission). A
        transaction holds at most one such operation: two of them, taken in different orders
        by two processes, would deadlock.
        """
        op = _Op(fn, kwargs, locking)
        self._queue.append(op)
        self._enqueued(locking)
        if self._writers < self._lanes:
            # The caller becomes a writer; later arrivals ride on a writer's next round.
            await self._drain()
        if not op.done.is_set():
            await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    async def call_many(
        self, fn: Callable[..., Any], calls: Sequence[dict[str, Any]]
    ) -> list[tuple[Any, BaseException | None]]:
        """``fn(tx, **kwargs)`` for each of ``calls`` (non-locking), queued together so they
        share the next group transaction; per call its result and its exception (or None)."""
        ops = [_Op(fn, kwargs) for kwargs in calls]
        self._queue.extend(ops)
        self._enqueued(False)
        if self._writers < self._lanes:
            await self._drain()
        for op in ops:
            if not op.done.is_set():
                await op.done.wait()
        return [(op.result, op.error) for op in ops]

    async def _drain(self) -> None:
        # Trio switches tasks only at checkpoints, so between a writer's last emptiness check
        # and leaving nobody can enqueue: no caller is ever stranded.
        self._writers += 1
        try:
            # Shielded: a write that reached the database must be reported to its callers, and
            # cancelling mid-write would only roll it back.
            with trio.CancelScope(shield=True):
                while self._queue:
                    await self._gather()
                    await self._write(self._next_group())
        finally:
            self._writers -= 1

    def _enqueued(self, locking: bool) -> None:
        if locking or len(self._queue) >= MAX_GROUP:
            self._flush.set()

    async def _gather(self) -> None:
        """Before writing completions only, wait up to ``linger`` for more operations.

        A busy account's sessions end their runs within moments of each other, and the next
        claim follows the last of them: waiting a little puts the runs' completions and that
        claim into one transaction. A commit costs far more than a row (on SQLite every commit
        writes and syncs each page it touched), so this is what makes recording cheap per
        message. A locking operation (a claim or an admission: a session waits for it) or a
        full group ends the wait at once.
        """
        if self._linger <= 0 or len(self._queue) >= MAX_GROUP:
            return
        if any(op.locking for op in self._queue):
            return
        if self._flush.is_set():
            self._flush = trio.Event()
        with trio.move_on_after(self._linger):
            await self._flush.wait()

    def _next_group(self) -> list[_Op]:
        """The next transaction's operations: queue order, at most one locking operation.

        Each caller waits for its own operation, so the queue never holds two operations of
        one caller and any reordering between callers is harmless.
        """
        group: list[_Op] = []
        rest: list[_Op] = []
        locked = False
        for op in self._queue:
            if len(group) >= MAX_GROUP or (op.locking and locked):
                rest.append(op)
                continue
            locked = locked or op.locking
            group.append(op)
        self._queue = rest
        return group

    async def _write(self, group: list[_Op]) -> None:
        try:
            results = await self._db.run(_run_group, group)
        except Exception:
            if len(group) == 1:
                group[0].error = sys.exc_info()[1]
                group[0].done.set()
                return
            # One bad operation must not fail its neighbours: retry them one by one.
            for op in group:
                await self._write([op])
            return
        for op, result in zip(group, results, strict=True):
            op.result = result
            op.done.set()


class Recorder:
    """Records completions through the ``Committer``, then logs them and wakes the reporter.

    ``record`` returns once its completion is committed, with whether the lease still held.
    """

    def __init__(
        self,
        committer: Committer,
        owner: str,
        log: logging.Logger,
        *,
        delivery_log: Callable[[], bool],
        on_events: Callable[[], Awaitable[None]],
        retry_for: float = 120.0,
    ) -> None:
        self._committer = committer
        self._retry_for = retry_for
        self._owner = owner
        self._log = log
        self._delivery_log = delivery_log
        self._on_events = on_events
        self._waking = False
        self._wake_again = False

    async def record(self, item: Completion) -> bool:
        recorded = await self._write(item)
        self.after(recorded or item, recorded is not None)
        if recorded is not None and recorded.kind != "release":
            await self.events_recorded()
        return recorded is not None

    async def _write(self, item: Completion) -> Completion | None:
        deadline = trio.current_time() + self._retry_for
        warned = False
        while True:
            try:
                recorded = await self._committer.call(
                    write_completion, item=item, owner=self._owner
                )
                return recorded if isinstance(recorded, Completion) else None
            except DatabaseUnavailable as exc:
                if trio.current_time() + RECORD_RETRY_SECONDS > deadline:
                    raise
                if not warned:
                    self._log.warning(
                        "cannot record the %s result of tenant=%s id=%s yet, retrying: %s",
                        item.kind,
                        item.row["tenant_id"],
                        item.row["id"],
                        exc.message,
                    )
                    warned = True
            await trio.sleep(RECORD_RETRY_SECONDS)

    async def record_many(self, items: Sequence[Completion]) -> list[bool]:
        """``record`` for several completions in one group transaction; the first failure
        is raised once every completion has been written or failed. A completion that met a
        database outage is written again on its own, as ``record`` does."""
        answers = await self._committer.call_many(
            write_completion, [{"item": item, "owner": self._owner} for item in items]
        )
        held: list[bool] = []
        evented = False
        first_error: BaseException | None = None
        for item, (result, error) in zip(items, answers, strict=True):
            if isinstance(error, DatabaseUnavailable):
                try:
                    result, error = await self._write(item), None
                except DatabaseUnavailable as exc:
                    error = exc
            recorded = result if error is None and isinstance(result, Completion) else None
            if error is None:
                self.after(recorded or item, recorded is not None)
            elif first_error is None:
                first_error = error
            held.append(recorded is not None)
            evented = evented or (recorded is not None and recorded.kind != "release")
        if evented:
            await self.events_recorded()
        if first_error is not None:
            raise first_error
        return held

    async def events_recorded(self) -> None:
        """Wake the reporter (reference §8.6); events recorded during a wake-up share the next one."""
        if self._waking:
            self._wake_again = True
            return
        self._waking = True
        try:
            while True:
                self._wake_again = False
                with trio.move_on_after(WAKE_TIMEOUT):
                    await self._on_events()
                if not self._wake_again:
                    break
        finally:
            self._waking = False

    def after(self, item: Completion, held: bool) -> None:
        """Count and log a recorded completion (reference §14, §18.6), or the WARNING of a discarded one.

        ``item`` is the completion as recorded: a deferral or release of a message whose
        account was deleted meanwhile comes as the error it became (``failed_instead``).

        The SMTP attempt's duration counts whatever became of its result; the outcome counts
        only when it was recorded (a discarded result is another sender's to count, reference §8.3).
        """
        row = item.row
        labels = metrics.AccountLabels.of(
            row["tenant_id"], row.get("tenant_name"), row.get("account_id")
        )
        if item.duration_ms is not None:
            metrics.delivery(labels, "attempt", smtp_seconds=item.duration_ms / 1000)
        if held and item.kind != "release":
            metrics.delivery(labels, item.kind, rate_limited=item.rate_limited)
        if not held:
            if item.kind != "release":
                self._log.warning(
                    "lease lost for tenant=%s id=%s; the %s result of this attempt is discarded",
                    row["tenant_id"],
                    row["id"],
                    item.kind,
                )
            return
        if item.kind == "release" or not self._delivery_log():
            return
        self._log.info("%s", delivery_line(item))


def delivery_line(item: Completion) -> str:
    """The reference §18.6 ``delivery …`` log line of a recorded attempt (``core.smtp_outcome``)."""
    row = item.row
    event = {"sent": "sent", "deferred": "deferred"}.get(item.kind, "failed")
    return delivery_log_line(
        event,
        tenant=str(row["tenant_id"]),
        message_id=str(row["id"]),
        account=row.get("account_id"),
        attempt=item.attempt,
        rcpts=item.rcpts if item.kind == "sent" else None,
        duration_ms=item.duration_ms if item.kind == "sent" else None,
        until=float(item.deferred_ts or 0) if item.kind == "deferred" else None,
        reason=None if item.kind == "sent" else item.text or "",
    )
