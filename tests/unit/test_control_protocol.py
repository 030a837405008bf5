"""The control-socket protocol (reference §17) as pure functions: lines in, requests or errors out."""

from __future__ import annotations

import json

import pytest

from mailproxyd.control import protocol
from mailproxyd.control.protocol import LineBuffer, ProtocolError, parse_request
from mailproxyd.errors import Conflict, NotFound, ValidationFailed
from mailproxyd.supervision.backoff import next_failure_count, restart_delay


def _error(line: bytes | str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_request(line)
    return info.value


def test_parses_a_request_with_params() -> None:
    req = parse_request(b'{"id": 1, "method": "suspend", "params": {"tenant_id": "acme"}}')
    assert (req.id, req.method, req.params) == (1, "suspend", {"tenant_id": "acme"})


def test_params_are_optional_and_string_ids_allowed() -> None:
    req = parse_request('{"id": "a-1", "method": "status"}')
    assert (req.id, req.params) == ("a-1", {})


@pytest.mark.parametrize("line", [b"{not json", b"", b'{"id": 1', b"\xff\xfe"])
def test_invalid_json_is_32700(line: bytes) -> None:
    err = _error(line)
    assert err.code == protocol.PARSE_ERROR and err.request_id is None


@pytest.mark.parametrize(
    "line",
    [
        "[1, 2]",
        '"status"',
        '{"method": "status"}',
        '{"id": true, "method": "status"}',
        '{"id": 1.5, "method": "status"}',
        '{"id": 1}',
        '{"id": 1, "method": 7}',
        '{"id": 1, "method": "status", "extra": 1}',
    ],
)
def test_malformed_request_objects_are_32600(line: str) -> None:
    assert _error(line).code == protocol.INVALID_REQUEST


def test_request_id_is_kept_when_usable() -> None:
    err = _error('{"id": 7, "method": 3}')
    assert (err.code, err.request_id) == (protocol.INVALID_REQUEST, 7)


def test_unknown_method_names_it() -> None:
    err = _error('{"id": 2, "method": "frobnicate"}')
    assert (err.code, err.message, err.request_id) == (
        protocol.METHOD_NOT_FOUND,
        "unknown method: frobnicate",
        2,
    )


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"tenant": "x"}, "tenant"),
        ({"tenant_id": 5}, "tenant_id"),
        ({"tenant_id": True}, "tenant_id"),
        ({"batch_code": "b"}, "batch_code"),
    ],
)
def test_invalid_params_name_the_parameter(params: dict[str, object], named: str) -> None:
    line = json.dumps({"id": 3, "method": "suspend", "params": params})
    err = _error(line)
    assert err.code == protocol.INVALID_PARAMS and named in err.message


def test_params_must_be_an_object() -> None:
    assert _error('{"id": 3, "method": "stats", "params": [1]}').code == protocol.INVALID_PARAMS


def test_stop_grace_must_be_a_sane_number() -> None:
    assert parse_request('{"id": 1, "method": "stop", "params": {"grace_seconds": 2.5}}')
    err = _error('{"id": 1, "method": "stop", "params": {"grace_seconds": -1}}')
    assert err.code == protocol.INVALID_PARAMS and "grace_seconds" in err.message


def test_every_contract_method_is_known() -> None:
    for method in (
        "status",
        "stats",
        "run_now",
        "suspend",
        "activate",
        "reload",
        "stop",
        "workers",
    ):
        assert parse_request(json.dumps({"id": 1, "method": method})).method == method


def test_domain_errors_map_to_codes() -> None:
    assert protocol.error_from_exception(NotFound("tenant 'x' not found")) == (
        protocol.NOT_FOUND,
        "tenant 'x' not found",
    )
    assert protocol.error_from_exception(Conflict("busy"))[0] == protocol.CONFLICT
    assert protocol.error_from_exception(ValidationFailed([("batch_code", "bad")]))[0] == (
        protocol.INVALID_PARAMS
    )
    assert protocol.error_from_exception(RuntimeError("secret detail")) == (
        protocol.INTERNAL_ERROR,
        "internal error",
    )


def test_answers_are_single_json_lines() -> None:
    ok = protocol.encode_result(1, {"triggered": True})
    err = protocol.encode_error(None, -32700, "line is not valid JSON")
    assert ok.endswith(b"\n") and ok.count(b"\n") == 1
    assert json.loads(ok) == {"id": 1, "result": {"triggered": True}}
    assert json.loads(err) == {
        "id": None,
        "error": {"code": -32700, "message": "line is not valid JSON"},
    }


def test_line_buffer_splits_and_reassembles() -> None:
    buf = LineBuffer()
    assert buf.feed(b'{"a"') == []
    assert buf.feed(b':1}\n{"b":2}\r\n\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert buf.feed(b":3}\n") == [b'{"c":3}']


def test_line_buffer_refuses_overlong_lines_once_then_recovers() -> None:
    buf = LineBuffer(limit=10)
    assert buf.feed(b"x" * 8) == []
    assert buf.feed(b"x" * 8) == [None]
    assert buf.feed(b"x" * 50) == []
    assert buf.feed(b'xx\n{"ok":1}\n') == [b'{"ok":1}']


def test_restart_backoff_doubles_to_sixty_and_resets() -> None:
    delays = [restart_delay(n) for n in range(1, 9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert next_failure_count(3, ran_for=5) == 4
    assert next_failure_count(6, ran_for=61) == 1


def test_deeply_nested_line_is_a_parse_error_not_a_crash() -> None:
    from mailproxyd.control import protocol

    with pytest.raises(protocol.ProtocolError) as info:
        protocol.parse_request(b"[" * 100_000)
    assert info.value.code == protocol.PARSE_ERROR


def test_a_line_nested_more_than_32_levels_is_a_parse_error() -> None:
    from mailproxyd.control import protocol

    deep = '{"a":' * 33 + "1" + "}" * 33
    line = '{"id":1,"method":"stats","params":{"tenant_id":null,"x":' + deep + "}}"
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.parse_request(line.encode())
    assert info.value.code == protocol.PARSE_ERROR
    assert "32 levels" in info.value.message


@pytest.mark.parametrize(
    "line",
    [
        b'{"id": "\\udfff x", "method": "activate", "params": "\\udfff x"}',
        b'{"id": 1, "method": "\\ud800"}',
    ],
)
def test_lone_surrogates_are_answered_as_escaped_json(line: bytes) -> None:
    # JSON text may hold a lone surrogate escape, which UTF-8 cannot encode: the answer
    # echoes it escaped instead of failing (the connection used to be dropped).
    with pytest.raises(ProtocolError) as caught:
        parse_request(line)
    answer = protocol.encode_error(caught.value.request_id, caught.value.code, caught.value.message)
    assert answer.endswith(b"\n") and answer.count(b"\n") == 1 and answer.isascii()
    decoded = json.loads(answer)
    assert decoded["error"]["code"] in (protocol.INVALID_PARAMS, protocol.METHOD_NOT_FOUND)
    assert decoded["id"] == json.loads(line)["id"]
