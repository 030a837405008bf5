"""Hostile input against a running node: fuzzed add-messages payloads and attachment
descriptors, CR/LF injection in every header-bearing field, huge and deeply nested JSON, invalid
UTF-8, and schemathesis over the whole OpenAPI document with both credentials. No answer is a
5xx, nothing injected reaches the wire, and no accepted message later fails to build (reference §4.4, §6)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.daemon import ADMIN_TOKEN, Daemon, Node, wait_for
from tests.system.faults.conftest import Scale
from tests.system.faults.harness import TENANT, Inspector, setup_tenant
from tests.system.smtpsink import SmtpSink
from tests.tenantservers import TenantServer

EVIL = "evil@attacker.example"
INJECTIONS = [f"x\r\nBcc: {EVIL}", f"x\nBcc: {EVIL}", f"x\rBcc: {EVIL}", f"x\r\n\r\nBcc: {EVIL}"]


def _post(node: Node, body: bytes | dict[str, Any], **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        node.url + "/commands/add-messages",
        content=content,
        headers={"X-API-Token": ADMIN_TOKEN, **headers},
        timeout=60,
    )


def _base(client_id: str) -> dict[str, Any]:
    return {
        "id": client_id,
        "from": "orders@acme.example",
        "to": ["ann@example.org"],
        "subject": "Hello",
        "body": "Hi",
    }


def _injected_messages() -> list[dict[str, Any]]:
    """One message per (header-bearing field, injection)."""
    fields: list[tuple[str, Callable[[str], Any]]] = [
        ("subject", lambda v: v),
        ("from", lambda v: f"Ann {v} <orders@acme.example>"),
        ("to", lambda v: [f'"{v}" <ann@example.org>']),
        ("cc", lambda v: [f"carl@example.org{v}"]),
        ("reply_to", lambda v: f"reply@example.org{v}"),
        ("return_path", lambda v: f"bounce@example.org{v}"),
        ("message_id", lambda v: f"<abc{v}@acme.example>"),
        ("headers", lambda v: {"X-Campaign": v}),
        ("headers", lambda v: {f"X-A{v}": "1"}),
        ("batch_code", lambda v: v),
        ("attachments", lambda v: [{"filename": f"a{v}.txt", "storage_path": "base64:aGk="}]),
        ("attachments", lambda v: [{"filename": "a.txt", "storage_path": "base64:aGk=",
                                    "mime_type": f"text/plain{v}"}]),
    ]  # fmt: skip
    out = []
    for f, (name, make) in enumerate(fields):
        for i, value in enumerate(INJECTIONS):
            out.append({**_base(f"inj-{f}-{i}"), name: make(value)})
    return out


_text = st.text(st.characters(codec="utf-8"), max_size=40)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), _text)
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_address = st.one_of(
    st.just("ann@example.org"), st.emails().map(str), _text, st.sampled_from(INJECTIONS)
)
_attachment = st.fixed_dictionaries(
    {},
    optional={
        "filename": st.one_of(_text, st.just("../../etc/passwd"), st.just("a{MD5:zz}.txt")),
        "storage_path": st.one_of(
            _text,
            st.just("base64:aGVsbG8="),
            st.just("base64:!!!"),
            st.just("http://127.0.0.1:1/x"),
            st.just("/etc/passwd"),
        ),
        "fetch_mode": st.sampled_from(["endpoint", "http_url", "base64", "filesystem", None, "x"]),
        "mime_type": st.one_of(_text, st.just("text/plain")),
        "content_md5": st.one_of(_text, st.just("0" * 32)),
        "auth": _json,
        "extra": _json,
    },
)
_fuzzed = st.fixed_dictionaries(
    {},
    optional={
        "from": _address,
        "to": st.one_of(_address, st.lists(_address, max_size=3)),
        "cc": st.lists(_address, max_size=2),
        "bcc": st.lists(_address, max_size=2),
        "reply_to": _address,
        "return_path": _address,
        "subject": st.one_of(_text, st.sampled_from(INJECTIONS)),
        "body": _text,
        "content_type": st.sampled_from(["plain", "html", "text/HTML", "x", ""]),
        "headers": st.dictionaries(_text, _scalar, max_size=3),
        "message_id": _text,
        "attachments": st.lists(_attachment, max_size=2),
        "priority": _scalar,
        "deferred_ts": _scalar,
        "batch_code": _text,
        "account_id": st.one_of(st.just("smtp1"), _text),
    },
)
# A valid message with some fields replaced by fuzzed ones: many are accepted, so the build of
# what was accepted is exercised too, not only the refusals.
_message = st.builds(
    lambda client_id, fields: {**_base(client_id), **fields},
    st.text(st.sampled_from("abcXYZ019-_.@"), min_size=1, max_size=20),
    _fuzzed,
)


def _no_injection_on_the_wire(sink: SmtpSink) -> None:
    for received in sink.received():
        assert EVIL not in received.rcpt_tos
        head = received.data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        for line in head.splitlines():
            assert not line.lower().startswith(b"bcc:"), received.data[:500]


def test_hostile_payloads_get_4xx_and_nothing_reaches_the_wire(
    daemon: Daemon,
    smtp_sink: SmtpSink,
    tenant_server: Callable[..., TenantServer],
    scale: Scale,
) -> None:
    sync = tenant_server()
    node = daemon.serve(env={"GMP_SENDER_PROCESSES": "1", "GMP_MAX_REQUEST_MB": "2"})
    tenant_key = setup_tenant(node, smtp_sink.port, sync.base_url)
    assert tenant_key

    # Malformed bodies: the documented 4xx, never a 5xx.
    assert _post(node, b"\xff\xfe{not json").status_code == 400
    assert (
        _post(node, b'{"tenant_id": "acme", "messages": [{"subject": "\xc3\x28"}]}').json()["error"]
        == "invalid_json"
    )
    assert _post(node, b"[" * 100_000 + b"]" * 100_000).status_code in (400, 413)
    deep = {"tenant_id": TENANT, "messages": [_base("deep")]}
    deep["messages"][0]["headers"] = {"X": json.loads("[" * 40 + "]" * 40)}
    assert _post(node, deep).json()["error"] == "invalid_json"
    huge = _post(node, b'{"tenant_id": "acme", "messages": ["' + b"x" * (3 << 20) + b'"]}')
    assert (huge.status_code, huge.json()["error"]) == (413, "request_too_large")
    assert _post(node, b'"just a string"').status_code == 400

    # CR/LF in every header-bearing field: refused per item, or neutralised on the wire.
    injected = _post(node, {"tenant_id": TENANT, "messages": _injected_messages()})
    assert injected.status_code in (200, 400), injected.text

    # Fuzzed payloads and attachment descriptors.
    statuses: list[int] = []

    @settings(
        max_examples=scale.fuzz_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(messages=st.lists(_message, min_size=1, max_size=4), envelope=_json)
    def fuzz(messages: list[dict[str, Any]], envelope: Any) -> None:
        body = {"tenant_id": TENANT, "messages": messages}
        if isinstance(envelope, dict):
            body = {**envelope, **body}
        answer = _post(node, body)
        statuses.append(answer.status_code)
        assert answer.status_code < 500, answer.text
        answer = _post(node, body, **{"X-API-Token": tenant_key})
        assert answer.status_code < 500, answer.text

    fuzz()
    assert node.process.poll() is None

    # Everything accepted gets sent (or fails for a reason other than a build failure).
    inspector = Inspector(node.env["GMP_DB_PATH"])

    def settled() -> bool:
        counts = inspector.status_counts()
        return not counts.get("pending") and not counts.get("sending")

    wait_for(settled, 180, interval=0.5, what="every accepted message settled")
    failed = inspector.rows(
        "SELECT id, error FROM messages WHERE status = 'error' AND error LIKE %s",
        ("%build failed%",),
    )
    assert failed == []
    _no_injection_on_the_wire(smtp_sink)
    node.signal(signal.SIGTERM)
    assert node.wait_exit(60) == 0
    print(
        f"\nfaults/hostile [{scale.name}]: fuzz_requests={len(statuses)} "
        f"accepted_200={statuses.count(200)} sent={len(smtp_sink.received())}"
    )


def test_schemathesis_over_the_running_node_never_gets_a_5xx(
    daemon: Daemon, smtp_sink: SmtpSink, scale: Scale
) -> None:
    node = daemon.serve(env={"GMP_SENDER_PROCESSES": "1"})
    tenant_key = setup_tenant(node, smtp_sink.port, None)
    assert tenant_key
    schema = schemathesis.openapi.from_url(node.url + "/openapi.json")
    failures: list[str] = []
    examples = max(2, scale.fuzz_examples // 20)

    def runner(operation: Any, token: str) -> Callable[[], None]:
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def exercise(case: schemathesis.Case) -> None:
            response = case.call(base_url=node.url, headers={"X-API-Token": token}, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        return exercise

    for token in (ADMIN_TOKEN, tenant_key):
        for result in schema.get_all_operations():
            operation = result.ok()
            try:
                runner(operation, token)()
            except Exception as exc:
                failures.append(f"{operation.label}: {exc}")
    assert node.process.poll() is None
    assert not failures, "\n\n".join(failures)
