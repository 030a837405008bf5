"""Hostile input found in review: deep nesting and repeated query parameters (reference §4.1, §4.3, §4.4)."""

from __future__ import annotations

import pytest

from tests.integration.api.conftest import World


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        b'{"id":' + b"[" * 990 + b'"\\u0000"' + b"]" * 990 + b"}",
    ],
    ids=["deep-list", "deep-object", "deep-nul"],
)
@pytest.mark.parametrize("path", ["/tenant", "/account", "/commands/add-messages"])
def test_deeply_nested_bodies_are_a_client_error(world: World, path: str, body: bytes) -> None:
    r = world.admin.post(path, content=body)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["ok"] is False
    assert world.admin.get("/health").json() == {"status": "ok"}


def test_a_repeated_tenant_id_naming_another_tenant_is_refused(world: World) -> None:
    for query in ("tenant_id=acme&tenant_id=beta", "tenant_id=beta&tenant_id=acme"):
        r = world.b.get(f"/messages?{query}")
        assert r.status_code == 403, (query, r.text)
        assert r.json()["error"] == "forbidden_tenant"


def test_admin_with_disagreeing_repeated_tenant_ids_is_a_422(world: World) -> None:
    r = world.admin.get("/messages?tenant_id=acme&tenant_id=beta")
    assert r.status_code == 422 and r.json()["field"] == "tenant_id"
    r = world.admin.get("/messages?tenant_id=acme&tenant_id=acme")
    assert r.status_code == 200


def _deep(levels: int, leaf: str = "1") -> str:
    return '{"a":' * (levels - 1) + "[" + leaf + "]" + "}" * (levels - 1)


@pytest.mark.parametrize("levels", [33, 900])
def test_nesting_beyond_32_levels_is_invalid_json_everywhere(world: World, levels: int) -> None:
    """One limit at decoding (reference §4.4), wherever the deep value sits (defect 15.2)."""
    deep = _deep(levels - 1)  # one level more once it sits inside the body object
    bodies = {
        "/tenant": '{"id":"t1","unknown":' + deep + "}",
        "/account": '{"id":"s9","tenant_id":"acme","host":"h","port":25,"oops":' + deep + "}",
        "/commands/add-messages": '{"messages":[{"id":"m\\u0031","x":' + _deep(levels - 3) + "}]}",
    }
    for path, body in bodies.items():
        r = world.admin.post(path, content=body.encode())
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"] == "invalid_json", (path, r.text)
        assert "32 levels" in r.json()["detail"]


def test_32_levels_are_accepted(world: World) -> None:
    body = '{"id":"s9","tenant_id":"acme","host":"h","port":25,"oops":' + _deep(31) + "}"
    r = world.admin.post("/account", content=body.encode())
    assert r.status_code == 422 and r.json()["field"] == "oops", r.text


def test_a_deep_priority_is_refused_and_the_tenant_stays_readable(world: World) -> None:
    item = '{"id":"deep1","from":"a@acme.example","to":["b@example.org"],"subject":"s","priority":'
    body = '{"tenant_id":"acme","messages":[' + item + _deep(900) + "}]}"
    r = world.admin.post("/commands/add-messages", content=body.encode())
    assert r.status_code == 400 and r.json()["error"] == "invalid_json", r.text
    assert world.admin.get("/messages?tenant_id=acme").status_code == 200
    # At the limit the rejection is recorded, and it reads back (reference §6.9).
    shallow = '{"tenant_id":"acme","messages":[' + item + _deep(28) + "}]}"
    r = world.admin.post("/commands/add-messages", content=shallow.encode())
    assert r.status_code == 400 and r.json()["error"] == "nothing_queued", r.text
    assert world.admin.get("/messages?tenant_id=acme").status_code == 200
    assert world.admin.get("/message/deep1?tenant_id=acme").status_code == 200


HUGE = 10**30
TOP = 2**53 - 1


def _range(field: str, low: int, high: int = TOP) -> tuple[str, str]:
    return field, f"{field}: must be an integer between {low} and {high}"


@pytest.mark.parametrize("priority", [HUGE, TOP + 1, -1])
def test_a_cursor_with_numbers_out_of_range_is_a_422(world: World, priority: int) -> None:
    import base64
    import json

    cursor = base64.urlsafe_b64encode(json.dumps([priority, 1]).encode()).decode().rstrip("=")
    r = world.admin.get(f"/messages?tenant_id=acme&cursor={cursor}")
    assert r.status_code == 422 and r.json()["field"] == "cursor", r.text


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (
            "/account",
            {"id": "s9", "tenant_id": "acme", "host": "h", "port": 25, "limit_per_minute": HUGE},
            _range("limit_per_minute", 0),
        ),
        ("/tenant", {"id": "t9", "rate_limits": {"hourly": HUGE}}, _range("rate_limits.hourly", 0)),
        (
            "/tenant",
            {"id": "t9", "rate_limits": {"daily": TOP + 1}},
            _range("rate_limits.daily", 0),
        ),
        (
            "/commands/cleanup-messages?tenant_id=acme",
            {"older_than_seconds": HUGE},
            _range("older_than_seconds", 0),
        ),
        ("/tenant/acme/api-key", {"expires_at": HUGE}, _range("expires_at", 0)),
    ],
    ids=["account-limit", "tenant-hourly", "tenant-daily", "cleanup", "api-key"],
)
def test_integers_beyond_2_53_are_a_422_and_not_stored(
    world: World, path: str, body: dict[str, object], expected: tuple[str, str]
) -> None:
    r = world.admin.post(path, json=body)
    assert r.status_code == 422, r.text
    assert (r.json()["field"], r.json()["detail"]) == expected
    assert world.admin.get("/account/s9?tenant_id=acme").status_code == 404
    assert world.admin.get("/tenant/t9").status_code == 404


def test_the_top_of_the_range_is_accepted(world: World) -> None:
    r = world.admin.post(
        "/account",
        json={"id": "s9", "tenant_id": "acme", "host": "h", "port": 25, "limit_per_minute": TOP},
    )
    assert r.status_code == 200, r.text
    assert world.admin.get("/accounts?tenant_id=acme").status_code == 200


@pytest.mark.parametrize("query", ["offset=99999999999999999999999", "limit=1e3", "offset=-1"])
def test_query_integers_out_of_range_are_a_422(world: World, query: str) -> None:
    r = world.admin.get(f"/messages?tenant_id=acme&{query}")
    assert r.status_code == 422 and r.json()["field"] == query.split("=")[0], r.text


@pytest.mark.parametrize("deferred_ts", [1e300, TOP + 1, HUGE])
def test_a_deferred_ts_beyond_2_53_is_rejected_and_reads_back(
    world: World, deferred_ts: float
) -> None:
    item = {"id": "far", "from": "a@acme.example", "to": ["b@example.org"], "subject": "s"}
    r = world.a.post(
        "/commands/add-messages", json={"messages": [{**item, "deferred_ts": deferred_ts}]}
    )
    assert r.status_code == 400, r.text
    assert r.json()["rejected"][0]["reason"].startswith("invalid deferred_ts: ")
    assert world.a.get("/message/far").status_code == 200
    assert world.a.get("/messages").status_code == 200


def _raw_request(world: World, head: str, body: bytes = b"") -> tuple[float, bytes]:
    """Send ``head`` + part of a body and return (seconds until the answer, answer bytes)."""
    import socket
    import time
    from urllib.parse import urlsplit

    where = urlsplit(world.server.url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        started = time.monotonic()
        answer = sock.recv(65536)
        took = time.monotonic() - started
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head_part, _, rest = answer.partition(b"\r\n\r\n")
        length = int(head_part.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        while len(rest) < length:
            rest += sock.recv(65536)
        # A refused request is not kept open for the rest of its body: the server closes.
        sock.settimeout(5)
        assert sock.recv(65536) == b"", "the connection stayed open after the answer"
        return took, head_part + b"\r\n\r\n" + rest


def test_a_bad_token_gets_its_401_without_waiting_for_a_stalled_body(world: World) -> None:
    head = (
        "POST /commands/add-messages HTTP/1.1\r\nHost: x\r\nX-API-Token: wrong-token-123\r\n"
        "Content-Length: 100000"
    )
    took, answer = _raw_request(world, head, b'{"messages": [')
    assert answer.startswith(b"HTTP/1.1 401"), answer
    assert took < 3, took


def test_a_stalled_body_gets_a_408_after_10_s(world: World) -> None:
    head = (
        f"POST /commands/add-messages HTTP/1.1\r\nHost: x\r\nX-API-Token: {world.a_key}\r\n"
        "Content-Length: 100000"
    )
    took, answer = _raw_request(world, head, b'{"messages": [')
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"request_timeout"' in answer
    assert 9 <= took < 20, took
