"""The ingest writer of the API process: add-messages requests committed together.

Every request used to be one transaction with a commit of its own, and with SQLite's
``synchronous = FULL`` (kept: an answered 200 must survive a power cut) the fsync per request
capped ingest at about 1,100 msg/s in batches of 100. Here one writer task per process takes
the requests waiting, runs each in a savepoint of one transaction in one worker thread
(``store.grouped``), commits once and answers them all: a 200 still means "committed", and a
request still succeeds or fails alone (reference §4.5).

The writer is also where the API knows how much ingest work is waiting, so it is where the
capacity limit lives: above ``GMP_MAX_PENDING_MESSAGES`` messages or ``GMP_MAX_PENDING_MB`` of
request bodies waiting or being written, a request is refused with ``Overloaded`` (503 with
``Retry-After``) before anything of it is applied, instead of queueing without bound.
"""

from __future__ import annotations

import contextvars
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from mailproxyd.errors import MailProxyError
from mailproxyd.store.grouped import run_grouped

#: Messages per group transaction. A request is never split, so a larger one goes alone. A
#: group holds the SQLite write lock while it is validated and written (about 0.1 ms per
#: message), so groups stay short enough for the senders' writes to interleave.
GROUP_MAX_MESSAGES = 2000
#: Seconds a client refused for capacity is asked to wait: the queue drains within about that.
RETRY_AFTER_SECONDS = 1
MIB = 1024 * 1024


class Overloaded(MailProxyError):
    """Too many messages are waiting to be stored; try again later."""


@dataclass(eq=False)
class _Request:
    fn: Callable[[Any], Any]
    # The request's context variables (who is acting, for the log), for a call made in the
    # writer's thread.
    context: contextvars.Context
    messages: int
    size: int
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None

    def call(self, tx: Any) -> Any:
        return self.context.run(self.fn, tx)


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much ingest work may wait: messages and request-body bytes."""

    messages: int
    size: int

    @classmethod
    def of(cls, settings: Any) -> Bounds:
        return cls(int(settings.max_pending_messages), int(settings.max_pending_mb) * MIB)


class IngestWriter:
    """One writer task per trio run and database: ``submit`` queues a store function and
    returns its result once the group transaction holding it has committed."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self._queue: deque[_Request] = deque()
        self._arrived = trio.Event()
        #: Messages and body bytes of the requests waiting or being written.
        self.pending_messages = 0
        self.pending_bytes = 0
        #: Group transactions written so far (tests, the bench).
        self.groups_written = 0
        self.token = trio.lowlevel.current_trio_token()
        # A system task: it lives as long as the process's trio run and needs no nursery
        # from whoever asks first (the API app, a test's app); it never raises.
        trio.lowlevel.spawn_system_task(self._serve, name="mailproxyd.ingest.writer")

    def check(self, bounds: Bounds, messages: int = 1, size: int = 1) -> None:
        """Raise ``Overloaded`` when a request of this size would pass ``bounds``.

        An idle writer takes any request (also one larger than the bounds); the defaults ask
        whether there is room for anything at all, before a body is read.
        """
        if self.pending_messages == 0 and self.pending_bytes == 0:
            return
        if (
            self.pending_messages + messages > bounds.messages
            or self.pending_bytes + size > bounds.size
        ):
            raise Overloaded(
                f"over capacity: {self.pending_messages} messages waiting to be stored"
            )

    async def submit(
        self, fn: Callable[[Any], Any], *, messages: int, size: int, bounds: Bounds
    ) -> Any:
        """``fn(tx)`` in the next group transaction; its result (or exception) after the commit.

        Raises ``Overloaded`` (nothing applied) when the request does not fit in ``bounds``.
        A caller cancelled while waiting stops waiting; its request is still written.
        """
        self.check(bounds, messages, size)
        request = _Request(fn, contextvars.copy_context(), messages, size)
        self._queue.append(request)
        self.pending_messages += messages
        self.pending_bytes += size
        self._arrived.set()
        await request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    async def _serve(self) -> None:
        while True:
            if not self._queue:
                self._arrived = trio.Event()
                await self._arrived.wait()
                # One turn of the scheduler, so that requests woken together join the first
                # group too; while a group is being written the next one fills up by itself.
                # (A 2 ms wait here cost a client posting one request after the other about
                # 3 ms per request: 11.3 → 8.6 ms for 100 messages on SQLite.)
                await trio.lowlevel.checkpoint()
            await self._write(self._next_group())

    def _next_group(self) -> list[_Request]:
        group = [self._queue.popleft()]
        total = group[0].messages
        while self._queue and total + self._queue[0].messages <= GROUP_MAX_MESSAGES:
            request = self._queue.popleft()
            total += request.messages
            group.append(request)
        return group

    async def _write(self, group: list[_Request]) -> None:
        calls = [request.call for request in group]
        try:
            outcomes = await trio.to_thread.run_sync(
                run_grouped, self._db.db, calls, limiter=self._db.limiter
            )
        except Exception as exc:  # a defect: answered as such, and the writer keeps serving
            outcomes = [(None, exc)] * len(group)
        self.groups_written += 1
        for request, (value, error) in zip(group, outcomes, strict=True):
            request.result, request.error = value, error
            self.pending_messages -= request.messages
            self.pending_bytes -= request.size
            request.done.set()


_WRITERS: weakref.WeakKeyDictionary[Any, IngestWriter] = weakref.WeakKeyDictionary()


def writer_for(db: Any) -> IngestWriter:
    """The ingest writer of this ``AsyncDatabase`` in the current trio run (made on first use)."""
    writer = _WRITERS.get(db)
    if writer is None or writer.token is not trio.lowlevel.current_trio_token():
        writer = _WRITERS[db] = IngestWriter(db)
    return writer
