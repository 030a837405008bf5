"""The supervisor: one per node, in the invoking process (``mailproxyd``, ``mail-proxy serve``,
``mail-proxy start NAME --foreground``).

It runs the start-up checks, binds the control socket, starts the api, sender and reporter
workers as separate processes and keeps them running (reference §2.2), relays wake-ups between them and,
with PostgreSQL, to and from the other nodes (reference §8.6), orders test-mode cycles (reference §8.7), talks to
systemd (reference §18.1), handles signals (reference §18.2) and orders the shutdown (reference §18.3).

Exit codes (reference §18.4): 0 clean shutdown, 1 fatal runtime error, 2 configuration error or refusal.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import trio

from mailproxyd import __version__, logsetup
from mailproxyd.control.server import SocketInUse, bind_control_socket, serve_control
from mailproxyd.core.owners import run_prefix
from mailproxyd.drivers.sdnotify import Notifier
from mailproxyd.errors import ConfigError, DatabaseUnavailable, MailProxyError, StartRefused
from mailproxyd.settings import Settings
from mailproxyd.store import AsyncDatabase, meta
from mailproxyd.supervision import handlers, startup
from mailproxyd.supervision.channel import ChannelClosed, Message
from mailproxyd.supervision.peers import Peers
from mailproxyd.supervision.table import Kind, WorkerSlot, WorkerTable
from mailproxyd.supervision.workerproc import kill_slot, stop_slot, supervise_slot
from mailproxyd.workers._runtime import SETTINGS_ENV

NODE_HEARTBEAT_SECONDS = 5.0
# The API gets this long for requests in progress at shutdown (reference §18.3 step 1).
API_GRACE_SECONDS = 10.0
# Test mode: the reporter starts its cycle when every sender is done, or after this (reference §8.7).
CYCLE_SENDER_WAIT_SECONDS = 60.0
# A worker is "overdue" for the systemd watchdog after this long without a heartbeat.
WORKER_OVERDUE_SECONDS = 15.0

_log = logsetup.get_logger("supervisor")


class NodeFailed(MailProxyError):
    """The node stopped because of a fatal runtime error (exit code 1)."""


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for a start-up failure (reference §18.4)."""
    if isinstance(exc, ConfigError | StartRefused):
        return 2
    return 1


class Supervisor:
    """One node's supervisor; ``run`` returns the exit code."""

    def __init__(
        self,
        settings: Settings,
        db: AsyncDatabase,
        key: bytes,
        *,
        notifier: Notifier,
        socket_path: str,
        log_to_file: bool = False,
        environ: dict[str, str] | None = None,
        scheduler_active: bool | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self._key = key
        self.notifier = notifier
        self.socket_path = socket_path
        self.table = WorkerTable(settings.sender_processes)
        self.started_at = int(time.time())
        self._log_to_file = log_to_file
        self._environ = dict(os.environ if environ is None else environ)
        self._shutting_down = False
        self._stop = trio.Event()
        self._stop_grace: float | None = None
        self._exit_code = 0
        self._fatal: str | None = None
        self._nursery: trio.Nursery | None = None
        self._status_changed = trio.Event()
        self._reload_lock = trio.Lock()
        self._scheduler_active = scheduler_active
        self._cycle_send, self._cycle_receive = trio.open_memory_channel[None](1)
        self._peers = Peers(settings.database, settings.node_id, enabled=settings.is_postgres)
        self._ready = False

    # ------------------------------------------------------------------ SlotHost

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def pipe_worker_stderr(self) -> bool:
        return self._log_to_file

    def instance_key(self) -> bytes:
        return self._key

    def worker_settings(self) -> str:
        """The resolved settings, secrets included, as sent in a worker's ``init`` message."""
        return self.settings.to_json()

    def worker_environment(self) -> dict[str, str]:
        # No secret in a worker's environment (reference §2.2): it is readable through /proc/<pid>/environ
        # and inherited by anything the worker spawns. The secret-bearing variables are left
        # out, and so are the secrets of the environment copy of the settings; the full
        # settings come over the link (``init``).
        env = {k: v for k, v in self._environ.items() if k not in SECRET_VARIABLES}
        if "GMP_DB_PATH" in env and _without_password(env["GMP_DB_PATH"]) is None:
            del env["GMP_DB_PATH"]  # a database URL given the SQLite way, password and all
        env[SETTINGS_ENV] = dataclasses.replace(
            self.settings,
            api_token=None,
            metrics_token=None,
            secret_key=None,
            database_url=None,
            db_path=_without_password(self.settings.db_path),
            database=_without_password(self.settings.database) or "",
        ).to_json()
        # Workers are not the service's main process: keep systemd's sockets to ourselves.
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"):
            env.pop(name, None)
        env["GMP_LOG_LEVEL"] = self.settings.log_level
        # Workers find the package the way the supervisor did, even from a source checkout.
        package_root = str(Path(__file__).resolve().parent.parent)
        path = env.get("PYTHONPATH", "")
        if package_root not in path.split(os.pathsep):
            env["PYTHONPATH"] = package_root + (os.pathsep + path if path else "")
        return env

    def slot_changed(self, slot: WorkerSlot) -> None:
        self._status_changed.set()

    def worker_fatal(self, slot: WorkerSlot, message: str) -> None:
        _log.error("%s", message)
        if self._fatal is None:
            self._fatal = message
        self._exit_code = 1
        self.request_stop(None)

    async def release_run(self, slot: WorkerSlot, pid: int) -> None:
        """Release the leases, session slots and reporter locks of a worker run that ended."""
        prefix = run_prefix(self.settings.node_id, slot.name, pid)
        try:
            released, failed = await self.db.run(startup.release_owner_prefix, prefix, time.time())
        except MailProxyError as exc:
            _log.warning("could not release the leases of %s: %s", slot.name, exc.message)
            return
        from mailproxyd.drivers import metrics

        metrics.lease_failures(failed)
        if released:
            _log.info("released %d lease(s) of %s (pid %d)", released, slot.name, pid)

    async def worker_exited(self, slot: WorkerSlot, pid: int) -> None:
        """Keep a finished worker's counts in the node's metrics, in the archive (reference §14)."""
        from mailproxyd.drivers import metrics

        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(metrics.fold_dead, self.settings.metrics_dir, pid)
            except OSError as exc:
                _log.warning("cannot fold the metrics of %s (pid %d): %s", slot.name, pid, exc)

    def write_worker_log(self, line: str) -> None:
        handler = logsetup.file_handler()
        if handler is not None:
            handler.write_raw(line)
        else:
            print(line, file=sys.stderr, flush=True)

    async def on_worker_message(self, slot: WorkerSlot, message: Message) -> None:
        kind = message.get("type")
        if kind == "wake":
            await self.on_wake_message(message)
        elif kind == "call" and self._nursery is not None:
            self._nursery.start_soon(self._answer_call, slot, message)

    # ------------------------------------------------------------------ public operations

    def request_stop(self, grace: float | None) -> None:
        """Begin the ordered shutdown (idempotent); ``grace`` overrides the configured one."""
        if grace is not None:
            self._stop_grace = grace
        self._stop.set()

    async def status(self) -> dict[str, Any]:
        """The result of the control method ``status`` (reference §17)."""
        from mailproxyd.instance import url_for

        try:
            active = bool(await self.db.run(meta.get_scheduler_active, write=False))
            self._scheduler_active = active
        except DatabaseUnavailable:
            active = bool(self._scheduler_active)
        return {
            "scheduler_active": active,
            "test_mode": bool(self.settings.test_mode),
            "version": __version__,
            "node": self.settings.node_id,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "url": url_for(self.settings.host, self.settings.port),
            "workers": self.table.counts(),
        }

    def service_context(self) -> handlers.ServiceContext:
        return handlers.ServiceContext(self.settings, self.db, handlers.LocalLink(self), _log)

    async def trigger_run_now(self, tenant_id: str | None = None) -> None:
        """Wake every sender and reporter here and on every other node (reference §5.2, §8.6)."""
        await self._wake_local("all", "run_now")
        await self._peers.publish("run_now", tenant_id)

    async def on_wake_message(self, message: Message) -> None:
        """A wake-up from a worker (or from a service running in the supervisor)."""
        if message.get("type") != "wake":
            return
        target = str(message.get("target") or "all")
        reason = str(message.get("reason") or "wake")
        await self._wake_local(target, reason)
        if target in ("sender", "all") and reason in ("enqueue", "run_now", "activate"):
            tenant_id = message.get("tenant_id")
            await self._peers.publish(reason, tenant_id if isinstance(tenant_id, str) else None)

    async def reload(self) -> dict[str, Any]:
        """Apply reference §3.4: re-read the files, hand the result to the workers, resize senders."""
        from mailproxyd.settings import reload_settings

        async with self._reload_lock:
            self.notifier.reloading("reloading configuration")
            try:
                try:
                    new, changed, restart = reload_settings(self.settings)
                except ConfigError as exc:
                    _log.error("reload failed, configuration unchanged: %s", exc.message)
                    raise
                self.settings = new
                logsetup.set_level(new.log_level)
                if restart:
                    _log.warning(
                        "changed settings need a restart to take effect: %s", ", ".join(restart)
                    )
                _log.info("configuration reloaded; changed: %s", ", ".join(changed) or "nothing")
                await self._broadcast({"type": "reload", "settings": new.to_json()})
                if new.sender_processes != self.table.expected_senders:
                    self._resize_senders(new.sender_processes)
            finally:
                self.notifier.ready(self._status_line())
        return {"reloaded": True, "changed": changed, "restart_required": restart}

    # ------------------------------------------------------------------ the run

    async def run(self, control_sock: trio.socket.SocketType) -> int:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._signals)
                await nursery.start(
                    serve_control,
                    control_sock,
                    lambda method, params: handlers.handle_control(self, method, params),
                )
                for slot in self.table:
                    nursery.start_soon(supervise_slot, self, slot)
                nursery.start_soon(self._node_heartbeats)
                if await self._wait_until_ready():
                    self._became_ready()
                    nursery.start_soon(self._status_updates)
                    nursery.start_soon(self._watchdog)
                    nursery.start_soon(self._test_cycles)
                    nursery.start_soon(self._peers.listen, self._remote_wake)
                    await self._stop.wait()
                await self._shutdown()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._cleanup()
        if self._fatal is not None:
            raise NodeFailed(self._fatal)
        return self._exit_code

    async def _wait_until_ready(self) -> bool:
        """Wait for every worker's "ready" and a 200 from the API's ``/status``.

        ``/status`` rather than ``/health``: it proves the whole path a client uses — the
        listener, the application, authentication, the database and the link back to us.
        """
        from mailproxyd.instance import url_for

        url = url_for(self.settings.host, self.settings.port) + "/status"
        headers = {"X-API-Token": self.settings.api_token or ""}
        async with httpx.AsyncClient(timeout=2.0, trust_env=False, headers=headers) as client:
            while not self._stop.is_set():
                if self.table.all_running():
                    try:
                        answer = await client.get(url)
                        if answer.status_code == 200:
                            return True
                    except httpx.HTTPError:
                        pass
                with trio.move_on_after(0.05):
                    await self._stop.wait()
        return False

    def _became_ready(self) -> None:
        self._ready = True
        if self.settings.mode == "instance" and self.settings.instance_dir:
            from mailproxyd.instance import write_pid_file

            write_pid_file(
                Path(self.settings.instance_dir),
                pid=os.getpid(),
                host=self.settings.host,
                port=self.settings.port,
                socket_path=self.socket_path,
                started_at=self.started_at,
            )
        from mailproxyd.settings import masked_url

        host = str(self.settings.host)
        bound = f"[{host}]" if ":" in host and not host.startswith("[") else host
        _log.info(
            "mail-proxy %s ready: node %s, database %s, listening on %s, %d sender(s)",
            __version__,
            self.settings.node_id,
            masked_url(self.settings.database),
            f"{bound}:{self.settings.port}",
            self.table.expected_senders,
        )
        self.notifier.ready(self._status_line())

    async def _shutdown(self) -> None:
        """reference §18.3: API and senders first (senders stop claiming at once), then the reporter."""
        self._shutting_down = True
        grace = (
            self._stop_grace
            if self._stop_grace is not None
            else float(self.settings.shutdown_grace_seconds)
        )
        self.notifier.stopping("stopping")
        _log.info("shutting down (grace %g s)", grace)
        deadline = trio.current_time() + grace
        if not self._ready:
            # The node never served (a fatal start error, or a stop during start-up): workers
            # still starting hold no work yet, so there is nothing to wait for.
            for slot in self.table:
                if slot.state == "starting":
                    kill_slot(slot)
        async with trio.open_nursery() as nursery:
            for slot in self.table.of_kind("api"):
                nursery.start_soon(stop_slot, slot, min(API_GRACE_SECONDS, grace))
            for slot in self.table.of_kind("sender"):
                nursery.start_soon(stop_slot, slot, grace)
        remaining = max(1.0, deadline - trio.current_time())
        for slot in self.table.of_kind("reporter"):
            await stop_slot(slot, remaining)

    async def _cleanup(self) -> None:
        await self._peers.aclose()
        await startup.forget_node(self.db, self.settings.node_id)
        if self.settings.mode == "instance" and self.settings.instance_dir:
            from mailproxyd.instance import remove_pid_file

            remove_pid_file(Path(self.settings.instance_dir))
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        _log.info("stopped")

    # ------------------------------------------------------------------ background tasks

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    if self._nursery is not None and not self._shutting_down:
                        self._nursery.start_soon(self._reload_quietly)
                    continue
                if self._stop.is_set():
                    _log.warning("second stop signal: killing the workers")
                    for slot in self.table:
                        kill_slot(slot)
                    self._exit_code = 1
                    if self._nursery is not None:
                        self._nursery.cancel_scope.cancel()
                    return
                _log.info("received %s", signal.Signals(signum).name)
                self.request_stop(None)

    async def _reload_quietly(self) -> None:
        try:
            await self.reload()
        except ConfigError:
            pass  # already logged; the running configuration stays

    async def _node_heartbeats(self) -> None:
        while True:
            await trio.sleep(NODE_HEARTBEAT_SECONDS)
            try:
                alive = await self.db.run(meta.heartbeat_node, self.settings.node_id, time.time())
                self._scheduler_active = bool(
                    await self.db.run(meta.get_scheduler_active, write=False)
                )
            except MailProxyError as exc:
                _log.warning("node heartbeat failed: %s", exc.message)
                continue
            if not alive:
                _log.error("this node's row has been removed from the database")
            self._status_changed.set()

    async def _status_updates(self) -> None:
        last = ""
        while True:
            await self._status_changed.wait()
            self._status_changed = trio.Event()
            line = self._status_line()
            if line != last and not self._shutting_down:
                self.notifier.status(line)
                last = line
            await trio.sleep(0.2)  # coalesce bursts (a restart changes several states)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            now = trio.current_time()
            overdue = [
                s.name
                for s in self.table
                if s.process is not None and now - s.last_heartbeat > WORKER_OVERDUE_SECONDS
            ]
            if not overdue:
                self.notifier.watchdog()
            await trio.sleep(interval)

    async def _test_cycles(self) -> None:
        """Test mode (reference §8.7): senders until idle, then one report cycle; one run at a time."""
        async for _ in self._cycle_receive:
            senders = [s for s in self.table.of_kind("sender") if s.channel is not None]
            for slot in senders:
                slot.cycle_done = trio.Event()
            await self._send_to(senders, {"type": "run_cycle"})
            with trio.move_on_after(CYCLE_SENDER_WAIT_SECONDS):
                for slot in senders:
                    await slot.cycle_done.wait()
            _log.debug("test-mode cycle: senders done, starting the report cycle")
            reporters = [s for s in self.table.of_kind("reporter") if s.channel is not None]
            for slot in reporters:
                slot.cycle_done = trio.Event()
            await self._send_to(reporters, {"type": "run_cycle"})
            with trio.move_on_after(CYCLE_SENDER_WAIT_SECONDS * 2):
                for slot in reporters:
                    await slot.cycle_done.wait()
            _log.debug("test-mode cycle finished")

    def _remote_wake(self, wake: dict[str, Any]) -> None:
        if self._nursery is None:
            return
        reason = str(wake.get("reason"))
        target = "all" if reason == "run_now" else "sender"
        self._nursery.start_soon(self._wake_local, target, reason)

    # ------------------------------------------------------------------ helpers

    async def _wake_local(self, target: str, reason: str) -> None:
        if reason == "run_now" and self.settings.test_mode:
            # In test mode a run-now is a cycle, never a mere wake-up; rapid repeats coalesce.
            try:
                self._cycle_send.send_nowait(None)
            except trio.WouldBlock:
                pass
            return
        targets: dict[str, tuple[Kind, ...]] = {"sender": ("sender",), "reporter": ("reporter",)}
        kinds = targets.get(target, ("sender", "reporter"))
        slots = [s for s in self.table if s.kind in kinds]
        await self._send_to(slots, {"type": "wake", "reason": reason})

    async def _broadcast(self, message: Message) -> None:
        await self._send_to(list(self.table), message)

    async def _send_to(self, slots: Sequence[WorkerSlot], message: Message) -> None:
        for slot in slots:
            channel = slot.channel
            if channel is None:
                continue
            # A worker that does not drain its link must not stall the supervisor.
            with trio.move_on_after(1.0):
                try:
                    await channel.send(message)
                except ChannelClosed:
                    pass

    async def _answer_call(self, slot: WorkerSlot, message: Message) -> None:
        from mailproxyd.control.protocol import error_from_exception

        call_id = message.get("id")
        method = str(message.get("method") or "")
        raw_params = message.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        reply: Message
        try:
            result = await handlers.handle_link_call(self, method, params)
            reply = {"type": "reply", "id": call_id, "result": result}
        except Exception as exc:
            code, text = error_from_exception(exc)
            reply = {"type": "reply", "id": call_id, "error": {"code": code, "message": text}}
        channel = slot.channel
        if channel is not None:
            try:
                await channel.send(reply)
            except ChannelClosed:
                pass

    def _resize_senders(self, count: int) -> None:
        added, retired = self.table.resize_senders(count)
        _log.info("sender processes: %d", count)
        if self._nursery is None:
            return
        for slot in added:
            self._nursery.start_soon(supervise_slot, self, slot)
        for slot in retired:
            self._nursery.start_soon(self._retire, slot)

    async def _retire(self, slot: WorkerSlot) -> None:
        await stop_slot(slot, float(self.settings.shutdown_grace_seconds))
        self.table.forget(slot)
        self._status_changed.set()

    def _status_line(self) -> str:
        counts = self.table.counts()
        if self._scheduler_active is None:
            scheduler = ""
        else:
            scheduler = "; scheduler " + ("active" if self._scheduler_active else "inactive")
        return (
            f"serving on {self.settings.host}:{self.settings.port}; "
            f"senders {counts['sender']['running']}/{counts['sender']['expected']}; "
            f"reporter {counts['reporter']['running']}/{counts['reporter']['expected']}"
            f"{scheduler}"
        )


# ---------------------------------------------------------------------- entry points


#: Variables that carry secrets; workers get their values over the link instead (reference §2.2).
SECRET_VARIABLES = frozenset(
    {"GMP_API_TOKEN", "GMP_SECRET_KEY", "GMP_METRICS_TOKEN", "GMP_DATABASE_URL"}
)


def _without_password(db_path: str | None) -> str | None:
    """``db_path`` unless it is a database URL with a password (then ``None``)."""
    if db_path and "://" in db_path and "@" in db_path.split("://", 1)[1].split("/", 1)[0]:
        return None
    return db_path


async def _run(settings: Settings, log_to_file: bool) -> int:
    from mailproxyd.drivers import metrics
    from mailproxyd.instance import control_socket_path

    notifier = Notifier()
    notifier.status("starting")
    opened = await startup.prepare_node(settings)
    try:
        path = control_socket_path(settings)
        try:
            control_sock = await bind_control_socket(path)
        except (SocketInUse, OSError) as exc:
            raise NodeFailed(f"cannot bind the control socket {path}: {exc}") from None
        # The node's counts start at zero: files left by an earlier run are stale. Only now,
        # with the control socket ours, is no other node of this name using the directory.
        await trio.to_thread.run_sync(metrics.reset_directory, settings.metrics_dir)
        # Use cases run here too (control methods, the CLI): their counts join the node's.
        metrics.activate(settings.metrics_dir)
        metrics.lease_failures(opened.lease_failures)
        sup = Supervisor(
            settings,
            opened.db,
            opened.key,
            notifier=notifier,
            socket_path=path,
            log_to_file=log_to_file,
            scheduler_active=opened.scheduler_active,
        )
        try:
            return await sup.run(control_sock)
        finally:
            control_sock.close()
    finally:
        await trio.to_thread.run_sync(opened.db.db.close)
        notifier.close()


def run_node(settings: Settings, *, log_file: Path | None = None) -> int:
    """Run a node in this process until it stops; return its exit code.

    Raises ``ConfigError``/``StartRefused`` (exit 2), ``DatabaseUnavailable``/``NodeFailed``
    (exit 1) for failures the caller reports as ``error: <message>``.
    """
    logsetup.configure(
        "supervisor",
        settings.log_level,
        file=log_file,
        journal=logsetup.stderr_is_journal(settings.environ),
    )
    return trio.run(_run, settings, log_file is not None)
