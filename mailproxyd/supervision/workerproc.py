"""Owning one worker slot: spawn its process, read its link, watch its heartbeat, restart it.

Each worker runs as ``python -m mailproxyd.workers.<kind> --index N`` via ``trio.run_process``,
with one end of a ``socketpair`` inherited as its link. A worker silent for 30 s is killed
(SIGKILL) and, like a worker that crashed, restarted after the back-off of reference §2.2. A worker that
exits with ``EXIT_FATAL`` (say, its port is taken) is not restarted: the host gives up.
"""

from __future__ import annotations

import base64
import logging
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from typing import Any, Protocol

import trio

from mailproxyd.logsetup import get_logger
from mailproxyd.supervision import backoff
from mailproxyd.supervision.channel import Channel, ChannelClosed, Message
from mailproxyd.supervision.table import WorkerSlot
from mailproxyd.workers._runtime import EXIT_FATAL, FD_ENV

HEARTBEAT_TIMEOUT_SECONDS = 30.0
# After a stop request, how long beyond its grace a worker may take before it is killed.
STOP_MARGIN_SECONDS = 5.0


class SlotHost(Protocol):
    """What a slot needs from the supervisor."""

    @property
    def shutting_down(self) -> bool: ...

    def worker_environment(self) -> dict[str, str]: ...

    def instance_key(self) -> bytes: ...

    def worker_settings(self) -> str: ...

    async def on_worker_message(self, slot: WorkerSlot, message: Message) -> None: ...

    def slot_changed(self, slot: WorkerSlot) -> None: ...

    def worker_fatal(self, slot: WorkerSlot, message: str) -> None: ...

    async def release_run(self, slot: WorkerSlot, pid: int) -> None: ...

    def write_worker_log(self, line: str) -> None: ...

    @property
    def pipe_worker_stderr(self) -> bool: ...

    async def worker_exited(self, slot: WorkerSlot, pid: int) -> None: ...


async def _kill(process: trio.Process) -> None:
    # Only used when the supervisor itself is being torn down; the graceful path is a "stop"
    # message over the link, handled in ``stop_slot``.
    process.kill()


async def supervise_slot(host: SlotHost, slot: WorkerSlot) -> None:
    """Keep ``slot`` running until the node shuts down or the slot is retired."""
    log = _logger()
    while not host.shutting_down and not slot.retired:
        began = time.monotonic()
        code = await _run_once(host, slot)
        if slot.pid is not None:
            await host.worker_exited(slot, slot.pid)
            # What the dead run held is free at once, before the slot runs again (reference §18.4).
            # A clean exit too: a release the run could not write (the database away at that
            # moment) would otherwise hold its session slots until their lease lapses.
            await host.release_run(slot, slot.pid)
        if host.shutting_down or slot.retired:
            break
        if code == EXIT_FATAL or slot.fatal is not None:
            host.worker_fatal(slot, slot.fatal or f"{slot.name} cannot start")
            break
        slot.failures = backoff.next_failure_count(slot.failures, time.monotonic() - began)
        delay = backoff.restart_delay(slot.failures)
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        log.warning("worker %s %s; restarting in %g s", slot.name, how, delay)
        slot.state = "restarting"
        slot.pid = None
        host.slot_changed(slot)
        with trio.move_on_after(delay):
            # Two unrelated conditions can cut the back-off short; a 0.1 s look is plenty.
            while not (host.shutting_down or slot.retired):  # noqa: ASYNC110
                await trio.sleep(0.1)
        slot.restarts += 1


async def _run_once(host: SlotHost, slot: WorkerSlot) -> int:
    """Start the slot's process and return its exit status once it has exited."""
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = host.worker_environment()
    env[FD_ENV] = str(child_sock.fileno())
    command = [sys.executable, "-m", f"mailproxyd.workers.{slot.kind}", "--index", str(slot.index)]
    slot.ready = trio.Event()
    slot.exited = trio.Event()
    slot.fatal = None
    slot.state = "starting"
    options: dict[str, Any] = {
        "env": env,
        "pass_fds": (child_sock.fileno(),),
        "stdin": subprocess.DEVNULL,
        "check": False,
        "deliver_cancel": _kill,
    }
    if host.pipe_worker_stderr:
        options["stderr"] = subprocess.PIPE
    channel = Channel.from_socket(parent_sock)
    try:
        async with trio.open_nursery() as nursery:
            try:
                process: trio.Process = await nursery.start(
                    partial(trio.run_process, command, **options)
                )
            finally:
                child_sock.close()
            slot.process = process
            slot.pid = process.pid
            slot.started_at = int(time.time())
            slot.last_heartbeat = trio.current_time()
            slot.channel = channel
            host.slot_changed(slot)
            key = base64.urlsafe_b64encode(host.instance_key()).rstrip(b"=").decode()
            try:
                # Secrets travel over the link, never in the environment (/proc/<pid>/environ).
                await channel.send({"type": "init", "key": key, "settings": host.worker_settings()})
            except ChannelClosed:
                pass
            reader_done = trio.Event()
            nursery.start_soon(_read_link, host, slot, channel, reader_done)
            nursery.start_soon(_watch_heartbeat, slot, process)
            if process.stderr is not None:
                nursery.start_soon(_pump_stderr, host, process.stderr)
            await process.wait()
            # Let the link reader consume the worker's last messages (e.g. "fatal") before the
            # heartbeat watch and anything else still running is cancelled.
            with trio.move_on_after(2):
                await reader_done.wait()
            nursery.cancel_scope.cancel()
    finally:
        slot.channel = None
        slot.process = None
        slot.exited.set()
        slot.cycle_done.set()
        with trio.CancelScope(shield=True):
            await channel.aclose()
    return int(process.returncode if process.returncode is not None else -signal.SIGKILL)


async def _read_link(host: SlotHost, slot: WorkerSlot, channel: Channel, done: trio.Event) -> None:
    try:
        await _dispatch_link(host, slot, channel)
    finally:
        done.set()


async def _dispatch_link(host: SlotHost, slot: WorkerSlot, channel: Channel) -> None:
    while True:
        message = await channel.receive()
        if message is None:
            return
        slot.last_heartbeat = trio.current_time()
        kind = message.get("type")
        if kind == "ready":
            if slot.state == "starting":
                slot.state = "running"
            slot.ready.set()
            host.slot_changed(slot)
        elif kind == "fatal":
            slot.fatal = str(message.get("message") or f"{slot.name} cannot start")
        elif kind == "cycle_done":
            _logger().debug("%s finished its test-mode cycle step", slot.name)
            slot.cycle_done.set()
        elif kind != "heartbeat":
            await host.on_worker_message(slot, message)


async def _watch_heartbeat(slot: WorkerSlot, process: trio.Process) -> None:
    while process.returncode is None:
        await trio.sleep(1.0)
        silent = trio.current_time() - slot.last_heartbeat
        if silent > HEARTBEAT_TIMEOUT_SECONDS and slot.state != "stopping":
            _logger().error(
                "worker %s (pid %s) silent for %d s; killing it", slot.name, process.pid, silent
            )
            process.kill()
            return


async def _pump_stderr(host: SlotHost, stream: trio.abc.ReceiveStream) -> None:
    buf = b""
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            host.write_worker_log(line.decode("utf-8", "replace"))
    if buf:
        host.write_worker_log(buf.decode("utf-8", "replace"))


async def stop_slot(slot: WorkerSlot, grace: float) -> None:
    """Ask the slot's worker to stop within ``grace`` seconds; kill it if it overstays."""
    slot.state = "stopping"
    channel = slot.channel
    if channel is not None:
        try:
            await channel.send({"type": "stop", "grace": grace})
        except ChannelClosed:
            pass
    with trio.move_on_after(grace + STOP_MARGIN_SECONDS) as scope:
        await slot.exited.wait()
    if scope.cancelled_caught and slot.process is not None:
        _logger().warning("worker %s did not stop in time; killing it", slot.name)
        slot.process.kill()
        with trio.move_on_after(5):
            await slot.exited.wait()


def kill_slot(slot: WorkerSlot) -> None:
    """SIGKILL the slot's process at once (second signal during shutdown, reference §18.2)."""
    if slot.process is not None and slot.process.returncode is None:
        slot.process.kill()


def _logger() -> logging.Logger:
    return get_logger("supervisor")
