"""Group commit: several callers' store functions in one transaction, each in a savepoint.

One commit (one fsync on SQLite with ``synchronous = FULL``, one WAL flush on PostgreSQL) for
many requests is what lets ingest go faster than one commit per request. Each call still
succeeds or fails on its own (reference §4.5): a call that raises is rolled back to its savepoint
and gets its error, and the others commit. A failure of the transaction itself (a lost lock race
that ``Database.run`` could not retry away, a failed commit) is not any one call's fault: the calls
are then run again one transaction each, so each gets its own answer. When the database is
unreachable (or full), every call gets that error at once instead: retrying them one by one would
only make each of them wait for the outage again, and nothing of them was applied.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from mailproxyd.errors import DatabaseUnavailable, MailProxyError

from .database import Database, TransientConflict, Tx, translate_psycopg, translate_sqlite

#: A call's result and its exception (exactly one of the two is meaningful).
Outcome = tuple[Any, BaseException | None]

_SAVEPOINT = "grouped_call"


def run_grouped(db: Database, calls: Sequence[Callable[[Tx], Any]]) -> list[Outcome]:
    """Run every ``call(tx)`` in one write transaction; per call its result or its exception."""
    if not calls:
        return []
    try:
        return db.run(_in_savepoints, calls)
    except Exception as exc:
        if len(calls) == 1:
            return [(None, exc)]
        # ``Database.run`` reports a lock race it could not retry away as unavailability too;
        # that one is the group's doing, and the calls alone may well succeed.
        if isinstance(exc, DatabaseUnavailable) and not isinstance(
            exc.__cause__, TransientConflict
        ):
            return [(None, exc), *((None, DatabaseUnavailable(exc.message)) for _ in calls[1:])]
    return [_alone(db, call) for call in calls]


def _alone(db: Database, call: Callable[[Tx], Any]) -> Outcome:
    try:
        return db.run(call), None
    except Exception as exc:
        return None, exc


def _in_savepoints(tx: Tx, calls: Sequence[Callable[[Tx], Any]]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for call in calls:
        tx.raw(f"SAVEPOINT {_SAVEPOINT}")
        try:
            value = call(tx)
        except Exception as exc:
            error = _translated(tx, exc)
            if isinstance(error, TransientConflict | DatabaseUnavailable):
                # The transaction as a whole is in trouble: the original exception goes up so
                # the database layer handles it as for any transaction (retry, outage, health).
                raise
            tx.raw(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            tx.raw(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            outcomes.append((None, error))
        else:
            tx.raw(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            outcomes.append((value, None))
    return outcomes


def _translated(tx: Tx, exc: Exception) -> Exception:
    """The mail-proxy error a driver exception stands for (others unchanged)."""
    if isinstance(exc, MailProxyError):
        return exc
    if isinstance(exc, sqlite3.Error):
        return translate_sqlite(exc)
    if tx.backend == "postgres":
        import psycopg

        if isinstance(exc, psycopg.Error):
            return translate_psycopg(exc)
    return exc
