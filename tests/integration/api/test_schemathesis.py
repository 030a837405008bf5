"""Property-based run of schemathesis against the live ``/openapi.json`` (issue 4).

Every operation of the document is exercised with generated requests (with the admin
token and with a tenant key; tenants and accounts exist, so some paths hit real rows): no answer may be a 5xx, and
every answer must conform to the document (status documented, content type, body schema).
Bounded: a few examples per operation, on each backend.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.apiclient import RESPONSES
from tests.integration.api.conftest import World

EXAMPLES_PER_OPERATION = {"admin": 8, "tenant key": 4}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("caller", ["admin", "tenant key"])
def test_schemathesis_conformance(world: World, caller: str) -> None:
    url = world.server.url
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    token = world.server.admin_token if caller == "admin" else world.a_key
    headers = {"X-API-Token": token}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=EXAMPLES_PER_OPERATION[caller],
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def exercise(case: schemathesis.Case) -> None:
            response = case.call(base_url=url, headers=headers, timeout=30)
            RESPONSES.append((f"{case.method} {case.formatted_path}", response.status_code,
                              response.content or b""))  # fmt: skip
            case.validate_response(response, checks=CHECKS)

        try:
            exercise()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
