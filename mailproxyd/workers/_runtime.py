"""The worker side of the supervisor link, shared by the api, sender and reporter processes.

A worker is started as ``python -m mailproxyd.workers.<kind> --index N``; the link itself (its
environment, messages and channel) is :mod:`mailproxyd.link`.

``run_worker`` opens the database, builds the ``ServiceContext``, sends a heartbeat every 5 s,
and turns a ``Stop`` message, SIGTERM/SIGINT, or the end of the link (supervisor gone) into the
worker's own part of the ordered shutdown (reference §18.3). The worker body receives the context,
calls ``task_status.started()`` once it really serves, and returns once it has wound down
after ``ctx.stopping`` is set.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from mailproxyd import link as wire
from mailproxyd import logsetup
from mailproxyd.errors import MailProxyError
from mailproxyd.link import Channel, ChannelClosed, LinkMessage
from mailproxyd.services.context import ServiceContext

if TYPE_CHECKING:
    from mailproxyd.settings import Settings
    from mailproxyd.store import AsyncDatabase

# When the supervisor is gone nobody waits for a graceful stop, and reference §2.2 wants us gone within
# 10 s; keep well inside that.
ORPHAN_GRACE_SECONDS = 4.0


class ControlCallError(MailProxyError):
    """The supervisor answered a ``call`` with an error; ``code`` is the reference §17 code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class SupervisorLink:
    """The worker's end of the link: fire-and-forget ``send`` and request/response ``call``.

    A ``services.context.Link``.
    """

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._ids = itertools.count(1)
        self._pending: dict[int, trio.MemorySendChannel[wire.Reply]] = {}

    @property
    def closed(self) -> bool:
        return self._channel.closed

    async def send(self, message: LinkMessage) -> None:
        """Send a message; quietly dropped when the supervisor is gone (we are exiting then)."""
        try:
            await self._channel.send(message)
        except ChannelClosed:
            pass

    async def wake(self, target: str, reason: str, tenant_id: str | None = None) -> None:
        """Ask the supervisor to wake ``sender``, ``reporter`` or ``all`` workers of every node."""
        await self.send(wire.Wake(reason=reason, target=target, tenant_id=tenant_id))

    async def cycle_done(self) -> None:
        await self.send(wire.CycleDone())

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, answer_within: float = 15.0
    ) -> dict[str, Any]:
        """Run a control method (reference §17) in the supervisor and return its result.

        Raises ``ControlCallError`` with the reference §17 code when the supervisor answers with an error,
        and ``MailProxyError`` when it does not answer in time or is gone.
        """
        call_id = next(self._ids)
        send, receive = trio.open_memory_channel[wire.Reply](1)
        self._pending[call_id] = send
        try:
            try:
                await self._channel.send(wire.Call(id=call_id, method=method, params=params or {}))
            except ChannelClosed:
                raise MailProxyError("supervisor unavailable") from None
            with trio.move_on_after(answer_within):
                reply = await receive.receive()
                if reply.error is not None:
                    raise ControlCallError(reply.error.code, reply.error.message)
                return dict(reply.result or {})
            raise MailProxyError("supervisor did not answer")
        finally:
            self._pending.pop(call_id, None)

    def _deliver_reply(self, message: wire.Reply) -> None:
        target = self._pending.get(message.id)
        if target is not None:
            try:
                target.send_nowait(message)
            except (trio.WouldBlock, trio.BrokenResourceError):
                pass

    def _fail_pending(self) -> None:
        for send in self._pending.values():
            send.close()


#: ``body(ctx, *, task_status)``: the process's work.
WorkerBody = Callable[..., Awaitable[None]]


def run_worker(kind: str, body: WorkerBody, argv: list[str] | None = None) -> NoReturn:
    """Entry point of a worker process: parse ``--index``, run ``body`` under trio, exit."""
    parser = argparse.ArgumentParser(prog=f"mailproxyd.workers.{kind}")
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args(argv)
    label = kind if kind != "sender" else f"sender-{args.index}"
    log = logsetup.configure(
        label,
        os.environ.get("GMP_LOG_LEVEL", "INFO"),
        journal=logsetup.stderr_is_journal(os.environ),
    )
    _watch_parent()
    try:
        code = trio.run(_main, kind, args.index, body, log)
    except KeyboardInterrupt:
        code = 0
    except MailProxyError as exc:
        log.error("%s", exc.message)
        code = 1
    except BaseException:
        # A crash: the supervisor restarts us; the traceback goes to the log, once.
        log.exception("worker %s crashed", label)
        code = 1
    sys.stderr.flush()
    os._exit(code)


async def _main(kind: str, index: int, body: WorkerBody, log: logging.Logger) -> int:
    from mailproxyd.settings import Settings

    settings = Settings.from_json(os.environ[wire.SETTINGS_ENV])
    logsetup.set_level(settings.log_level)
    if settings.metrics_dir:
        from mailproxyd.drivers import metrics

        metrics.activate(settings.metrics_dir)
    fd = int(os.environ[wire.FD_ENV])
    channel = Channel.from_socket(socket.socket(fileno=fd))
    first = await channel.receive()
    if not isinstance(first, wire.Init):
        log.error("no init message from the supervisor; exiting")
        return 1
    key = base64.urlsafe_b64decode(first.key + "=")
    if first.settings is not None:
        settings = Settings.from_json(first.settings)
        logsetup.set_level(settings.log_level)
    link = SupervisorLink(channel)
    db = await _open_database(settings, key)
    ctx = ServiceContext(
        kind=kind, index=index, settings=settings, db=db, link=link, log=log, instance_key=key
    )
    exit_code = 0
    body_done = trio.Event()

    async def run_body(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await body(ctx, task_status=task_status)
        finally:
            body_done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_read_link, ctx, link, channel, nursery.cancel_scope)
        nursery.start_soon(_signals, ctx)
        # Heartbeats from the start: a worker that hangs while starting is caught too.
        nursery.start_soon(_heartbeats, link)
        try:
            await nursery.start(run_body)
        except FatalWorkerError as exc:
            log.error("%s", exc.message)
            await link.send(wire.Fatal(message=exc.message))
            exit_code = wire.EXIT_FATAL
        else:
            await link.send(wire.Ready())
            # The body returns once it has wound down after a stop; then so do we.
            await body_done.wait()
        nursery.cancel_scope.cancel()
    await _close_database(db)
    return exit_code


class FatalWorkerError(MailProxyError):
    """Raised by a body before ``started()``: the node cannot work (e.g. port in use)."""


async def _read_link(
    ctx: ServiceContext, link: SupervisorLink, channel: Channel, scope: trio.CancelScope
) -> None:
    while True:
        message = await channel.receive()
        if message is None:
            break
        match message:
            case wire.Reply():
                link._deliver_reply(message)
            case wire.Wake(reason=reason):
                ctx.log.debug("woken (%s)", reason)
                ctx.wake.ring()
                for wake_hook in ctx.on_wake:
                    wake_hook(reason)
            case wire.RunCycle():
                ctx.log.debug("run-now cycle requested")
                ctx.cycles.ring()
            case wire.Reload(settings=data):
                _apply_reload(ctx, data)
            case wire.Stop(grace=grace):
                ctx.request_stop(grace)
            case _:
                pass
    # End of the link: the supervisor is gone (or closed us). Wind down quickly; if the body
    # does not finish in time, leave anyway — leases expire or are released by the next start.
    link._fail_pending()
    ctx.log.warning("supervisor link closed; shutting down")
    ctx.request_stop(ORPHAN_GRACE_SECONDS)
    await trio.sleep(ORPHAN_GRACE_SECONDS + 1.0)
    scope.cancel()


def _apply_reload(ctx: ServiceContext, data: str) -> None:
    from mailproxyd.settings import Settings

    new = Settings.from_json(data)
    ctx.settings = new
    logsetup.set_level(new.log_level)
    for hook in ctx.on_reload:
        hook(new)
    ctx.log.debug("applied reloaded settings")
    # Loops pick up a new interval at their next wait.
    ctx.wake.ring()


async def _heartbeats(link: SupervisorLink) -> None:
    while not link.closed:
        await link.send(wire.Heartbeat())
        await trio.sleep(wire.HEARTBEAT_SECONDS)


async def _signals(ctx: ServiceContext) -> None:
    received = 0
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            received += 1
            if received > 1:
                # A second signal: stop at once, as the supervisor does (reference §18.2).
                ctx.log.warning("second signal; exiting now")
                os._exit(1)
            ctx.log.info("signal received; shutting down")
            ctx.request_stop(float(ctx.settings.shutdown_grace_seconds))


def _watch_parent() -> None:
    """Exit when the supervisor dies, even if the link EOF is somehow missed.

    ``prctl(PR_SET_PDEATHSIG)`` would be the usual belt and braces, but trio's ``run_process``
    forks from a worker thread and the kernel fires the death signal when *that thread* exits
    (trio retires idle threads after 10 s), which would kill healthy workers. Watching for
    re-parenting from a tiny daemon thread has no such trap.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                # Give the link-EOF path a moment to finish a graceful exit first.
                time.sleep(ORPHAN_GRACE_SECONDS + 2.0)
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


async def _open_database(settings: Settings, key: bytes) -> AsyncDatabase:
    from mailproxyd.core.crypto import SecretBox
    from mailproxyd.store import AsyncDatabase, open_database

    db = await trio.to_thread.run_sync(lambda: open_database(settings.database, box=SecretBox(key)))
    return AsyncDatabase(db)


async def _close_database(adb: AsyncDatabase) -> None:
    with trio.CancelScope(shield=True):
        await trio.to_thread.run_sync(adb.db.close)
