"""Generated lines on a real node's control socket (reference §17; issue 15).

Requests with every method but ``stop``, parameters of any JSON type (deep, huge integers,
odd unicode) and raw garbage: every line gets exactly one answer, never an internal error
(-32603), and the node keeps serving.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon import Daemon
from tests.integration.api.test_fuzz_json import VALUES

EXAMPLES = 1500
METHODS = st.sampled_from(
    ["status", "stats", "run_now", "suspend", "activate", "reload", "workers", "nope", ""]
)
PARAMS = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "tenant_id": st.one_of(st.sampled_from(["acme", "ghost", ""]), VALUES),
            "batch_code": VALUES,
            "grace_seconds": VALUES,
            "x": VALUES,
        },
    ),
    VALUES,
)
REQUESTS = st.one_of(
    st.builds(
        lambda rid, method, params: json.dumps(
            {"id": rid, "method": method, "params": params}, ensure_ascii=True
        ).encode(),
        st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=8), VALUES),
        METHODS,
        PARAMS,
    ),
    VALUES.map(lambda v: json.dumps(v, ensure_ascii=True).encode()),
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b" ")),
)


def _answer(reader: Any) -> dict[str, Any]:
    line = reader.readline()
    assert line.endswith(b"\n"), line
    answer = json.loads(line)
    assert isinstance(answer, dict), answer
    return answer


def test_generated_control_lines_never_get_an_internal_error(daemon: Daemon) -> None:
    node = daemon.serve(env={"GMP_SENDER_PROCESSES": "1"})
    assert node.http("POST", "/tenant", json={"id": "acme"}).status_code == 200
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(node.socket_path)
        reader = sock.makefile("rb")
        codes: dict[Any, int] = {}

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(REQUESTS)
        def run(line: bytes) -> None:
            if not line.strip():
                return  # blank lines get no answer (reference §17)
            sock.sendall(line + b"\n")
            answer = _answer(reader)
            code = answer["error"]["code"] if "error" in answer else "result"
            codes[code] = codes.get(code, 0) + 1
            assert code != -32603, (line, answer)

        run()
    assert sum(codes.values()) > EXAMPLES // 2, codes
    assert node.control("status")["pid"] == node.process.pid
    assert node.http("GET", "/health").json() == {"status": "ok"}
    assert "Traceback" not in node.log()
