"""The control-socket wire protocol (reference §17), as pure functions.

One JSON object per line (``core.framing``), UTF-8, at most 1 MB per line. The methods and their
parameters are one table of msgspec Structs (:data:`METHODS`, :data:`ControlCall`).
``parse_request`` turns a raw line into a ``Request`` or a ``ProtocolError`` that already carries
the answer to send; ``encode_result`` and ``encode_error`` build the answer lines. Nothing here
touches a socket, so every rule is unit-tested.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from mailproxyd.core import framing
from mailproxyd.core.framing import encode_line
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


# ---------------------------------------------------------------- the methods: one table


class _Method(msgspec.Struct, tag_field="method", kw_only=True):
    """A control method and its parameters; the tag is the method's name on the wire."""


class Status(_Method, tag="status"):
    pass


class Stats(_Method, tag="stats"):
    tenant_id: str | None = None


class RunNow(_Method, tag="run_now"):
    tenant_id: str | None = None


class Suspend(_Method, tag="suspend"):
    tenant_id: str | None = None
    batch_code: str | None = None


class Activate(_Method, tag="activate"):
    tenant_id: str | None = None
    batch_code: str | None = None


class Reload(_Method, tag="reload"):
    pass


class Stop(_Method, tag="stop"):
    grace_seconds: float | None = None


class Workers(_Method, tag="workers"):
    pass


#: Every control method, as a typed value.
ControlCall = Status | Stats | RunNow | Suspend | Activate | Reload | Stop | Workers

#: The one method table: name → its Struct.
METHODS: Final[Mapping[str, type[ControlCall]]] = {
    str(cls.__struct_config__.tag): cls for cls in typing.get_args(ControlCall)
}


def method_name(call: ControlCall) -> str:
    return str(call.__struct_config__.tag)


def _json_types(annotation: Any) -> tuple[type, ...]:
    """The JSON types a parameter of this annotation accepts (``None`` is always allowed)."""
    members = typing.get_args(annotation) or (annotation,)
    if float in members:
        return (int, float)
    return tuple(t for t in members if t is not type(None))


# Which parameters each method accepts and their JSON type; anything else is -32602.
_PARAMS: Final[Mapping[str, Mapping[str, tuple[type, ...]]]] = {
    name: {f.name: _json_types(f.type) for f in msgspec.structs.fields(cls)}
    for name, cls in METHODS.items()
}


RequestId = str | int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """A well-formed request: ``params`` has been checked against the method's parameter list;
    ``call`` is the same request as a typed value."""

    id: str | int
    method: str
    params: dict[str, Any]
    call: ControlCall


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
    params = obj.get("params", {})
    if params is None:
        params = {}
    call = make_call(method, params, usable_id)
    return Request(id=usable_id, method=method, params=params, call=call)


def make_call(method: str, params: Any, request_id: RequestId = None) -> ControlCall:
    """The typed call of ``method`` with ``params``, or the ``ProtocolError`` to answer with.

    Used for control-socket requests and for the calls workers make over their link alike.
    """
    cls = METHODS.get(method)
    if cls is None:
        raise ProtocolError(METHOD_NOT_FOUND, f"unknown method: {method}", request_id)
    if not isinstance(params, dict):
        raise ProtocolError(INVALID_PARAMS, "params must be an object", request_id)
    _check_params(method, params, request_id)
    return cls(**params)


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
    try:
        return encode_line(obj)
    except UnicodeEncodeError:
        # A lone surrogate (JSON allows "\\udfff", UTF-8 has no such character) in an echoed
        # id or name: the same answer with every non-ASCII character escaped.
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode() + b"\n"


class LineBuffer(framing.LineBuffer):
    """The control socket's lines (``core.framing``): at most ``MAX_LINE_BYTES`` each."""

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        super().__init__(limit)
