"""The instance a data command works on: its settings, its database, its running node (reference §15.1).

Data commands call ``services.admin`` — the same use cases the HTTP API runs — directly on the
instance database, whether or not a node serves it. ``open_instance`` resolves the settings as a
start from this shell would, opens the database with the instance key
(``services.instance_db``) and hands back a ``CliContext`` shaped as
the services expect. A running node picks the changes up from the database within its poll
interval (reference §2.6); nothing has to be told to it, so the context's link only carries calls to the
node's control socket when one answers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

from mailproxyd import instance
from mailproxyd.cli.errors import NotRunning, UsageError
from mailproxyd.control import client as control
from mailproxyd.control import protocol
from mailproxyd.errors import MailProxyError
from mailproxyd.services.context import ServiceContext
from mailproxyd.services.instance_db import open_instance_database
from mailproxyd.settings import load_settings

T = TypeVar("T")


def existing_instance(name: str) -> Path:
    """The directory of the instance ``name``; exit 1 when it does not exist."""
    instance.validate_name(name)
    if not instance.instance_exists(name):
        raise MailProxyError(f"instance '{name}' does not exist")
    return instance.instance_dir(name)


def socket_path(directory: Path) -> str | None:
    """The control socket of the node serving ``directory``, when one runs."""
    if instance.running_pid(directory) is None:
        return None
    info = instance.read_pid_file(directory)
    path = info.get("socket") if info else None
    return path if isinstance(path, str) else None


def running_url(directory: Path) -> str | None:
    """The HTTP URL of the running node (``server.pid``; ``0.0.0.0`` read as ``127.0.0.1``)."""
    if instance.running_pid(directory) is None:
        return None
    info = instance.read_pid_file(directory) or {}
    port = info.get("port")
    if not isinstance(port, int):
        return None
    return instance.url_for(str(info.get("host") or "127.0.0.1"), port)


def control_call(directory: Path, method: str, params: dict[str, Any] | None = None) -> Any:
    """Run a control method on the running node; ``NotRunning`` (exit 3) when there is none."""
    path = socket_path(directory)
    if path is None:
        raise NotRunning()
    try:
        return control.call(path, method, params, timeout=15)
    except control.ControlUnavailable:
        raise NotRunning() from None
    except control.ControlError as exc:
        if exc.code == protocol.INVALID_PARAMS:
            raise UsageError(exc.message) from None
        raise


class CliLink:
    """The ``link`` of the services, seen from a command line.

    Wake-ups are dropped: a node polls the database (``GMP_SEND_LOOP_INTERVAL``) and sees the
    change within 2 s without them. Calls go to the node's control socket.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    async def wake(self, target: str, reason: str, tenant_id: str | None = None) -> None:
        return None

    async def cycle_done(self) -> None:
        return None

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        directory = self._directory
        result = await trio.to_thread.run_sync(lambda: control_call(directory, method, params))
        return dict(result)


@dataclasses.dataclass(eq=False)
class CliContext(ServiceContext):
    """The ``ServiceContext`` of one command, with the instance it works on."""

    name: str = dataclasses.field(kw_only=True)
    directory: Path = dataclasses.field(kw_only=True)

    def run(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Run one service call (a coroutine function taking this context first) to completion."""

        async def main() -> T:
            return await fn(self, *args, **kwargs)

        return trio.run(main)


@contextmanager
def open_instance(name: str) -> Iterator[CliContext]:
    """The ``CliContext`` of the existing instance ``name``; the database is closed after use."""
    directory = existing_instance(name)
    settings = load_settings("instance", name=name)
    adb = open_instance_database(settings)
    try:
        yield CliContext(
            settings,
            adb,
            CliLink(directory),
            logging.getLogger("mailproxyd.cli"),
            kind="cli",
            name=name,
            directory=directory,
        )
    finally:
        adb.db.close()
