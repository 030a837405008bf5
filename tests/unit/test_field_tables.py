"""The field tables are what the validators enforce (issue 22: one source for validation and OpenAPI).

For every bounded or enumerated field of the account, tenant and instance tables, a value
at the table's bound is accepted and one past it is refused naming the field; so the
bounds the OpenAPI document shows (generated from the same tables) are the validators'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mailproxyd.core.models import account, instance, tenant
from mailproxyd.core.models.fields import Field
from mailproxyd.errors import ValidationFailed

Validate = Callable[[dict[str, Any]], object]


def _account(body: dict[str, Any]) -> object:
    return account.validate_account({"id": "a", "host": "smtp.example.com", "port": 587, **body})


def _tenant(body: dict[str, Any]) -> object:
    return tenant.validate_tenant({"id": "t", **body}, installed=lambda _: True)


def _instance(body: dict[str, Any]) -> object:
    return instance.validate_instance_update(body)


CASES: list[tuple[str, tuple[Field, ...], Validate]] = [
    ("account", account.ACCOUNT_FIELDS, _account),
    ("tenant", tenant.TENANT_FIELDS, _tenant),
    ("instance", instance.INSTANCE_FIELDS, _instance),
]


def _refused(validate: Validate, body: dict[str, Any], field: str) -> bool:
    try:
        validate(body)
    except ValidationFailed as exc:
        return field in {name for name, _ in exc.errors}
    return False


def _rules(fields: tuple[Field, ...], prefix: str = "") -> list[tuple[str, Field]]:
    """``(path, field)`` of every field with a bound or choices, object fields included."""
    found: list[tuple[str, Field]] = []
    for field in fields:
        if field.kind == "object" and field.fields:
            found += _rules(field.fields, f"{prefix}{field.name}.")
        elif field.kind in ("choice", "integer") or (field.kind == "text" and field.max_length):
            found.append((prefix + field.name, field))
    return found


def _body(path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: _body(rest, value) if rest else value}


@pytest.mark.parametrize(("label", "fields", "validate"), CASES, ids=[c[0] for c in CASES])
def test_table_bounds_are_the_validators(
    label: str, fields: tuple[Field, ...], validate: Validate
) -> None:
    rules = _rules(fields)
    assert len(rules) >= 3, label
    for path, field in rules:
        if field.kind == "integer":
            assert field.minimum is not None
            low = int(field.minimum)
            validate(_body(path, low))
            assert _refused(validate, _body(path, low - 1), path), (label, path)
            if field.maximum is not None:
                high = int(field.maximum)
                validate(_body(path, high))
                assert _refused(validate, _body(path, high + 1), path), (label, path)
        elif field.kind == "choice":
            assert field.enum
            for choice in field.enum:
                try:
                    validate(_body(path, choice))
                except ValidationFailed as exc:  # a choice may need companions (bearer: token)
                    assert all(name != path for name, _ in exc.errors), (label, path, choice)
            assert _refused(validate, _body(path, "no-such-choice"), path), (label, path)
        else:
            assert field.max_length is not None
            validate(_body(path, "x" * field.max_length))
            assert _refused(validate, _body(path, "x" * (field.max_length + 1)), path)


def test_every_table_field_is_accepted_and_nothing_else() -> None:
    for _label, fields, validate in CASES:
        names = {f.name for f in fields}
        assert _refused(validate, {"not_a_field": 1}, "not_a_field")
        assert len(names) == len(fields)  # no field twice
