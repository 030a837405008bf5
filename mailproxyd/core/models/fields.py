"""Field tables: one description of each request field, for validation and for OpenAPI.

A :class:`Field` says what a request field holds — its JSON type, bounds, choices, pattern,
length — in one place. The validators of :mod:`~mailproxyd.core.models` check the simple
kinds through :func:`check`, and ``mailproxyd.api.schemas`` turns the same tables into the
msgspec models from which ``/openapi.json`` is generated. A rule changed here changes both.

Rules that are not a property of one value (``use_tls`` against ``tls_mode``, a bearer method
needs a token, address parsing) stay in the validators; the table still describes the shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailproxyd.core.ids import IDENTIFIER_PROBLEM, is_identifier
from mailproxyd.core.payload_fields import FieldChecker

__all__ = ["Field", "check", "names", "table"]

#: Kinds a :class:`Field` may have. The first group is checked by :func:`check`; ``object``,
#: ``array``, ``union`` and ``any`` are described only (their validator is custom code).
KINDS = frozenset(
    {
        "identifier",  # reference §0 identifier
        "host",  # host name or IP address
        "http_url",
        "path",  # starts with /
        "text",  # a string without line breaks, at most max_length characters
        "string",  # any string (min_length 1: non-empty)
        "integer",
        "number",
        "boolean",
        "choice",  # one of enum
        "object",
        "array",
        "union",
        "any",
    }
)


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a request object.

    ``required``: must be present in a full definition (``POST``); ``patch``: may appear in a
    partial update (``PUT``), where every field is optional and ``null`` means "back to the
    default". ``fields`` is the shape of an ``object``, ``items`` the element of an ``array``,
    ``variants`` the alternatives of a ``union``.
    """

    name: str
    kind: str
    required: bool = False
    patch: bool = True
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    fields: tuple[Field, ...] | None = None
    items: Field | None = None
    variants: tuple[Field, ...] | None = None
    description: str = ""
    #: ``object`` without ``fields``: the type of each value (``headers``).
    values: Field | None = None
    #: ``object`` without ``fields``: the rule of each key (``headers``).
    keys: Field | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown field kind {self.kind!r}")


def table(fields: Sequence[Field]) -> dict[str, Field]:
    """The fields by name."""
    return {field.name: field for field in fields}


def names(fields: Sequence[Field], *, patch: bool = False) -> frozenset[str]:
    """The accepted keys (with ``patch``: those a partial update may carry)."""
    return frozenset(field.name for field in fields if field.patch or not patch)


def check(f: FieldChecker, field: Field, value: Any) -> Any:
    """``value`` (not ``None``) checked against ``field``; problems are recorded in ``f``."""
    key, kind = field.name, field.kind
    if kind == "identifier":
        if not is_identifier(value):
            f.fail(key, IDENTIFIER_PROBLEM)
            return None
        return value
    if kind == "host":
        return f.host(key, value)
    if kind == "http_url":
        return f.http_url(key, value)
    if kind == "path":
        return f.path(key, value)
    if kind == "text":
        return f.text(key, value, field.max_length)
    if kind == "string":
        if type(value) is not str or (field.min_length and len(value) < field.min_length):
            f.fail(key, "must be a non-empty string" if field.min_length else "must be a string")
            return None
        return value
    if kind == "integer":
        return f.int_between(key, value, int(field.minimum or 0), _int_or_none(field.maximum))
    if kind == "boolean":
        return f.boolean(key, value)
    if kind == "choice":
        assert field.enum is not None
        return f.choice(key, value, field.enum)
    raise AssertionError(f"{key}: kind {kind} is checked by its validator")  # pragma: no cover


def _int_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)
