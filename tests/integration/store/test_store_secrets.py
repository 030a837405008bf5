"""Secrets at rest (reference §2.5): nothing readable in the SQLite file or the PostgreSQL tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from mailproxyd.store import Database, Tx, accounts, meta, queue, tenants
from tests.dbfixtures import reset_pg_database

from .conftest import NOW, make_item

SECRETS = {
    "account password": "acct-pw-Zq81xLmN",
    "client_auth token": "tok-XYZ-123-Pw9c",
    "client_auth password": "basic-pw-Hh42kd",
    "signing secret": "whsec_3f9a2c0d9e8b7a61",
    "attachment token": "att-bearer-Yt55",
    "attachment password": "att-basic-Qq77",
    "bounce password": "imap-secret-Vv03",
}
API_KEY_MARKER = "api key"


def _delivery(tx: Tx, account_id: str) -> dict[str, Any]:
    account = accounts.get_for_delivery(tx, "acme", account_id)
    assert account is not None
    return account


def _store_every_secret(db: Database) -> str:
    with db.transaction() as tx:
        created = tenants.create_or_replace(
            tx,
            {
                "id": "acme",
                "client_base_url": "https://app.acme.example",
                "client_auth": {
                    "method": "bearer",
                    "token": SECRETS["client_auth token"],
                    "signing_secret": SECRETS["signing secret"],
                },
            },
            NOW,
        )
        tenants.create_or_replace(
            tx,
            {
                "id": "beta",
                "client_auth": {
                    "method": "basic",
                    "user": "u",
                    "password": SECRETS["client_auth password"],
                },
            },
            NOW,
        )
        accounts.create_or_replace(
            tx,
            "acme",
            {
                "id": "main",
                "host": "smtp.example.com",
                "port": 587,
                "user": "u",
                "password": SECRETS["account password"],
            },
            NOW,
        )
        attachments = [
            {
                "filename": "a",
                "storage_path": "https://x/a",
                "auth": {"method": "bearer", "token": SECRETS["attachment token"]},
            },
            {
                "filename": "b",
                "storage_path": "https://x/b",
                "auth": {
                    "method": "basic",
                    "user": "u",
                    "password": SECRETS["attachment password"],
                },
            },
        ]
        queue.enqueue(tx, "acme", [make_item("m", attachments=attachments)], [], NOW)
        meta.update_instance(tx, {"bounce_imap_password": SECRETS["bounce password"]}, NOW)
        meta.set_scheduler_active(tx, True)
    api_key = created["api_key"]
    assert api_key
    return api_key


def _assert_readable_through_the_store(db: Database) -> None:
    with db.transaction() as tx:
        assert _delivery(tx, "main")["password"] == SECRETS["account password"]
        sync_view = tenants.get_for_sync(tx, "acme")
        assert (
            sync_view is not None
            and sync_view["client_auth"]["token"] == SECRETS["client_auth token"]
        )
        (row,) = queue.claim_batch(tx, "acme", "main", "n/s", 1, NOW, 120)
        assert (
            row["payload"]["attachments"][1]["auth"]["password"] == SECRETS["attachment password"]
        )
        assert (
            meta.get_instance_for_bounce(tx)["bounce_imap_password"] == SECRETS["bounce password"]
        )


def test_sqlite_file_holds_no_secret_in_clear(acme_free_sqlite: tuple[Database, Path]) -> None:
    db, path = acme_free_sqlite
    api_key = _store_every_secret(db)
    _assert_readable_through_the_store(db)
    db.close()  # checkpoint the WAL into the main file
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert b"smtp.example.com" in raw  # the scan does see the stored data
    for label, secret in {**SECRETS, API_KEY_MARKER: api_key}.items():
        assert secret.encode() not in raw, label


@pytest.mark.postgres
def test_postgres_tables_hold_no_secret_in_clear(
    pg_session_database: Database, pg_session_url: str
) -> None:
    database, db_url = pg_session_database, pg_session_url
    reset_pg_database(database)
    api_key = _store_every_secret(database)
    _assert_readable_through_the_store(database)
    with psycopg.connect(db_url) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        dump = "\n".join(
            str(row)
            for table in tables
            for row in conn.execute(f"SELECT * FROM {table}").fetchall()
        )
    assert "smtp.example.com" in dump
    for label, secret in {**SECRETS, API_KEY_MARKER: api_key}.items():
        assert secret not in dump, label
