"""Starting a node in the background and stopping a running one (reference §15.2).

``start NAME`` re-runs itself as ``start NAME --foreground`` in a new session, logging to the
instance's ``logs/mail-proxy.log``, and waits for the node's ``READY=1`` on a private
notification socket (the same protocol systemd uses, so the node needs no special mode).
``stop`` asks the node over its control socket and falls back to SIGTERM.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mailproxyd import instance
from mailproxyd.control import client as control
from mailproxyd.errors import MailProxyError

READY_TIMEOUT_SECONDS = 60.0
LOG_FILE_ENV = "MAIL_PROXY_DAEMON_LOG"


class StartFailed(MailProxyError):
    """The node did not become ready; ``exit_code`` is 1 or the node's own code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def log_file(directory: Path) -> Path:
    return directory / "logs" / "mail-proxy.log"


def last_log_lines(directory: Path, count: int = 20) -> list[str]:
    try:
        lines = log_file(directory).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return lines[-count:]


def start_background(name: str, foreground_args: Sequence[str]) -> int:
    """Start ``start NAME --foreground …`` detached; return its pid once it is ready."""
    directory = instance.instance_dir(name)
    logs = log_file(directory)
    logs.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(logs, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    address = f"\0mail-proxy-start-{os.getpid()}-{secrets.token_hex(8)}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    notify.bind(address)
    env = dict(os.environ)
    env["NOTIFY_SOCKET"] = "@" + address[1:]
    env[LOG_FILE_ENV] = str(logs)
    for name_ in ("WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(name_, None)
    command = [sys.executable, "-m", "mailproxyd.cli", "start", name, "--foreground"]
    try:
        child = subprocess.Popen(
            [*command, *foreground_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fd,
            env=env,
            start_new_session=True,
            cwd="/",
        )
    finally:
        os.close(fd)
    try:
        _wait_ready(child, notify)
    finally:
        notify.close()
    return child.pid


def _wait_ready(child: subprocess.Popen[bytes], notify: socket.socket) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    notify.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = notify.recv(4096)
        except TimeoutError:
            data = b""
        if b"READY=1" in data.split(b"\n"):
            return
        code = child.poll()
        if code is not None:
            raise StartFailed("the node exited before it was ready", 2 if code == 2 else 1)
    # Not ready in time: do not leave a half-started node behind.
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    raise StartFailed(f"the node was not ready within {READY_TIMEOUT_SECONDS:g} s")


def socket_of(directory: Path) -> str | None:
    info = instance.read_pid_file(directory)
    path = info.get("socket") if info else None
    return path if isinstance(path, str) else None


def request_stop(directory: Path, pid: int) -> None:
    """Ask the node to stop: control method ``stop``, else SIGTERM."""
    path = socket_of(directory)
    if path:
        try:
            control.call(path, "stop", timeout=5)
            return
        except MailProxyError:
            pass
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def kill_node(directory: Path, pid: int) -> None:
    """``stop --force``: SIGKILL the node's process group (only the node if we share it)."""
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        if group == pid and group != os.getpgrp():
            os.killpg(group, signal.SIGKILL)
        else:
            # The node shares our group (run in the foreground from here): never kill
            # ourselves; its workers follow it within seconds (reference §2.2).
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    instance.remove_pid_file(directory)


def wait_gone(pid: int, timeout: float) -> bool:
    """Poll until ``pid`` has exited; ``False`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    if not instance.pid_alive(pid):
        return False
    # A zombie whose parent has not reaped it yet counts as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
