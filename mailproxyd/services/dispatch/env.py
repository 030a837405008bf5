"""What every part of one sender's dispatch cycle shares: ``DispatchEnv`` (reference §18.3).

Built from a ``ServiceContext`` (settings, database, supervisor link, logger, clock), it owns the
stop logic of the cycle — ``stopping()`` ends admission, ``until_stop`` interrupts waits for a
session, and each SMTP transaction runs in a ``send_scope`` cut off at the hard deadline — the
per-account kicks that wake lingering drains, and the writer (``Committer``/``Recorder``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from mailproxyd.drivers.smtp import SmtpPool
from mailproxyd.services.context import ServiceContext
from mailproxyd.services.dispatch import smtp as dispatch_smtp
from mailproxyd.services.dispatch.record import Committer, Completion, Recorder

if TYPE_CHECKING:
    from mailproxyd.settings import Settings

# In-flight transactions are cut off this long before the worker's stop deadline, leaving
# time to record their outcomes and release their messages (reference §18.3).
RECORD_MARGIN_SECONDS = 1.0
# Transactions a sender writes at the same time on PostgreSQL (SQLite: one, see Committer).
# Two, not more: with four, almost every completion found a free lane and was written alone
# (groups of 1-2), so a sender paid five statements per message; with two, completions queue
# behind a write and go set-based into the next one (drain bench: ~360 -> ~570 msg/s).
PG_WRITE_LANES = 2
# How long a write of completions waits for the other sessions' runs and the next claim to
# share its commit (``Committer._gather``): several commits per batch became about one.
RECORD_LINGER_SECONDS = 0.02


#: ``fetch(row, attachments)`` → the parts and the payload to build (the attachment service's
#: ``prepare``); raises ``AttachmentFailed``. Without one only ``base64`` attachments work.
FetchAttachments = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]]], Awaitable[Any]]


class DispatchEnv:
    """What every part of the dispatch cycle shares within one sender process.

    Built from a ``ServiceContext`` (settings, database, link, logger, clock). Owns the stop logic:
    ``stopping()`` ends admission, ``until_stop`` interrupts waits for a session, and every
    SMTP transaction runs in a ``send_scope`` that is cut off at the hard deadline.
    """

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        owner: str,
        pool: SmtpPool,
        now_fn: Callable[[], float],
        stop: trio.Event | None,
        hard_deadline: Callable[[], float] | None = None,
    ) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.owner = owner
        self.pool = pool
        self.now = now_fn
        self.log: logging.Logger = ctx.log
        self.rng = random.Random()
        self.fetch_attachments: FetchAttachments | None = None
        self._stop = stop
        self._hard_deadline = hard_deadline or (lambda: math.inf)
        self._stop_scopes: set[trio.CancelScope] = set()
        self._send_scopes: set[trio.CancelScope] = set()
        # Per account: an event a lingering drain waits on, and how often it was kicked.
        self._kicks: dict[tuple[str, str], trio.Event] = {}
        self.kick_counts: dict[tuple[str, str], int] = {}
        backend = self.db.db.backend
        self.committer = Committer(
            self.db,
            lanes=1 if backend == "sqlite" else PG_WRITE_LANES,
            linger=RECORD_LINGER_SECONDS,
        )
        self.recorder = Recorder(
            self.committer,
            owner,
            self.log,
            delivery_log=lambda: bool(self.settings().log_delivery_activity),
            on_events=self._wake_reporter,
            retry_for=float(self.settings().claim_lease_seconds),
        )

    # ------------------------------------------------------------------ settings and stop

    def settings(self) -> Settings:
        """The current settings (re-read each time: a reload replaces them in place)."""
        return self.ctx.settings

    def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def watch_stop(self) -> None:
        """Turn the stop event into cancelled waits and deadlines on running transactions."""
        if self._stop is None:
            await trio.sleep_forever()
            return
        await self._stop.wait()
        for scope in list(self._stop_scopes):
            scope.cancel()
        deadline = self._cutoff()
        for scope in list(self._send_scopes):
            scope.deadline = min(scope.deadline, deadline)
        self.kick()

    def _cutoff(self) -> float:
        hard = self._hard_deadline()
        if math.isinf(hard):
            return hard
        return max(trio.current_time(), hard - RECORD_MARGIN_SECONDS)

    async def until_stop(self, fn: Callable[[], Awaitable[Any]]) -> bool:
        """Await ``fn()`` unless the sender stops first; True when ``fn`` completed."""
        if self.stopping():
            return False
        with trio.CancelScope() as scope:
            self._stop_scopes.add(scope)
            try:
                await fn()
                return True
            finally:
                self._stop_scopes.discard(scope)
        return False

    @contextlib.contextmanager
    def send_scope(self) -> Iterator[trio.CancelScope]:
        """A scope for one SMTP transaction, cancelled at the shutdown cutoff."""
        scope = trio.CancelScope()
        if self.stopping():
            scope.deadline = self._cutoff()
        self._send_scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._send_scopes.discard(scope)

    # ------------------------------------------------------------------ wake-ups

    def kick(self, key: tuple[str, str] | None = None) -> None:
        """Tell the lingering drain of account ``key`` (every drain: None) it has work."""
        keys = list(self._kicks) if key is None else [key]
        for k in keys:
            self.kick_counts[k] = self.kick_counts.get(k, 0) + 1
            event = self._kicks.pop(k, None)
            if event is not None:
                event.set()

    async def kicked(self, key: tuple[str, str], seconds: float) -> bool:
        """Wait up to ``seconds`` for a kick of account ``key``; False on timeout or stop."""
        if self.stopping():
            return False
        event = self._kicks.setdefault(key, trio.Event())
        with trio.move_on_after(seconds):
            await event.wait()
        if self._kicks.get(key) is event:
            del self._kicks[key]
        return event.is_set() and not self.stopping()

    async def _wake_reporter(self) -> None:
        await self.ctx.link.wake("reporter", "event")

    # ------------------------------------------------------------------ recording

    async def record(self, completion: Completion) -> bool:
        return await self.recorder.record(completion)

    async def record_many(self, completions: Sequence[Completion]) -> list[bool]:
        return await self.recorder.record_many(completions)

    async def recorded(self, items: Sequence[Completion], held: Sequence[bool]) -> None:
        """Completions written by someone else's transaction: log them, wake the reporter."""
        for item, ok in zip(items, held, strict=True):
            self.recorder.after(item, ok)
        if any(held):
            await self.recorder.events_recorded()

    async def close_idle(self, tenant_id: str, account_id: str) -> None:
        """Close the account's idle pooled connections: its session slots are given back."""
        await dispatch_smtp.close_account(self.pool, tenant_id, account_id)
