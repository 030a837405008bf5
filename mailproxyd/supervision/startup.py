"""The start-up checks of a node, before any worker runs (reference §2.5, §2.6, §3.2, §8.3, §18.5).

Open and migrate the database (retrying for 30 s while it is unreachable), resolve the instance
key against the database's fingerprint, apply ``GMP_SCHEDULER_ACTIVE``, check the admin token,
register the node row (take-over rule) and release the leases its previous run left behind.
Each refusal is the exception whose message the reference fixes; the caller maps it to an exit
code.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from typing import Any

import trio

from mailproxyd.core.crypto import SecretBox, fingerprint
from mailproxyd.core.owners import node_prefix
from mailproxyd.errors import DatabaseUnavailable, MailProxyError, StartRefused
from mailproxyd.instance import pid_alive
from mailproxyd.logsetup import get_logger
from mailproxyd.settings import Settings
from mailproxyd.store import AsyncDatabase, Database, Tx, meta, open_database

DATABASE_RETRY_SECONDS = 30.0
_log = get_logger("supervisor")


class NoAdminToken(StartRefused):
    """no admin token configured: set GMP_API_TOKEN or create the instance with mail-proxy start"""


@dataclasses.dataclass
class OpenedNode:
    db: AsyncDatabase
    key: bytes
    scheduler_active: bool
    released_leases: int
    #: Messages the release failed (their third expiry), to count once metrics are active.
    lease_failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)


async def open_with_retry(settings: Settings) -> Database:
    """Open (and migrate) the database, retrying for 30 s while it is unreachable (reference §2.6).

    The ``SecretBox`` is a placeholder until the key is resolved: nothing secret is read or
    written before ``prepare_node`` swaps in the real one.
    """
    placeholder = SecretBox(bytes(32))
    deadline = trio.current_time() + DATABASE_RETRY_SECONDS
    delay = 0.5
    while True:
        try:
            return await trio.to_thread.run_sync(
                lambda: open_database(settings.database, box=placeholder)
            )
        except DatabaseUnavailable as exc:
            if trio.current_time() + delay > deadline:
                raise DatabaseUnavailable(f"{exc.message} (gave up after 30 s)") from None
            _log.warning("%s; retrying", exc.message)
            await trio.sleep(delay)
            delay = min(delay * 2, 5.0)


def refuse_before_opening(settings: Settings) -> None:
    """The refusals (exit 2) that need no database: no admin token, and, for a SQLite file
    that does not exist yet, an unusable key file. Nothing is written."""
    from mailproxyd.instance import resolve_instance_key

    if settings.api_token is None:
        raise NoAdminToken()
    if not settings.is_postgres and not os.path.exists(settings.database.removeprefix("sqlite:")):
        resolve_instance_key(settings, None, create=False)


def _prepare(db: Database, settings: Settings) -> OpenedNode:
    from mailproxyd.instance import resolve_instance_key

    stored = db.run(meta.get_key_fingerprint, write=False)
    key = resolve_instance_key(settings, stored)
    db.box = SecretBox(key)

    def setup(tx: Tx) -> tuple[bool, tuple[int, list[dict[str, Any]]]]:
        if meta.get_key_fingerprint(tx) is None:
            meta.set_key_fingerprint(tx, fingerprint(key))
            if settings.mode == "instance":
                # ``mail-proxy start`` creates instances with the scheduler active (reference §3.2); the
                # first start of an instance is the one that finds no fingerprint yet.
                meta.set_scheduler_active(tx, True)
        if settings.scheduler_active is not None:
            meta.set_scheduler_active(tx, settings.scheduler_active)
        meta.register_node(
            tx,
            settings.node_id,
            socket.gethostname(),
            os.getpid(),
            time.time(),
            pid_alive,
        )
        return meta.get_scheduler_active(tx), _release_node_leases(tx, settings.node_id)

    active, (released, failed) = db.run(setup)
    return OpenedNode(AsyncDatabase(db), key, active, released, failed)


def _release_node_leases(tx: Tx, node_id: str) -> tuple[int, list[dict[str, Any]]]:
    """Release every lease of this node id at once (reference §8.3); each counts as an expiry.
    Returns the leases released and the messages that failed instead."""
    from mailproxyd.store import bounces, gauges, leases, sessions
    from mailproxyd.store import report as store_report

    failed: list[dict[str, Any]] = []
    outcome = leases.release_node(tx, node_id, time.time(), failed)
    # Owners are unique per worker run: session slots, reporter and bounce-poll locks of the
    # previous run would otherwise wait out their lease.
    sessions.release_owner(tx, node_id)
    store_report.unlock_prefix(tx, node_prefix(node_id))
    bounces.release_prefix(tx, node_prefix(node_id))
    released = int(outcome.get("returned", 0)) + int(outcome.get("failed", 0))
    return released, gauges.with_tenant_names(tx, failed)


def release_owner_prefix(tx: Tx, prefix: str, now: float) -> tuple[int, list[dict[str, Any]]]:
    """Free what the owners starting with ``prefix`` held: message leases (each counting as an
    expiry, reference §8.3), concurrent-session slots, reporter and bounce-poll locks. Returns the leases
    released and the messages that failed instead (with their tenant's name, for the metrics)."""
    from mailproxyd.store import bounces, gauges, leases, sessions
    from mailproxyd.store import report as store_report

    failed: list[dict[str, Any]] = []
    outcome = leases.release_run(tx, prefix, now, failed)
    sessions.release_prefix(tx, prefix)
    store_report.unlock_prefix(tx, prefix)
    bounces.release_prefix(tx, prefix)
    released = int(outcome.get("returned", 0)) + int(outcome.get("failed", 0))
    return released, gauges.with_tenant_names(tx, failed)


async def prepare_node(settings: Settings) -> OpenedNode:
    """Run every start-up check; raises ``StartRefused``/``ConfigError``/``DatabaseUnavailable``.

    A refused start creates nothing (no database file, no key file): what can be checked
    without the database is checked before it is opened or created.
    """
    refuse_before_opening(settings)
    db = await open_with_retry(settings)
    try:
        opened = await trio.to_thread.run_sync(_prepare, db, settings)
    except BaseException:
        db.close()
        raise
    if opened.released_leases:
        _log.info("released %d lease(s) left by this node's previous run", opened.released_leases)
    if not opened.scheduler_active:
        _log.warning("the scheduler is inactive: nothing is dispatched until it is activated")
    return opened


async def forget_node(db: AsyncDatabase, node_id: str) -> None:
    """Delete the node row at a clean exit (reference §18.3 step 4); a failure is only logged."""
    try:
        await db.run(meta.delete_node, node_id)
    except MailProxyError as exc:
        _log.warning("could not delete the node row: %s", exc.message)
