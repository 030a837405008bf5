"""A blocking control-socket client (reference §17), for the CLI.

The CLI is synchronous, so this is a plain ``socket`` client: connect, send one request line,
read one answer line. ``ControlUnavailable`` means nobody answers at that path (the node is not
running: exit code 3 for commands that need it); ``ControlError`` is an error answer.
"""

from __future__ import annotations

import itertools
import json
import socket
from typing import Any

from mailproxyd.control import protocol
from mailproxyd.errors import MailProxyError

_ids = itertools.count(1)
ANSWER_LIMIT_BYTES = 256 * 1024 * 1024


class ControlUnavailable(MailProxyError):
    """the instance is not running"""


class ControlError(MailProxyError):
    """The node answered with an error object; ``code`` is the reference §17 code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ControlClient:
    """One connection to a node's control socket; usable for many requests."""

    def __init__(self, path: str, *, timeout: float = 10.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise ControlUnavailable() from exc
        # Answers carry no 1 MB bound of their own; this only stops a runaway peer.
        self._lines = protocol.LineBuffer(limit=ANSWER_LIMIT_BYTES)
        self._ready: list[bytes | None] = []

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and return its ``result``; raise ``ControlError`` on an error answer."""
        request_id = next(_ids)
        try:
            self._sock.sendall(protocol.encode_request(request_id, method, params))
            answer = self._read_line()
        except TimeoutError as exc:
            raise MailProxyError("the node did not answer in time") from exc
        except OSError as exc:
            raise ControlUnavailable() from exc
        obj = json.loads(answer)
        if "error" in obj:
            err = obj["error"]
            raise ControlError(int(err.get("code", protocol.INTERNAL_ERROR)), str(err["message"]))
        result = obj.get("result")
        return dict(result) if isinstance(result, dict) else {}

    def _read_line(self) -> bytes:
        while not self._ready:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("control connection closed")
            self._ready.extend(self._lines.feed(chunk))
        line = self._ready.pop(0)
        if line is None:
            raise MailProxyError("the node's answer is too long")
        return line

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def call(
    path: str, method: str, params: dict[str, Any] | None = None, *, timeout: float = 10.0
) -> dict[str, Any]:
    """Connect, run one method, disconnect."""
    with ControlClient(path, timeout=timeout) as client:
        return client.call(method, params)
