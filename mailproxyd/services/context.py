"""The one context every use case and loop of ``services/`` runs in, whatever the process.

A worker process (api, sender, reporter) builds one in ``workers._runtime``; the supervisor builds
one for the control methods it serves (``supervision.handlers``); tests build their own. What
only one kind of process has is an optional, typed part of it: ``reporting`` (the reporter's
HTTP client, metrics observer and extra sweeps) and ``bounce`` (the bounce poller's options).

``settings`` is replaced in place on reload (reference §3.4), so read it each time rather than
caching values. ``wake`` is rung by wake-ups (enqueue, event, run-now); ``cycles`` is rung by
run-now in test mode (reference §8.7); ``stopping`` is set when the process must wind down, with
``grace`` seconds left for in-flight work (deadline ``stop_deadline`` on the trio clock).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio

from mailproxyd.core.owners import run_owner

if TYPE_CHECKING:
    from mailproxyd.core.report import Outcome
    from mailproxyd.drivers.http import ReportClient
    from mailproxyd.settings import Settings
    from mailproxyd.store import AsyncDatabase


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
        with trio.move_on_after(max(0.0, at_most)):
            await self._event.wait()
        rung = self._event.is_set()
        if rung:
            self._event = trio.Event()
        return rung


class Link(Protocol):
    """The way back to the supervisor (``workers._runtime.SupervisorLink`` in a worker,
    ``supervision.handlers.LocalLink`` in the supervisor itself)."""

    async def wake(self, target: str, reason: str, tenant_id: str | None = None) -> None:
        """Ask the supervisor to wake ``sender``, ``reporter`` or ``all`` workers of every node."""

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a control method (reference §17) in the supervisor and return its result."""
        ...

    async def cycle_done(self) -> None:
        """Tell the supervisor this process finished its test-mode cycle step (reference §8.7)."""


#: Metrics hook of the report cycle: (tenant_id, outcome, duration seconds).
ReportObserver = Callable[[str, "Outcome", float], None]
#: A sweep run right after retention, called with ``now``.
Sweep = Callable[[float], Awaitable[object]]


@dataclasses.dataclass(eq=False)
class Reporting:
    """What only the reporter has: its HTTP client, a metrics observer, extra sweeps.

    ``extra_sweeps`` run right after retention (the expired large-file sweep, reference §8.7
    step 2); a failing one is logged and does not stop the others.
    """

    client: ReportClient
    observe: ReportObserver | None = None
    extra_sweeps: list[Sweep] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False)
class BounceOptions:
    """How the bounce poller reaches the mailbox, and whom it tells about new events."""

    on_recorded: Callable[[], None] | None = None  # new events: wake the reporter
    timeout: float = 30.0  # per IMAP operation
    cafile: str | None = None  # tests; production trusts the system store / SSL_CERT_FILE
    ssl_context_factory: Callable[[], ssl.SSLContext] | None = None


@dataclasses.dataclass(eq=False)
class ServiceContext:
    """What a use case or a worker loop gets: the agreed shape between processes and services."""

    settings: Settings
    db: AsyncDatabase
    link: Link
    log: logging.Logger
    kind: str = "supervisor"
    index: int = 0
    instance_key: bytes = b""
    #: Lease owner of this process run; derived from the node, the name and the run token
    #: when not given (tests and benchmarks give their own).
    owner: str = ""
    now: Callable[[], float] = time.time
    wake: Doorbell = dataclasses.field(default_factory=Doorbell)
    cycles: Doorbell = dataclasses.field(default_factory=Doorbell)
    stopping: trio.Event = dataclasses.field(default_factory=trio.Event)
    grace: float = 0.0
    stop_deadline: float = math.inf
    on_reload: list[Callable[[Settings], None]] = dataclasses.field(default_factory=list)
    #: Called with the reason of every wake-up (``reload_bounce`` concerns only the bounce poller).
    on_wake: list[Callable[[str], None]] = dataclasses.field(default_factory=list)
    #: Random part of this run's lease owner, drawn once per process run (reference §8.3).
    run_token: str = dataclasses.field(default_factory=lambda: secrets.token_hex(8))
    reporting: Reporting | None = None
    bounce: BounceOptions = dataclasses.field(default_factory=BounceOptions)

    def __post_init__(self) -> None:
        if not self.owner:
            # Unique per run, so a late result of a previous run of the same slot is refused;
            # it starts with the node id, so a restarted node can release every lease of its
            # own node at once (reference §8.3).
            self.owner = run_owner(
                self.settings.node_id, self.process_name, os.getpid(), self.run_token
            )

    @property
    def process_name(self) -> str:
        """``api``, ``reporter``, ``supervisor`` or ``sender-<index>`` (log lines, lease owners)."""
        return self.kind if self.kind != "sender" else f"sender-{self.index}"

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
        """Tell the supervisor this process finished its test-mode cycle step (reference §8.7)."""
        await self.link.cycle_done()

    def reporter(self) -> Reporting:
        """The reporter's part; a context without one cannot run the report cycle."""
        if self.reporting is None:
            raise RuntimeError(f"{self.process_name}: this context has no report client")
        return self.reporting
