"""No secret ever leaves the API (reference §4.3 rule 4): a walk over every response of the suite.

Runs last (marker ``run_last``). Secrets are the values the tests registered with
``tests.apiclient.secret`` (SMTP and IMAP passwords, client_auth tokens, signing
secrets) and the admin token: none may appear in any response body. Tenant API keys are
shown once, at creation: each may appear only in the one response that issued it.
"""

from __future__ import annotations

import re

import pytest

from tests.apiclient import RESPONSES, SECRETS

_API_KEY = re.compile(rb'"api_key"\s*:\s*"([A-Za-z0-9_\-]{43})"')


@pytest.mark.run_last
def test_no_secret_in_any_response() -> None:
    if len(RESPONSES) < 100:
        pytest.skip("run with the rest of the API suite: there are no responses to walk")
    assert len(SECRETS) >= 5
    leaks = [
        (request, status, value)
        for request, status, body in RESPONSES
        for value in SECRETS
        if value and value.encode() in body
    ]
    assert not leaks, leaks[:5]
    issued: dict[bytes, int] = {}
    for _request, _status, body in RESPONSES:
        for key in _API_KEY.findall(body):
            issued[key] = issued.get(key, 0) + 1
    assert issued, "no tenant key was issued during the suite"
    for key, shown in issued.items():
        appearances = sum(1 for _r, _s, body in RESPONSES if key in body)
        assert appearances == shown == 1, f"tenant key shown {appearances} times"
