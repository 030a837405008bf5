"""The helpers every tier shares: one of each, so a fix to one reaches every test.

* ``free_port()``: a TCP port on 127.0.0.1 that nobody listens on right now.
* ``wait_for(predicate)``: block, polling ``predicate`` with a deadline, until it is truthy.
* ``until(predicate)``: the same inside a trio test. Its deadline is real time, not the trio
  clock, so it also bounds a wait for threads and other processes in a test that runs on
  ``autojump_clock`` (where trio's clock jumps whenever every task is blocked).
* ``make_settings(db_url)``: the settings of a serving node on ``db_url``, loaded the way
  ``mail-proxy serve`` loads them, with fields replaced by keyword.

Nothing here sleeps for a fixed time to let something happen: every wait has a condition.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

from mailproxyd.settings import Settings, load_settings

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _describe(predicate: Callable[[], object], what: str) -> str:
    return what or getattr(predicate, "__qualname__", repr(predicate))


def wait_for(
    predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail the test
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {_describe(predicate, what)}")
        time.sleep(interval)


async def until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> T:
    """In a trio test: poll ``predicate`` until it returns something truthy, and return that;
    fail the test after ``timeout`` seconds of real time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {_describe(predicate, what)}")
        if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
            # The trio clock may jump: pace the polls in real time (the wait itself is a
            # thread, so the other tasks run meanwhile).
            await trio.to_thread.run_sync(time.sleep, interval)
        else:
            await trio.sleep(interval)


def make_settings(
    db_url: str,
    home: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """The settings of a serving node (``load_settings("serve")``) on ``db_url``.

    ``home`` becomes ``MAIL_PROXY_HOME``; ``environ`` adds ``GMP_*`` variables; keyword
    arguments replace fields of the result (``retry_jitter=0.0``...).
    """
    env = {"GMP_NODE_ID": "test-node"}
    if home is not None:
        env["MAIL_PROXY_HOME"] = str(home)
    if db_url.startswith(("postgres://", "postgresql://")):
        env["GMP_DATABASE_URL"] = db_url
    else:
        env["GMP_DB_PATH"] = db_url.removeprefix("sqlite:")
    env.update(environ or {})
    settings = load_settings("serve", environ=env)
    return dataclasses.replace(settings, **overrides) if overrides else settings
