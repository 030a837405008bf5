"""pytest plugin: the real daemon as processes, for system tests.

``daemon`` is a factory fixture. ``node = daemon.serve(env={...})`` starts ``mail-proxy serve``
in a new session with a private ``MAIL_PROXY_HOME``, ``XDG_RUNTIME_DIR``, a free port, a fresh
SQLite database, and a ``NOTIFY_SOCKET`` bound by the test, so every ``READY=1``/``STATUS=``/
``STOPPING=1`` the supervisor sends is recorded with its arrival time. ``daemon.cli(...)`` runs
``mail-proxy`` commands in the same environment (the new-user walk). Everything is torn down at
the end of the test: the process group is killed if a node is still running.

Waiting always polls with a deadline (``wait_for``); nothing sleeps for a fixed time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailproxyd.control import client as control
from tests.helpers import free_port, wait_for

ADMIN_TOKEN = "system-test-admin-token"
__all__ = ["ADMIN_TOKEN", "Daemon", "Node", "free_port", "pid_running", "wait_for"]


def pid_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class NotifyListener:
    """The test's stand-in for systemd: a datagram socket recording every notification."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self.messages: list[tuple[float, list[str]]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode().split("\n")))

    def assignments(self) -> list[tuple[float, str]]:
        with self._lock:
            return [(at, line) for at, lines in self.messages for line in lines]

    def first(self, line: str) -> float | None:
        """Arrival time of the first notification containing exactly ``line``."""
        return next((at for at, got in self.assignments() if got == line), None)

    def lines(self) -> list[str]:
        return [line for _, line in self.assignments()]

    def wait(self, line: str, timeout: float = 30.0) -> float:
        return wait_for(lambda: self.first(line), timeout, what=f"notification {line}")

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        self._thread.join(timeout=2)


@dataclasses.dataclass
class Node:
    """One running ``mail-proxy serve`` (or ``start NAME --foreground``) under test."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    port: int
    root: Path
    notify: NotifyListener
    log_path: Path
    started: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> str:
        return self.env.get("GMP_CONTROL_SOCKET") or str(
            Path(self.env["XDG_RUNTIME_DIR"]) / "mail-proxy" / f"serve-{self.port}.sock"
        )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def control(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return control.call(self.socket_path, method, params, timeout=15)

    def http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-API-Token": ADMIN_TOKEN, **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready_or_dead() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"node exited with {self.process.returncode}:\n{self.log()}")
            return self.notify.first("READY=1") is not None

        wait_for(ready_or_dead, timeout, what="READY=1")

    def workers(self) -> list[dict[str, Any]]:
        return list(self.control("workers")["workers"])

    def worker_pids(self) -> list[int]:
        return [int(w["pid"]) for w in self.workers() if "pid" in w]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"node still running after {timeout:g} s:\n{self.log()}")

    def kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Daemon:
    """Factory of nodes and CLI runs sharing one private environment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.runtime = root / "run"
        self.runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._nodes: list[Node] = []
        self._listeners: list[NotifyListener] = []

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GMP_", "MAIL_PROXY_", "NOTIFY_", "WATCHDOG_"))
        }
        env.update(
            {
                "HOME": str(self.root / "user"),
                "MAIL_PROXY_HOME": str(self.home),
                "XDG_RUNTIME_DIR": str(self.runtime),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra or {})
        return env

    def serve(
        self,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        *,
        wait: bool = True,
        database: str | None = None,
    ) -> Node:
        """Start ``mail-proxy serve`` (SQLite under the test's directory unless ``database``)."""
        port = free_port()
        base = {
            "GMP_API_TOKEN": ADMIN_TOKEN,
            "GMP_PORT": str(port),
            "GMP_HOST": "127.0.0.1",
            "GMP_DB_PATH": database or str(self.root / f"mail-{port}.db"),
            "GMP_SCHEDULER_ACTIVE": "true",
            "GMP_SENDER_PROCESSES": "2",
        }
        base.update(env or {})
        return self._launch(["serve", *args], base, port, wait)

    def start_foreground(
        self, name: str, env: Mapping[str, str] | None = None, *, wait: bool = True
    ) -> Node:
        """Run ``mail-proxy start NAME --foreground`` (the systemd way) on a free port."""
        port = free_port()
        return self._launch(
            ["start", name, "--foreground", "--port", str(port)], dict(env or {}), port, wait
        )

    def _launch(self, args: list[str], extra: dict[str, str], port: int, wait: bool) -> Node:
        notify_path = self.root / f"notify-{port}.sock"
        listener = NotifyListener(notify_path)
        self._listeners.append(listener)
        env = self.environment({**extra, "NOTIFY_SOCKET": str(notify_path)})
        log_path = self.root / f"node-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "mailproxyd.cli", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        node = Node(process, env, port, self.root, listener, log_path, time.monotonic())
        self._nodes.append(node)
        if wait:
            node.wait_ready()
        return node

    def cli(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 90.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``mail-proxy ARGS…`` to completion in this environment."""
        return subprocess.run(
            [sys.executable, "-m", "mailproxyd.cli", *args],
            env=self.environment(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def close(self) -> None:
        for node in self._nodes:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
                try:
                    node.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
            node.kill_group()
            if node.process.poll() is None:
                node.process.wait(timeout=5)
        # Background nodes started through ``cli("start", …)`` are found by their pid files.
        if self.home.is_dir():
            for pid_file in self.home.glob("*/server.pid"):
                try:
                    pid = int(json.loads(pid_file.read_text())["pid"])
                    os.killpg(pid, signal.SIGKILL)
                except (OSError, ValueError, KeyError):
                    pass
        for listener in self._listeners:
            listener.close()


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    # UNIX socket paths must stay under 107 bytes; pytest's tmp_path can be long.
    short = Path(f"/tmp/mpd-{os.getpid()}-{time.monotonic_ns() % 10**9}")
    short.mkdir(mode=0o700)
    factory = Daemon(short)
    try:
        yield factory
    finally:
        factory.close()
        subprocess.run(["rm", "-rf", str(short)], check=False)
