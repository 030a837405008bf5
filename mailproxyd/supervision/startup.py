"""The start-up checks of a node, before any worker runs (§2.5, §2.6, §3.2, §8.3, §18.5).

Open and migrate the database (retrying for 30 s while it is unreachable), resolve the instance
key against the database's fingerprint, apply ``GMP_SCHEDULER_ACTIVE``, check the admin token,
register the node row (take-over rule) and release the leases its previous run left behind.
Each refusal is the exception whose message the contract fixes; the caller maps it to an exit
code.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time

import trio

from mailproxyd.core.crypto import SecretBox, fingerprint
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


async def open_with_retry(settings: Settings) -> Database:
    """Open (and migrate) the database, retrying for 30 s while it is unreachable (§2.6).

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


def _prepare(db: Database, settings: Settings) -> OpenedNode:
    from mailproxyd.instance import resolve_instance_key

    stored = db.run(meta.get_key_fingerprint, write=False)
    key = resolve_instance_key(settings, stored)
    db.box = SecretBox(key)
    if settings.api_token is None:
        raise NoAdminToken()

    def setup(tx: Tx) -> tuple[bool, int]:
        if meta.get_key_fingerprint(tx) is None:
            meta.set_key_fingerprint(tx, fingerprint(key))
            if settings.mode == "instance":
                # ``mail-proxy start`` creates instances with the scheduler active (§3.2); the
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

    active, released = db.run(setup)
    return OpenedNode(AsyncDatabase(db), key, active, released)


def _release_node_leases(tx: Tx, node_id: str) -> int:
    """Release every lease of this node id at once (§8.3); each counts as an expiry."""
    from mailproxyd.store import leases

    outcome = leases.release_node(tx, node_id, time.time())
    return int(outcome.get("returned", 0)) + int(outcome.get("failed", 0))


async def prepare_node(settings: Settings) -> OpenedNode:
    """Run every start-up check; raises ``StartRefused``/``ConfigError``/``DatabaseUnavailable``."""
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
    """Delete the node row at a clean exit (§18.3 step 4); a failure is only logged."""
    try:
        await db.run(meta.delete_node, node_id)
    except MailProxyError as exc:
        _log.warning("could not delete the node row: %s", exc.message)
