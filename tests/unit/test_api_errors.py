"""The one error translation of the API: every refusal a service raises gets its reference
answer there, the 503s with the ``Retry-After`` they ask for (reference §4.4)."""

from __future__ import annotations

import logging

import pytest

from mailproxyd.api import errors
from mailproxyd.errors import DatabaseUnavailable
from mailproxyd.services import ingest

LOG = logging.getLogger("tests.api_errors")


def test_ingest_over_capacity_is_a_503_unavailable_with_its_own_retry_after() -> None:
    err = errors.translate(ingest.Overloaded("over capacity: 300 messages waiting"), LOG)
    assert (err.status, err.code) == (503, "unavailable")
    assert err.body() == {
        "ok": False,
        "error": "unavailable",
        "detail": "over capacity: 300 messages waiting",
    }
    assert err.headers() == {"Retry-After": str(ingest.RETRY_AFTER_SECONDS)} == {"Retry-After": "1"}


def test_an_outage_asks_for_the_usual_wait(caplog: pytest.LogCaptureFixture) -> None:
    err = errors.translate(DatabaseUnavailable("connection refused"), LOG)
    assert (err.status, err.code) == (503, "unavailable")
    assert err.headers() == {"Retry-After": "5"}
    assert errors.ApiError(503, "unavailable", "x", retry_after=2).headers() == {"Retry-After": "2"}


def test_only_a_503_carries_retry_after() -> None:
    assert errors.ApiError(429, "x", "y", retry_after=3).headers() == {}
    assert errors.translate(ValueError("boom"), LOG).headers() == {}
