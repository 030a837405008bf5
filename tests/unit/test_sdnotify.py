"""The hand-rolled sd_notify driver, against a real datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailproxyd.drivers.sdnotify import Notifier, socket_address


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier(environ={})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_interval is None


def test_ready_with_status_is_one_datagram(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    assert notifier.ready("serving on 0.0.0.0:8000") is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving on 0.0.0.0:8000"
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    notifier.reloading()
    lines = sock.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
    notifier.close()


def test_abstract_namespace_address() -> None:
    name = f"mp-test-{uuid.uuid4().hex}"
    assert socket_address("@" + name) == b"\0" + name.encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    notifier = Notifier(environ={"NOTIFY_SOCKET": "@" + name})
    try:
        notifier.status("hello")
        assert sock.recv(4096) == b"STATUS=hello"
    finally:
        notifier.close()
        sock.close()


def test_a_vanished_listener_does_not_raise(tmp_path: Path) -> None:
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled
    assert notifier.ready() is False
    notifier.close()


def test_watchdog_interval_is_half_the_usec_and_only_for_us() -> None:
    me = str(os.getpid())
    assert Notifier(environ={"WATCHDOG_USEC": "30000000"}).watchdog_interval == 15.0
    assert (
        Notifier(environ={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}).watchdog_interval
        == 15.0
    )
    assert (
        Notifier(environ={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval
        is None
    )
    assert Notifier(environ={"WATCHDOG_USEC": "junk"}).watchdog_interval is None
