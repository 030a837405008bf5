"""JSON responses: msgspec encoding, ``null`` keys omitted (reference §0).

HTTP bodies drop keys whose value is ``None`` at every depth, and end with a newline, so a
body printed by ``curl`` leaves the shell prompt on a line of its own. The few bodies the
reference exempts (the add-messages answers, whose rejection items keep ``"id": null``
and whose 400 ``detail`` keeps ``"error": null``) are encoded with ``strip=False``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Response

JSON_CONTENT_TYPE = "application/json; charset=utf-8"

_encoder = msgspec.json.Encoder()


def strip_nulls(value: Any) -> Any:
    """``value`` with every ``None``-valued dict key removed, recursively."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def json_body(body: Any, *, strip: bool = True) -> bytes:
    """The bytes of a JSON answer: ``body`` encoded, nulls dropped unless ``strip=False``."""
    return _encoder.encode(strip_nulls(body) if strip else body) + b"\n"


def json_response(body: Any, status: int = 200, *, strip: bool = True) -> Response:
    return Response(json_body(body, strip=strip), status=status, content_type=JSON_CONTENT_TYPE)
