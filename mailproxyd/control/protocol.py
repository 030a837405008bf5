"""The control-socket wire protocol (reference §17), as pure functions.

One JSON object per line, UTF-8, at most 1 MB per line. ``parse_request`` turns a raw line into a
``Request`` or a ``ProtocolError`` that already carries the answer to send; ``encode_result`` and
``encode_error`` build the answer lines. Nothing here touches a socket, so every rule is unit-tested.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final

from mailproxyd.core.limits import DEPTH_PROBLEM, could_be_deep, too_deep
from mailproxyd.errors import (
    Conflict,
    MailProxyError,
    NotFound,
    ValidationFailed,
)

MAX_LINE_BYTES: Final = 1024 * 1024

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
NOT_FOUND: Final = -32001
CONFLICT: Final = -32002

METHODS: Final = frozenset(
    {"status", "stats", "run_now", "suspend", "activate", "reload", "stop", "workers"}
)

# Which parameters each method accepts and their JSON type; anything else is -32602.
_PARAMS: Final[Mapping[str, Mapping[str, tuple[type, ...]]]] = {
    "status": {},
    "stats": {"tenant_id": (str,)},
    "run_now": {"tenant_id": (str,)},
    "suspend": {"tenant_id": (str,), "batch_code": (str,)},
    "activate": {"tenant_id": (str,), "batch_code": (str,)},
    "reload": {},
    "stop": {"grace_seconds": (int, float)},
    "workers": {},
}

RequestId = str | int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """A well-formed request: ``params`` has been checked against the method's parameter list."""

    id: str | int
    method: str
    params: dict[str, Any]


class ProtocolError(Exception):
    """A request that cannot be served; ``code``/``message`` form the error answer."""

    def __init__(self, code: int, message: str, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


def parse_request(line: bytes | str) -> Request:
    """Parse one line into a ``Request``; raise ``ProtocolError`` with the reference §17 code otherwise."""
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raise ProtocolError(INVALID_REQUEST, "line longer than 1 MB")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(PARSE_ERROR, "line is not valid UTF-8") from None
    else:
        text = line
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # deep nesting must not escape as a crash
        raise ProtocolError(PARSE_ERROR, "line is not valid JSON") from None
    # The same nesting limit as HTTP bodies (reference §4.4): later walks over params stay bounded.
    if could_be_deep(text) and too_deep(obj):
        raise ProtocolError(PARSE_ERROR, f"line is {DEPTH_PROBLEM}")
    if not isinstance(obj, dict):
        raise ProtocolError(INVALID_REQUEST, "request must be a JSON object")
    raw_id = obj.get("id")
    # bool is an int subclass in Python but not an id in JSON's sense.
    usable_id: RequestId = (
        raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    )
    if usable_id is None:
        raise ProtocolError(INVALID_REQUEST, "id must be a string or an integer")
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        raise ProtocolError(INVALID_REQUEST, "method must be a non-empty string", usable_id)
    unknown_keys = set(obj) - {"id", "method", "params"}
    if unknown_keys:
        key = sorted(unknown_keys)[0]
        raise ProtocolError(INVALID_REQUEST, f"unexpected member: {key}", usable_id)
    if method not in METHODS:
        raise ProtocolError(METHOD_NOT_FOUND, f"unknown method: {method}", usable_id)
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError(INVALID_PARAMS, "params must be an object", usable_id)
    _check_params(method, params, usable_id)
    return Request(id=usable_id, method=method, params=params)


def _check_params(method: str, params: dict[str, Any], request_id: RequestId) -> None:
    allowed = _PARAMS[method]
    for name, value in params.items():
        if name not in allowed:
            raise ProtocolError(INVALID_PARAMS, f"unknown parameter: {name}", request_id)
        types = allowed[name]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            kind = "a string" if types == (str,) else "a number"
            raise ProtocolError(INVALID_PARAMS, f"{name}: must be {kind}", request_id)
    grace = params.get("grace_seconds")
    if grace is not None and not 0 <= grace <= 600:
        raise ProtocolError(INVALID_PARAMS, "grace_seconds: must be between 0 and 600", request_id)
    if params.get("batch_code") is not None and params.get("tenant_id") is None:
        raise ProtocolError(INVALID_PARAMS, "batch_code: requires tenant_id", request_id)


def error_from_exception(exc: BaseException) -> tuple[int, str]:
    """Map a domain exception raised by a handler to the reference §17 error code and message."""
    if isinstance(exc, ProtocolError):
        return exc.code, exc.message
    if isinstance(exc, NotFound):
        return NOT_FOUND, exc.message
    if isinstance(exc, Conflict):
        return CONFLICT, exc.message
    if isinstance(exc, ValidationFailed):
        return INVALID_PARAMS, exc.message
    if isinstance(exc, MailProxyError):
        return INTERNAL_ERROR, exc.message
    return INTERNAL_ERROR, "internal error"


def encode_result(request_id: RequestId, result: Mapping[str, Any]) -> bytes:
    """The answer line for a successful request."""
    return _line({"id": request_id, "result": dict(result)})


def encode_error(request_id: RequestId, code: int, message: str) -> bytes:
    """The answer line for a failed request (``id`` is ``null`` when the request had none)."""
    return _line({"id": request_id, "error": {"code": code, "message": message}})


def encode_request(
    request_id: str | int, method: str, params: Mapping[str, Any] | None = None
) -> bytes:
    """A request line, as the client sends it."""
    obj: dict[str, Any] = {"id": request_id, "method": method}
    if params:
        obj["params"] = dict(params)
    return _line(obj)


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


class LineBuffer:
    """Splits a byte stream into lines, refusing any line above ``MAX_LINE_BYTES``.

    ``feed`` returns complete lines (without the newline); an over-long line is returned as the
    sentinel ``None`` once and its remainder is skipped up to the next newline, so a client that
    sent garbage still gets an answer and can go on using the connection.
    """

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self._limit = limit
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes | None]:
        out: list[bytes | None] = []
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self._limit and not self._skipping:
                    out.append(None)
                    self._skipping = True
                if self._skipping:
                    self._buf.clear()
                return out
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > self._limit:
                out.append(None)
                continue
            line = line.rstrip(b"\r")
            if line.strip():
                out.append(line)
