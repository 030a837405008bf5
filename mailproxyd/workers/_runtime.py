"""The worker side of the supervisor link, shared by the api, sender and reporter processes.

A worker is started as ``python -m mailproxyd.workers.<kind> --index N`` with

* ``MAIL_PROXY_WORKER_SETTINGS``: the supervisor's resolved settings without their secrets
  (the full settings, secrets included, come in the ``init`` message),
* ``MAIL_PROXY_WORKER_FD``: its end of a UNIX socket pair carrying JSON lines both ways
  (docs/internals.md, "Worker ↔ supervisor channel"). The first line from the supervisor is
  ``{"type": "init", "key": …}``: the instance key travels over the link, never in the
  environment, where ``/proc/<pid>/environ`` would keep it readable.

``run_worker`` opens the database, builds the ``WorkerContext``, sends a heartbeat every 5 s,
and turns a ``stop`` message, SIGTERM/SIGINT, or the end of the link (supervisor gone) into the
worker's own part of the ordered shutdown (reference §18.3). The worker body receives the context,
calls ``task_status.started()`` once it really serves, and returns once it has wound down
after ``ctx.stopping`` is set.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import itertools
import logging
import math
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import trio

from mailproxyd import logsetup
from mailproxyd.core.owners import run_owner
from mailproxyd.errors import MailProxyError
from mailproxyd.supervision.channel import Channel, ChannelClosed, Message

if TYPE_CHECKING:
    from mailproxyd.settings import Settings

SETTINGS_ENV = "MAIL_PROXY_WORKER_SETTINGS"
FD_ENV = "MAIL_PROXY_WORKER_FD"
HEARTBEAT_SECONDS = 5.0
# When the supervisor is gone nobody waits for a graceful stop, and reference §2.2 wants us gone within
# 10 s; keep well inside that.
ORPHAN_GRACE_SECONDS = 4.0

# Exit status a worker uses for "I can never work with this configuration" (port in use, ...):
# the supervisor does not restart it but gives up starting the node (exit code 1, reference §18.4).
EXIT_FATAL = 3


class ControlCallError(MailProxyError):
    """The supervisor answered a ``call`` with an error; ``code`` is the reference §17 code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Doorbell:
    """A wake-up that is never lost: a ring while nobody waits is kept for the next ``wait``."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def ring(self) -> None:
        self._event.set()

    @property
    def pending(self) -> bool:
        return self._event.is_set()

    async def wait(self, at_most: float = math.inf) -> bool:
        """Wait for a ring, at most ``at_most`` seconds; ``True`` if rung. Consumes the ring."""
        with trio.move_on_after(at_most):
            await self._event.wait()
        rung = self._event.is_set()
        if rung:
            self._event = trio.Event()
        return rung


class SupervisorLink:
    """The worker's end of the link: fire-and-forget ``send`` and request/response ``call``."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._ids = itertools.count(1)
        self._pending: dict[int, trio.MemorySendChannel[Message]] = {}

    @property
    def closed(self) -> bool:
        return self._channel.closed

    async def send(self, message: Message) -> None:
        """Send a message; quietly dropped when the supervisor is gone (we are exiting then)."""
        try:
            await self._channel.send(message)
        except ChannelClosed:
            pass

    async def wake(self, target: str, reason: str, tenant_id: str | None = None) -> None:
        """Ask the supervisor to wake ``sender``, ``reporter`` or ``all`` workers of every node."""
        msg: Message = {"type": "wake", "target": target, "reason": reason}
        if tenant_id is not None:
            msg["tenant_id"] = tenant_id
        await self.send(msg)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, answer_within: float = 15.0
    ) -> dict[str, Any]:
        """Run a control method (reference §17) in the supervisor and return its result.

        Raises ``ControlCallError`` with the reference §17 code when the supervisor answers with an error,
        and ``MailProxyError`` when it does not answer in time or is gone.
        """
        call_id = next(self._ids)
        send, receive = trio.open_memory_channel[Message](1)
        self._pending[call_id] = send
        try:
            try:
                await self._channel.send(
                    {"type": "call", "id": call_id, "method": method, "params": params or {}}
                )
            except ChannelClosed:
                raise MailProxyError("supervisor unavailable") from None
            with trio.move_on_after(answer_within):
                reply = await receive.receive()
                if "error" in reply:
                    err = reply["error"] or {}
                    raise ControlCallError(int(err.get("code", -32603)), str(err.get("message")))
                return dict(reply.get("result") or {})
            raise MailProxyError("supervisor did not answer")
        finally:
            self._pending.pop(call_id, None)

    def _deliver_reply(self, message: Message) -> None:
        target = self._pending.get(message.get("id"))  # type: ignore[arg-type]
        if target is not None:
            try:
                target.send_nowait(message)
            except (trio.WouldBlock, trio.BrokenResourceError):
                pass

    def _fail_pending(self) -> None:
        for send in self._pending.values():
            send.close()


class AsyncDatabaseLike(Protocol):
    async def run(self, fn: Callable[..., Any], /, **kwargs: Any) -> Any: ...


@dataclasses.dataclass(eq=False)
class WorkerContext:
    """What a worker body gets: the agreed shape between processes and services.

    ``settings`` is replaced in place on reload (reference §3.4), so read it each time rather than caching
    values. ``wake`` is rung by wake-ups (enqueue, event, run-now); ``cycles`` is rung by run-now in
    test mode (reference §8.7); ``stopping`` is set when the worker must wind down, with ``grace`` seconds
    left for in-flight work (deadline ``stop_deadline`` on the trio clock).
    """

    kind: str
    index: int
    settings: Settings
    db: AsyncDatabaseLike
    link: SupervisorLink
    log: logging.Logger
    instance_key: bytes
    now: Callable[[], float] = time.time
    wake: Doorbell = dataclasses.field(default_factory=Doorbell)
    cycles: Doorbell = dataclasses.field(default_factory=Doorbell)
    stopping: trio.Event = dataclasses.field(default_factory=trio.Event)
    grace: float = 0.0
    stop_deadline: float = math.inf
    on_reload: list[Callable[[Settings], None]] = dataclasses.field(default_factory=list)
    # Called with the reason of every wake-up (``reload_bounce`` concerns only the bounce poller).
    on_wake: list[Callable[[str], None]] = dataclasses.field(default_factory=list)
    #: Random part of this run's lease owner, drawn once per process run (reference §8.3).
    run_token: str = dataclasses.field(default_factory=lambda: secrets.token_hex(8))

    @property
    def name(self) -> str:
        """``api``, ``reporter``, or ``sender-<index>`` (log lines, lease owners)."""
        return self.kind if self.kind != "sender" else f"sender-{self.index}"

    @property
    def owner(self) -> str:
        """Lease owner of this worker run (``core.owners``): unique per run, so a late result
        of a previous run of the same slot is refused; it starts with the node id, so a
        restarted node can release every lease of its own node at once (reference §8.3)."""
        return run_owner(self.settings.node_id, self.name, os.getpid(), self.run_token)

    def request_stop(self, grace: float) -> None:
        if self.stopping.is_set():
            # A second request only ever shortens the grace.
            self.stop_deadline = min(self.stop_deadline, trio.current_time() + grace)
            return
        self.grace = grace
        self.stop_deadline = trio.current_time() + grace
        self.stopping.set()
        # Loops blocked on a doorbell must notice the stop at once.
        self.wake.ring()
        self.cycles.ring()

    async def cycle_done(self) -> None:
        """Tell the supervisor this worker finished its test-mode cycle step (reference §8.7)."""
        await self.link.send({"type": "cycle_done"})


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

    settings = Settings.from_json(os.environ[SETTINGS_ENV])
    logsetup.set_level(settings.log_level)
    if settings.metrics_dir:
        from mailproxyd.drivers import metrics

        metrics.activate(settings.metrics_dir)
    fd = int(os.environ[FD_ENV])
    channel = Channel.from_socket(socket.socket(fileno=fd))
    first = await channel.receive()
    if first is None or first.get("type") != "init":
        log.error("no init message from the supervisor; exiting")
        return 1
    key = base64.urlsafe_b64decode(str(first["key"]) + "=")
    if isinstance(first.get("settings"), str):
        settings = Settings.from_json(first["settings"])
        logsetup.set_level(settings.log_level)
    link = SupervisorLink(channel)
    db = await _open_database(settings, key)
    ctx = WorkerContext(
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
        nursery.start_soon(_read_link, ctx, channel, nursery.cancel_scope)
        nursery.start_soon(_signals, ctx)
        # Heartbeats from the start: a worker that hangs while starting is caught too.
        nursery.start_soon(_heartbeats, link)
        try:
            await nursery.start(run_body)
        except FatalWorkerError as exc:
            log.error("%s", exc.message)
            await link.send({"type": "fatal", "message": exc.message})
            exit_code = EXIT_FATAL
        else:
            await link.send({"type": "ready"})
            # The body returns once it has wound down after a stop; then so do we.
            await body_done.wait()
        nursery.cancel_scope.cancel()
    await _close_database(db)
    return exit_code


class FatalWorkerError(MailProxyError):
    """Raised by a body before ``started()``: the node cannot work (e.g. port in use)."""


async def _read_link(ctx: WorkerContext, channel: Channel, scope: trio.CancelScope) -> None:
    link = ctx.link
    while True:
        message = await channel.receive()
        if message is None:
            break
        kind = message.get("type")
        if kind == "reply":
            link._deliver_reply(message)
        elif kind == "wake":
            reason = str(message.get("reason", "wake"))
            ctx.log.debug("woken (%s)", reason)
            ctx.wake.ring()
            for wake_hook in ctx.on_wake:
                wake_hook(reason)
        elif kind == "run_cycle":
            ctx.log.debug("run-now cycle requested")
            ctx.cycles.ring()
        elif kind == "reload":
            _apply_reload(ctx, message.get("settings"))
        elif kind == "stop":
            ctx.request_stop(float(message.get("grace", ctx.settings.shutdown_grace_seconds)))
    # End of the link: the supervisor is gone (or closed us). Wind down quickly; if the body
    # does not finish in time, leave anyway — leases expire or are released by the next start.
    link._fail_pending()
    ctx.log.warning("supervisor link closed; shutting down")
    ctx.request_stop(ORPHAN_GRACE_SECONDS)
    await trio.sleep(ORPHAN_GRACE_SECONDS + 1.0)
    scope.cancel()


def _apply_reload(ctx: WorkerContext, data: Any) -> None:
    from mailproxyd.settings import Settings

    if not isinstance(data, str):
        return
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
        await link.send({"type": "heartbeat"})
        await trio.sleep(HEARTBEAT_SECONDS)


async def _signals(ctx: WorkerContext) -> None:
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


async def _open_database(settings: Settings, key: bytes) -> AsyncDatabaseLike:
    from mailproxyd.core.crypto import SecretBox
    from mailproxyd.store import AsyncDatabase, open_database

    db = await trio.to_thread.run_sync(lambda: open_database(settings.database, box=SecretBox(key)))
    return AsyncDatabase(db)


async def _close_database(adb: AsyncDatabaseLike) -> None:
    inner = getattr(adb, "db", None) or getattr(adb, "_db", None)
    close = getattr(inner, "close", None)
    if callable(close):
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(close)
