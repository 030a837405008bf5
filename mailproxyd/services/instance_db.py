"""Opening an instance's database outside a node, for the command line (reference §15.1).

Data commands work on the database directly, whether or not a node serves it. The database is
opened (and migrated) like a node's start-up does, with the instance key checked against the
database's fingerprint (reference §2.5); a database no node has opened yet gets what a first start would
give it: the key's fingerprint and an active scheduler (reference §3.2).
"""

from __future__ import annotations

from mailproxyd.core.crypto import SecretBox, fingerprint
from mailproxyd.instance import resolve_instance_key
from mailproxyd.settings import Settings
from mailproxyd.store import AsyncDatabase, Tx, meta, open_database


def _first_use(tx: Tx, key: bytes) -> None:
    if meta.get_key_fingerprint(tx) is None:
        meta.set_key_fingerprint(tx, fingerprint(key))
        meta.set_scheduler_active(tx, True)


def open_instance_database(settings: Settings) -> AsyncDatabase:
    """The instance's database with its secrets readable; the caller closes ``.db``."""
    db = open_database(settings.database, box=SecretBox(bytes(32)))
    try:
        stored = db.run(meta.get_key_fingerprint, write=False)
        key = resolve_instance_key(settings, stored)
        db.box = SecretBox(key)
        if stored is None:
            db.run(_first_use, key)
    except BaseException:
        db.close()
        raise
    return AsyncDatabase(db)
