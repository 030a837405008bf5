"""The control-socket server (reference §17): a trio UNIX stream listener.

The socket is created with mode 0600 (bound under a 0077 umask, so there is no window in which
another user could connect) and every connection's peer uid is checked with ``SO_PEERCRED``:
only the node's own uid and root are served, anyone else is disconnected without an answer.
Requests on one connection are answered in order; a malformed line gets an error answer and the
connection stays usable.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from mailproxyd.control import protocol
from mailproxyd.errors import MailProxyError
from mailproxyd.services.admin import ACTOR

#: Serves one well-formed request, given as its typed call; returns the ``result`` object.
Handler = Callable[[protocol.ControlCall], Awaitable[dict[str, Any]]]

_log = logging.getLogger("mailproxyd.control")


class SocketInUse(Exception):
    """Another live process already listens on the control socket path."""


def peer_uid(sock: trio.socket.SocketType) -> int:
    """The uid of the process at the other end of a connected UNIX socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def prepare_directory(path: str) -> None:
    """Create the socket's directory (0700) if needed; refuse one owned by someone else."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.stat(directory)
    if info.st_uid != os.getuid():
        raise PermissionError(f"{directory} is not owned by the running user")


def _remove_stale(path: str) -> None:
    """Remove a socket file left by a crashed node; refuse if a node still answers on it."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketInUse(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        raise
    else:
        raise SocketInUse(f"control socket {path} is in use by another process")
    finally:
        probe.close()


async def bind_control_socket(path: str) -> trio.socket.SocketType:
    """Bind and listen on ``path`` with mode 0600; the caller owns the returned socket."""
    prepare_directory(path)
    _remove_stale(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        await sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(64)
    return sock


async def serve_control(
    sock: trio.socket.SocketType,
    handler: Handler,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on a bound socket forever, answering with ``handler``."""
    allowed = {0, os.getuid()}
    listener = trio.SocketListener(sock)
    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            stream = await listener.accept()
            nursery.start_soon(_serve_connection, stream, handler, allowed)


async def _serve_connection(stream: trio.SocketStream, handler: Handler, allowed: set[int]) -> None:
    # One misbehaving connection must never take the listener (and the node) down with it.
    try:
        await _serve_connection_inner(stream, handler, allowed)
    except Exception:
        _log.exception("control socket: connection failed")


async def _serve_connection_inner(
    stream: trio.SocketStream, handler: Handler, allowed: set[int]
) -> None:
    async with stream:
        try:
            uid = peer_uid(stream.socket)
        except OSError:
            return
        if uid not in allowed:
            _log.warning("control socket: refused a connection from uid %s", uid)
            return
        ACTOR.set(f"control socket uid {uid}")
        buffer = protocol.LineBuffer()
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            for line in buffer.feed(data):
                answer = await _answer(line, handler)
                try:
                    await stream.send_all(answer)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return


async def _answer(line: bytes | None, handler: Handler) -> bytes:
    if line is None:
        return protocol.encode_error(None, protocol.INVALID_REQUEST, "line longer than 1 MB")
    try:
        request = protocol.parse_request(line)
    except protocol.ProtocolError as exc:
        return protocol.encode_error(exc.request_id, exc.code, exc.message)
    try:
        result = await handler(request.call)
    except Exception as exc:
        code, message = protocol.error_from_exception(exc)
        if not isinstance(exc, MailProxyError | protocol.ProtocolError):
            _log.exception("control method %s failed", request.method)
        return protocol.encode_error(request.id, code, message)
    return protocol.encode_result(request.id, result)
