"""``/metrics`` of the api worker (reference §14): route templates, account series from the start,
database gauges, and messages failed by an account's deletion counted as errors."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from mailproxyd.api import metrics_text
from tests.apiclient import refused_upgrade
from tests.integration.api.conftest import World

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(world: World) -> Samples:
    r = world.anon.get("/metrics")
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _get(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def _labels(tenant_id: str, tenant_name: str, account_id: str) -> dict[str, str]:
    return {
        "tenant_id": tenant_id,
        "tenant_name": tenant_name,
        "account_id": account_id,
        "account_name": account_id,
    }


def _message(message_id: str, account_id: str) -> dict[str, object]:
    return {
        "id": message_id,
        "account_id": account_id,
        "from": "shop@acme.example",
        "to": ["ann@example.org"],
        "subject": "Hi",
        "body": "Hello",
    }


def test_gauges_series_and_errors_of_a_deleted_account(world: World) -> None:
    admin = world.admin
    r = admin.post(
        "/account",
        json={"tenant_id": "acme", "id": "doomed", "host": "smtp.example.com", "port": 587},
    )
    assert r.status_code == 200, r.text
    messages = [_message(f"d{i}", "doomed") for i in range(3)] + [_message("keep", "smtp1")]
    r = admin.post("/commands/add-messages", json={"tenant_id": "acme", "messages": messages})
    assert r.status_code == 200 and r.json()["queued"] == 4, r.text
    doomed = _labels("acme", "Acme Corp", "doomed")
    before = _samples(world)
    # Every account's series exist (at their count so far), the gauges come from the database.
    assert _get(before, "gmp_sent_total", **_labels("beta", "Beta Corp", "main")) is not None
    assert _get(before, "gmp_pending_messages") == 4
    assert _get(before, "gmp_queue_age_seconds") is not None
    assert _get(before, "gmp_unreported_events", tenant_id="acme") is not None
    errors_before = _get(before, "gmp_errors_total", **doomed) or 0.0

    r = admin.delete("/account/doomed", params={"tenant_id": "acme"})
    assert r.status_code == 200, r.text
    after = _samples(world)
    assert _get(after, "gmp_errors_total", **doomed) == errors_before + 3


def test_requests_are_counted_by_route_template(world: World) -> None:
    def count(found: Samples, route: str, status: str) -> float:
        return _get(found, "gmp_http_requests_total", route=route, status=status) or 0.0

    before = _samples(world)
    assert world.admin.get("/tenant/acme").status_code == 200
    assert world.admin.get("/tenant/nobody").status_code == 404
    assert world.admin.get("/no/such/thing").status_code == 404
    after = _samples(world)
    assert count(after, "/tenant/{id}", "200") == count(before, "/tenant/{id}", "200") + 1
    assert count(after, "/tenant/{id}", "404") == count(before, "/tenant/{id}", "404") + 1
    assert count(after, "unmatched", "404") == count(before, "unmatched", "404") + 1
    # The previous scrape counts too, under its own template.
    assert count(after, "/metrics", "200") >= 1
    assert not [k for k in after if k[0] == "gmp_http_requests_total" and "acme" in str(k)]


def test_a_renamed_tenant_gets_series_under_its_new_name(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_text, "GAUGE_TTL", 0.0)
    old = _labels("beta", "Beta Corp", "main")
    assert _get(_samples(world), "gmp_sent_total", **old) is not None
    r = world.admin.put("/tenant/beta", json={"name": "Beta Renamed"})
    assert r.status_code == 200, r.text
    found = _samples(world)
    # New events carry the name of their time; what was counted under the old name stays.
    assert _get(found, "gmp_sent_total", **_labels("beta", "Beta Renamed", "main")) == 0
    assert _get(found, "gmp_sent_total", **old) is not None


def test_a_wrong_method_on_a_known_path_keeps_its_template(world: World) -> None:
    def count(found: Samples) -> float:
        return _get(found, "gmp_http_requests_total", route="/tenant/{id}", status="405") or 0.0

    before = _samples(world)
    assert world.admin.post("/tenant/acme", json={}).status_code == 405
    assert count(_samples(world)) == count(before) + 1


async def test_event_streams_are_counted_when_they_are_answered(world: World) -> None:
    # An accepted stream answers 101 and is counted then, while it is still open; refused
    # upgrades are counted with their HTTP answer, unknown WebSocket paths as ``unmatched``.
    def count(found: Samples, route: str, status: str) -> float:
        return _get(found, "gmp_http_requests_total", route=route, status=status) or 0.0

    base = world.server.url.replace("http://", "ws://")
    token = [(b"X-API-Token", world.server.admin_token.encode())]
    before = _samples(world)
    async with open_websocket_url(base + "/events", extra_headers=token):
        during = _samples(world)
        assert count(during, "/events", "101") == count(before, "/events", "101") + 1
    for path, headers in (("/events", []), ("/no/such/stream", token)):
        await refused_upgrade(base + path, headers)
    after = _samples(world)
    assert count(after, "/events", "101") == count(before, "/events", "101") + 1
    assert count(after, "/events", "401") == count(before, "/events", "401") + 1
    assert count(after, "unmatched", "404") == count(before, "unmatched", "404") + 1
