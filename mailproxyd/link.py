"""The link between the supervisor and a worker process: what both ends import.

A worker is started as ``python -m mailproxyd.workers.<kind> --index N`` with

* ``MAIL_PROXY_WORKER_SETTINGS`` (:data:`SETTINGS_ENV`): the supervisor's resolved settings
  without their secrets (the full settings, secrets included, come in the :class:`Init` message),
* ``MAIL_PROXY_WORKER_FD`` (:data:`FD_ENV`): its end of a UNIX socket pair carrying the messages
  below, one JSON object per line (``core.framing``), both ways (docs/internals.md, "Worker ↔
  supervisor channel"). The first message from the supervisor is :class:`Init`: the instance key
  travels over the link, never in the environment, where ``/proc/<pid>/environ`` would keep it
  readable.

Each message is a msgspec Struct tagged by its ``type`` member; :data:`LinkMessage` is their
union. Both ends use :class:`Channel`. Sends are serialised with a lock so that two tasks never
interleave half-lines; ``receive`` returns ``None`` at end of stream, which is how a worker notices
that its supervisor is gone (even after SIGKILL the kernel closes the supervisor's end).
"""

from __future__ import annotations

import socket
from typing import Any, Final

import msgspec
import trio

from mailproxyd.core.framing import LineBuffer, encode_line

SETTINGS_ENV: Final = "MAIL_PROXY_WORKER_SETTINGS"
FD_ENV: Final = "MAIL_PROXY_WORKER_FD"

#: A worker sends a heartbeat this often; the supervisor kills one silent for the timeout.
HEARTBEAT_SECONDS: Final = 5.0
HEARTBEAT_TIMEOUT_SECONDS: Final = 30.0

#: Exit status a worker uses for "I can never work with this configuration" (port in use, ...):
#: the supervisor does not restart it but gives up starting the node (exit code 1, reference §18.4).
EXIT_FATAL: Final = 3

#: The API gets this long for requests in progress at shutdown (reference §18.3 step 1): the
#: supervisor's stop grace for the api worker, and hypercorn's graceful timeout inside it.
API_GRACE_SECONDS: Final = 10.0

# Settings handed over on reload are a few kilobytes; anything far bigger is a bug on the other
# side, and refusing it keeps a confused peer from making us buffer without bound.
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024


class _Message(msgspec.Struct, tag_field="type"):
    pass


# ---------------------------------------------------------------- supervisor → worker


class Init(_Message, tag="init"):
    """The first message: the instance key (unpadded urlsafe base64) and the full settings."""

    key: str
    settings: str | None = None


class RunCycle(_Message, tag="run_cycle"):
    """Test mode: run one cycle step now (reference §8.7)."""


class Reload(_Message, tag="reload"):
    """New settings (``Settings.to_json``) after a reload (reference §3.4)."""

    settings: str


class Stop(_Message, tag="stop"):
    """Wind down within ``grace`` seconds (reference §18.3)."""

    grace: float


class ReplyError(msgspec.Struct):
    code: int
    message: str


class Reply(_Message, tag="reply"):
    """The answer to a :class:`Call`: ``result`` or ``error`` (a reference §17 code)."""

    id: int
    result: dict[str, Any] | None = None
    error: ReplyError | None = None


# ---------------------------------------------------------------- worker → supervisor


class Ready(_Message, tag="ready"):
    """The worker really serves."""


class Fatal(_Message, tag="fatal"):
    """The worker can never work with this configuration; it exits with ``EXIT_FATAL``."""

    message: str


class Heartbeat(_Message, tag="heartbeat"):
    pass


class CycleDone(_Message, tag="cycle_done"):
    """The worker finished its test-mode cycle step (reference §8.7)."""


class Call(_Message, tag="call"):
    """Run a control method (reference §17) in the supervisor; answered by a :class:`Reply`."""

    id: int
    method: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)


# ---------------------------------------------------------------- both ways


class Wake(_Message, tag="wake"):
    """A wake-up: from a worker, for ``target`` workers of every node; to a worker, for it."""

    reason: str = "wake"
    target: str = "all"  # sender, reporter or all
    tenant_id: str | None = None


LinkMessage = (
    Init | RunCycle | Reload | Stop | Reply | Ready | Fatal | Heartbeat | CycleDone | Call | Wake
)

_decoder = msgspec.json.Decoder(LinkMessage)


def decode(line: bytes) -> LinkMessage | None:
    """The message of one line; ``None`` for a line that is not one."""
    try:
        return _decoder.decode(line)
    except msgspec.DecodeError:
        return None


class ChannelClosed(Exception):
    """The other end of the link is gone."""


class Channel:
    """A message channel over a byte stream: :data:`LinkMessage` values, one per line."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._lines = LineBuffer(MAX_MESSAGE_BYTES)
        self._ready: list[bytes | None] = []
        self._send_lock = trio.Lock()
        self._closed = False

    @classmethod
    def from_socket(cls, sock: socket.socket) -> Channel:
        """Wrap a connected stdlib socket (e.g. one end of ``socket.socketpair()``)."""
        sock.setblocking(False)
        return cls(trio.SocketStream(trio.socket.from_stdlib_socket(sock)))

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, message: LinkMessage) -> None:
        """Send one message; raise ``ChannelClosed`` if the peer has gone away."""
        data = encode_line(message)
        async with self._send_lock:
            if self._closed:
                raise ChannelClosed
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._closed = True
                raise ChannelClosed from exc

    async def receive(self) -> LinkMessage | None:
        """The next message, or ``None`` at end of stream. Undecodable lines are skipped;
        a line above ``MAX_MESSAGE_BYTES`` ends the link."""
        while True:
            while self._ready:
                line = self._ready.pop(0)
                if line is None:
                    self._closed = True
                    return None
                message = decode(line)
                if message is not None:
                    return message
            try:
                chunk = await self._stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                chunk = b""
            if not chunk:
                self._closed = True
                return None
            self._ready.extend(self._lines.feed(chunk))

    async def aclose(self) -> None:
        self._closed = True
        await self._stream.aclose()
