"""The control-socket server and client over a real UNIX socket (reference §17)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from mailproxyd.control import client as control
from mailproxyd.control import protocol
from mailproxyd.control.server import SocketInUse, bind_control_socket, serve_control
from mailproxyd.errors import Conflict, NotFound

NOBODY = 65534


async def _handler(call: protocol.ControlCall) -> dict[str, Any]:
    method = protocol.method_name(call)
    params = {k: v for k, v in msgspec.structs.asdict(call).items() if v is not None}
    if method == "stats" and params.get("tenant_id") == "ghost":
        raise NotFound("tenant 'ghost' not found")
    if method == "activate":
        raise Conflict("cannot activate batch 'b' while the whole tenant is suspended")
    if method == "reload":
        raise RuntimeError("boom with internal detail")
    return {"method": method, "params": params}


@pytest.fixture
async def served() -> AsyncIterator[str]:
    # Under /tmp itself (not pytest's private tmp_path) so that another user can at least
    # traverse the parent directory in the uid-check test.
    base = tempfile.mkdtemp(prefix="mp-ctl-", dir="/tmp")
    os.chmod(base, 0o755)
    path = os.path.join(base, "ctl", "node.sock")
    sock = await bind_control_socket(path)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_control, sock, _handler)
            yield path
            nursery.cancel_scope.cancel()
    finally:
        sock.close()
        shutil.rmtree(base, ignore_errors=True)


def _exchange(path: str, lines: list[bytes]) -> list[dict[str, Any]]:
    """Send raw lines on one connection; read one answer per line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(b"".join(lines))
        data = b""
        while data.count(b"\n") < len(lines):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


async def test_socket_and_directory_are_private(served: str) -> None:
    assert stat.S_IMODE(os.stat(served).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(served)).st_mode) == 0o700


async def test_client_gets_results_and_errors(served: str) -> None:
    def calls() -> tuple[dict[str, Any], Exception, Exception, Exception]:
        with control.ControlClient(served) as c:
            ok = c.call("suspend", {"tenant_id": "acme", "batch_code": "b1"})
            errors = []
            for method, params in (
                ("stats", {"tenant_id": "ghost"}),
                ("activate", {}),
                ("reload", None),
            ):
                try:
                    c.call(method, params)
                except control.ControlError as exc:
                    errors.append(exc)
            return ok, *errors  # type: ignore[return-value]

    ok, missing, conflict, internal = await trio.to_thread.run_sync(calls)
    assert ok == {"method": "suspend", "params": {"tenant_id": "acme", "batch_code": "b1"}}
    assert (missing.code, missing.message) == (-32001, "tenant 'ghost' not found")
    assert conflict.code == -32002
    # Unexpected exceptions never leak their text to the client.
    assert (internal.code, internal.message) == (-32603, "internal error")


async def test_malformed_lines_are_answered_and_the_connection_stays_usable(served: str) -> None:
    lines = [
        b"this is not json\n",
        b'{"id": 1, "method": "frobnicate"}\n',
        b'{"id": 2, "method": "stop", "params": {"grace_seconds": "soon"}}\n',
        b"[1,2,3]\n",
        b'{"id": "last", "method": "status"}\n',
    ]
    answers = await trio.to_thread.run_sync(_exchange, served, lines)
    assert answers[0] == {
        "id": None,
        "error": {"code": -32700, "message": "line is not valid JSON"},
    }
    assert answers[1] == {
        "id": 1,
        "error": {"code": -32601, "message": "unknown method: frobnicate"},
    }
    assert (
        answers[2]["error"]["code"] == -32602 and "grace_seconds" in answers[2]["error"]["message"]
    )
    assert answers[3]["error"]["code"] == -32600
    assert answers[4] == {"id": "last", "result": {"method": "status", "params": {}}}


async def test_an_overlong_line_is_refused_and_the_next_one_served(served: str) -> None:
    huge = b'{"id": 1, "method": "status", "params": {"x": "' + b"a" * (1024 * 1024 + 10) + b'"}}\n'
    answers = await trio.to_thread.run_sync(
        _exchange, served, [huge, b'{"id": 2, "method": "workers"}\n']
    )
    assert answers[0]["error"]["code"] == -32600
    assert answers[1] == {"id": 2, "result": {"method": "workers", "params": {}}}


async def test_requests_on_one_connection_are_answered_in_order(served: str) -> None:
    lines = [json.dumps({"id": i, "method": "status"}).encode() + b"\n" for i in range(50)]
    answers = await trio.to_thread.run_sync(_exchange, served, lines)
    assert [a["id"] for a in answers] == list(range(50))


_OTHER_USER_CLIENT = r"""
import os, socket, sys
os.setgid(65534)
os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    sys.exit(0)
try:
    s.sendall(b'{"id": 1, "method": "status"}\n')
    data = s.recv(65536)
except (BrokenPipeError, ConnectionResetError):
    data = b""  # closed by the server before or after our request: no answer either way
print("ANSWER" if data else "DISCONNECTED")
"""


def _as_nobody(path: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_USER_CLIENT, path],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as another user")
async def test_other_users_are_disconnected_without_an_answer(served: str) -> None:
    # With the normal modes another user cannot even reach the socket...
    assert await trio.to_thread.run_sync(_as_nobody, served) == "EACCES"
    # ...and when the file modes are opened up, the peer-uid check still turns it away.
    os.chmod(os.path.dirname(served), 0o755)
    os.chmod(served, 0o666)
    assert await trio.to_thread.run_sync(_as_nobody, served) == "DISCONNECTED"
    # The node's own user (root here) is still served on the same socket.
    assert await trio.to_thread.run_sync(control.call, served, "status") == {
        "method": "status",
        "params": {},
    }


async def test_stale_socket_is_replaced_but_a_live_one_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: a crashed node's leftover
    sock = await bind_control_socket(path)
    try:
        with pytest.raises(SocketInUse):
            await bind_control_socket(path)
    finally:
        sock.close()


def test_nobody_answers_means_not_running(tmp_path: Path) -> None:
    with pytest.raises(control.ControlUnavailable):
        control.call(str(tmp_path / "absent.sock"), "status")
