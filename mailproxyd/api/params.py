"""Reading a request: query parameters, the JSON body, and ``tenant_id``/``batch_code``.

Rules of reference §4.1: bodies are JSON objects whatever their ``Content-Type``;
query booleans accept ``true false 1 0 yes no``; a parameter given both in the query
string and in the body must agree (422 otherwise). Every problem is raised as an
:class:`~mailproxyd.api.errors.ApiError` or ``ValidationFailed``, never answered here.
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart import has_websocket_context, request, websocket

from mailproxyd.api.errors import invalid_json
from mailproxyd.core.limits import (
    DEPTH_PROBLEM,
    is_int_between,
    json_too_deep,
    range_text,
)
from mailproxyd.core.limits import MAX_INT as MAX_INT  # re-exported for the routes
from mailproxyd.errors import ValidationFailed

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

_decoder = msgspec.json.Decoder()


def current() -> Any:
    """The request or, for the ``/events`` upgrade, the WebSocket: both have headers/args."""
    return websocket if has_websocket_context() else request


def decode_object(raw: bytes, *, optional: bool) -> dict[str, Any]:
    """Decode ``raw`` as a JSON object; an absent/``null`` body is ``{}`` when ``optional``."""
    if optional and not raw.strip():
        return {}
    try:
        value = _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise invalid_json() from None
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise invalid_json()
    # One nesting limit for every body, before anything walks it (reference §4.4): every later walk
    # over client data is bounded by it.
    if json_too_deep(raw):
        raise invalid_json(f"Request body is {DEPTH_PROBLEM}")
    if b"\\u0000" in raw:
        path = nul_path(value)
        if path is not None:
            raise ValidationFailed([(path, NUL_PROBLEM)])
    return value


NUL_PROBLEM = "must not contain NUL characters"


def nul_path(value: Any, prefix: str = "") -> str | None:
    """The dotted path of the first string (or key) holding U+0000, else ``None``.

    No text column of either backend can hold NUL (PostgreSQL refuses it), so such input
    is a field error, never a database failure.
    """
    if isinstance(value, str):
        return (prefix or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{prefix}.{key}" if prefix else str(key)
            if "\x00" in str(key):
                return here
            found = nul_path(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_path(item, f"{prefix}[{index}]" if prefix else f"[{index}]")
            if found is not None:
                return found
    return None


def check_nul_free(path_params: dict[str, str]) -> None:
    """Refuse NUL in path parameters and query values (see :func:`nul_path`)."""
    for name, value in path_params.items():
        if "\x00" in value:
            raise ValidationFailed([(name, NUL_PROBLEM)])
    for name, value in current().args.items(multi=True):
        if "\x00" in value or "\x00" in name:
            raise ValidationFailed([(name.replace("\x00", ""), NUL_PROBLEM)])


async def read_body(*, optional: bool = False) -> dict[str, Any]:
    """The request body as a dict (413 is raised by Quart's capped body reader)."""
    raw: bytes = await request.get_data(True, False, False)
    return decode_object(raw, optional=optional)


async def read_body_raw(*, optional: bool = False) -> tuple[bytes, dict[str, Any]]:
    """The raw body bytes and the decoded object."""
    raw: bytes = await request.get_data(True, False, False)
    return raw, decode_object(raw, optional=optional)


def query_str(name: str) -> str | None:
    return current().args.get(name)


def query_bool(name: str, default: bool = False) -> bool:
    raw = current().args.get(name)
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValidationFailed([(name, "must be a boolean (true, false, 1, 0, yes, no)")])


def query_int(
    name: str, default: int | None, *, minimum: int = 0, maximum: int = MAX_INT
) -> int | None:
    """An integer query parameter within ``[minimum, maximum]`` (0 to 2^53 − 1 unless the
    route gives a range, reference §4.4); anything else is a 422 naming it."""
    raw = current().args.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    # A bound on the digits first: int() of a huge string is slow, and such a value is out
    # of range anyway.
    value: int | None = None
    if len(text) <= 20:
        try:
            value = int(text)
        except ValueError:
            value = None
    if value is None or not is_int_between(value, minimum, maximum):
        raise ValidationFailed([(name, range_text(minimum, maximum))])
    return value


def merged_param(name: str, body: dict[str, Any] | None) -> str | None:
    """``name`` from the query string or the body; both present and different is a 422.

    An empty string counts as absent, as it does inside add-messages envelopes (reference §6.1).
    """
    values = {v for v in current().args.getlist(name) if v}
    if len(values) > 1:
        raise ValidationFailed([(name, "query values differ")])
    from_query = values.pop() if values else None
    from_body = None if body is None else body.get(name)
    if from_body == "":
        from_body = None
    if from_body is not None and not isinstance(from_body, str):
        raise ValidationFailed([(name, "must be a string")])
    if from_query is not None and from_body is not None and from_query != from_body:
        raise ValidationFailed([(name, "query and body values differ")])
    return from_query if from_query is not None else from_body


def body_int(
    body: dict[str, Any], name: str, *, minimum: int = 0, maximum: int = MAX_INT
) -> int | None:
    """An optional integer body field within ``[minimum, maximum]``; 422 naming it otherwise."""
    value = body.get(name)
    if value is None:
        return None
    if not is_int_between(value, minimum, maximum):
        raise ValidationFailed([(name, range_text(minimum, maximum))])
    return int(value)
