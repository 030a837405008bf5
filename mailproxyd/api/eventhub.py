"""One shared poller of the events table per api worker, fanning frames out to ``/events``.

Every stream used to poll the database on its own, twice a second; with many streams that is
many queries for the same rows. Here one task (a trio system task, started with the first
stream and ending with the last) tails the events table and hands each frame to the streams
that want it (reference §5.9: a tenant key sees its own tenant only, the admin token all or one). A node
holds at most :data:`MAX_STREAMS` streams (one api worker per node, so this is per node).

Each stream has a bounded queue: a stream whose client does not keep up is closed instead of
buffering without end.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from mailproxyd.errors import DatabaseUnavailable

#: Most open event streams per node (reference §5.9); above it the upgrade gets 503.
MAX_STREAMS: Final = 1000
#: How often the shared poller looks for new events.
POLL_SECONDS: Final = 0.5
#: Most events read per poll.
BATCH: Final = 500
#: Frames a stream may have waiting; a client that falls further behind is disconnected.
QUEUE_FRAMES: Final = 2 * BATCH

#: ``(after_id, limit) -> [(event_id, tenant_id, frame)]``, newest last.
Reader = Callable[[int, int], Awaitable[list[tuple[int, str, dict[str, Any]]]]]


class TooManyStreams(Exception):
    """Too many event streams"""


@dataclasses.dataclass(eq=False)
class Stream:
    """One subscriber: its tenant filter, the id it starts after, and its frame queue."""

    tenant_id: str | None
    start_after: int
    send: trio.MemorySendChannel[dict[str, Any]]
    receive: trio.MemoryReceiveChannel[dict[str, Any]]
    overflowed: bool = False


class EventHub:
    """The fan-out of one api worker."""

    def __init__(self, read: Reader, latest: Callable[[], Awaitable[int]], log: logging.Logger):
        self._read = read
        self._latest = latest
        self._log = log
        self._streams: set[Stream] = set()
        self._running = False
        self._last_id = 0

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    async def subscribe(self, tenant_id: str | None) -> Stream:
        """A new live stream (no replay): frames of events recorded from now on."""
        if len(self._streams) >= MAX_STREAMS:
            raise TooManyStreams()
        # The newest event now, also when the poller runs already: its last id may be up to a
        # poll behind, and the events recorded since are older than this stream.
        start = await self._latest()
        if len(self._streams) >= MAX_STREAMS:  # others may have come in meanwhile
            raise TooManyStreams()
        send, receive = trio.open_memory_channel[dict[str, Any]](QUEUE_FRAMES)
        stream = Stream(tenant_id, start, send, receive)
        self._streams.add(stream)
        if not self._running:
            self._running = True
            self._last_id = start
            trio.lowlevel.spawn_system_task(self._poll, name="events-poller")
        return stream

    def unsubscribe(self, stream: Stream) -> None:
        self._streams.discard(stream)
        stream.send.close()

    async def _poll(self) -> None:
        try:
            while self._streams:
                try:
                    rows = await self._read(self._last_id, BATCH)
                except DatabaseUnavailable:
                    rows = []  # an outage is expected to pass: streams stay, resume later
                for event_id, tenant_id, frame in rows:
                    self._fan_out(event_id, tenant_id, frame)
                    self._last_id = max(self._last_id, event_id)
                if len(rows) < BATCH:
                    await trio.sleep(POLL_SECONDS)
        except Exception:
            self._log.exception("the event stream poller failed")
            for stream in list(self._streams):
                self.unsubscribe(stream)
        finally:
            self._running = False

    def _fan_out(self, event_id: int, tenant_id: str, frame: dict[str, Any]) -> None:
        for stream in list(self._streams):
            if event_id <= stream.start_after:
                continue
            if stream.tenant_id is not None and stream.tenant_id != tenant_id:
                continue
            try:
                stream.send.send_nowait(frame)
            except trio.WouldBlock:
                stream.overflowed = True
                self.unsubscribe(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._streams.discard(stream)


_hubs: weakref.WeakKeyDictionary[Any, EventHub] = weakref.WeakKeyDictionary()


def hub_for(ctx: Any, make: Callable[[], EventHub]) -> EventHub:
    """The hub of this api worker context (made on first use)."""
    hub = _hubs.get(ctx)
    if hub is None:
        hub = _hubs[ctx] = make()
    return hub
