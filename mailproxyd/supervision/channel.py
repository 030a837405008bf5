"""Newline-delimited JSON over a trio stream: the link between the supervisor and a worker.

Both ends use the same class. Sends are serialised with a lock so that two tasks never interleave
half-lines; ``receive`` returns ``None`` at end of stream, which is how a worker notices that its
supervisor is gone (even after SIGKILL the kernel closes the supervisor's end of the socket pair).
"""

from __future__ import annotations

import json
import socket
from typing import Any

import trio

# Settings handed over on reload are a few kilobytes; anything far bigger is a bug on the other
# side, and refusing it keeps a confused peer from making us buffer without bound.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

Message = dict[str, Any]


class ChannelClosed(Exception):
    """The other end of the link is gone."""


class Channel:
    """A JSON-lines message channel over a byte stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._buf = bytearray()
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

    async def send(self, message: Message) -> None:
        """Send one message; raise ``ChannelClosed`` if the peer has gone away."""
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        async with self._send_lock:
            if self._closed:
                raise ChannelClosed
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._closed = True
                raise ChannelClosed from exc

    async def receive(self) -> Message | None:
        """The next message, or ``None`` at end of stream. Undecodable lines are skipped."""
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    return message
                continue
            if len(self._buf) > MAX_MESSAGE_BYTES:
                self._closed = True
                return None
            try:
                chunk = await self._stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                chunk = b""
            if not chunk:
                self._closed = True
                return None
            self._buf += chunk

    async def aclose(self) -> None:
        self._closed = True
        await self._stream.aclose()
