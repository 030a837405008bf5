"""Tenants, API keys, suspensions and accounts (reference §5.2, §5.4, §5.5)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from mailproxyd.errors import Conflict, NotFound
from mailproxyd.store import Database, Tx, accounts, queue, tenants
from mailproxyd.store import messages as store_messages

from .conftest import NOW, make_item, setup_tenant

ACME = {
    "id": "acme",
    "name": "ACME Corp",
    "client_base_url": "https://app.acme.example",
    "client_auth": {
        "method": "bearer",
        "token": "tok-XYZ-123",
        "signing_secret": "whsec_3f9a2c0d9e8b7a61",
    },
    "rate_limits": {"hourly": 2000},
}


def _delivery(tx: Tx, account_id: str) -> dict[str, Any]:
    account = accounts.get_for_delivery(tx, "acme", account_id)
    assert account is not None
    return account


def test_create_get_replace_keeps_key(database: Database) -> None:
    with database.transaction() as tx:
        created = tenants.create_or_replace(tx, ACME, NOW)
        assert created["created"] is True and len(created["api_key"]) == 43
        tenant = tenants.get(tx, "acme")
    assert tenant["client_auth"] == {
        "method": "bearer",
        "token_set": True,
        "signing_secret_set": True,
    }
    assert tenant["client_sync_path"] == "/mail-proxy/sync"
    assert tenant["client_attachment_path"] == "/mail-proxy/attachments"
    assert tenant["rate_limits"] == {"hourly": 2000} and tenant["active"] is True
    assert tenant["api_key_set"] is True and tenant["suspended_batches"] == []
    assert tenant["created_at"] == NOW and tenant["name"] == "ACME Corp"
    with database.transaction() as tx:
        replaced = tenants.create_or_replace(tx, {"id": "acme", "name": "New"}, NOW + 1)
        assert replaced == {"created": False, "api_key": None}
        tenant = tenants.get(tx, "acme")
        assert (tenants.find_by_api_key(tx, created["api_key"], NOW) or {})["id"] == "acme"
    assert tenant["client_auth"] == {"method": "none"} and tenant["rate_limits"] is None
    assert tenant["client_base_url"] is None and tenant["updated_at"] == NOW + 1
    assert tenant["created_at"] == NOW


def test_partial_update_merges_client_auth(database: Database) -> None:
    with database.transaction() as tx:
        tenants.create_or_replace(tx, ACME, NOW)
        tenants.update(
            tx,
            "acme",
            {
                "client_auth": {
                    "token": "tok-NEW-456",
                    "token_set": True,
                    "signing_secret_set": True,
                }
            },
            NOW,
        )
        sync_view = tenants.get_for_sync(tx, "acme")
        tenants.update(
            tx, "acme", {"client_auth": {"signing_secret": None}, "rate_limits": None}, NOW
        )
        after = tenants.get(tx, "acme")
    assert sync_view is not None
    assert sync_view["client_auth"] == {
        "method": "bearer",
        "token": "tok-NEW-456",
        "signing_secret": "whsec_3f9a2c0d9e8b7a61",
    }
    assert after["client_auth"] == {"method": "bearer", "token_set": True}
    assert after["rate_limits"] is None and after["name"] == "ACME Corp"


def test_list_and_active_only(database: Database) -> None:
    with database.transaction() as tx:
        tenants.create_or_replace(tx, {"id": "b"}, NOW)
        tenants.create_or_replace(tx, {"id": "a", "active": False}, NOW)
        assert [t["id"] for t in tenants.list_tenants(tx)] == ["a", "b"]
        assert [t["id"] for t in tenants.list_tenants(tx, active_only=True)] == ["b"]
        assert tenants.count(tx) == 2 and tenants.count(tx, "a") == 1


def test_api_keys_issue_revoke_expire(database: Database) -> None:
    with database.transaction() as tx:
        first = tenants.create_or_replace(tx, {"id": "acme"}, NOW)["api_key"]
        second = tenants.issue_api_key(tx, "acme", NOW, expires_at=NOW + 100)
        assert tenants.find_by_api_key(tx, first, NOW) is None
        found = tenants.find_by_api_key(tx, second, NOW + 99)
        assert found is not None and found["api_key_expires_at"] == NOW + 100
        assert tenants.find_by_api_key(tx, second, NOW + 100) is None
        tenants.revoke_api_key(tx, "acme", NOW)
        assert tenants.find_by_api_key(tx, second, NOW) is None
        assert tenants.get(tx, "acme")["api_key_set"] is False
        with pytest.raises(NotFound):
            tenants.issue_api_key(tx, "ghost", NOW)
        # The key is only kept as its SHA-256 digest.
        from mailproxyd.core.crypto import digest_api_key

        third = tenants.issue_api_key(tx, "acme", NOW)
        assert tx.raw("SELECT api_key_digest FROM tenants") == [
            {"api_key_digest": digest_api_key(third)}
        ]


def test_unknown_tenant_errors(database: Database) -> None:
    with database.transaction() as tx:
        for call in (
            lambda: tenants.get(tx, "ghost"),
            lambda: tenants.update(tx, "ghost", {"name": "x"}, NOW),
            lambda: tenants.delete(tx, "ghost"),
            lambda: tenants.suspend(tx, "ghost", None, NOW),
            lambda: queue.enqueue(tx, "ghost", [make_item("m1")], [], NOW),
            lambda: accounts.create_or_replace(
                tx, "ghost", {"id": "a", "host": "h", "port": 25}, NOW
            ),
        ):
            with pytest.raises(NotFound) as info:
                call()
            assert info.value.code == "tenant_not_found"
            assert info.value.message == "Tenant 'ghost' not found"


def test_delete_tenant_cascades(database: Database) -> None:
    setup_tenant(database, "acme")
    setup_tenant(database, "beta")
    with database.transaction() as tx:
        queue.enqueue(
            tx, "acme", [make_item("m1")], [{"id": "r", "reason": "missing to", "priority": 2}], NOW
        )
        queue.enqueue(tx, "beta", [make_item("m1")], [], NOW)
        tenants.suspend(tx, "acme", "b", NOW)
        tenants.delete(tx, "acme")
        assert tenants.exists(tx, "acme") is False
        assert store_messages.stats(tx, NOW)["messages"]["pending"] == 1
        assert store_messages.stats(tx, NOW)["messages"]["error"] == 0
        for table in ("accounts", "messages", "events", "suspensions"):
            rows = tx.raw(f"SELECT count(*) AS n FROM {table} WHERE tenant_id = 'acme'")
            assert rows[0]["n"] == 0, table


def test_tenant_deleted_while_a_batch_is_being_enqueued_leaves_no_messages(
    database: Database,
) -> None:
    # messages.tenant_id has no foreign key: the store's own locks must keep the rule.
    setup_tenant(database, "acme")
    enqueuing = threading.Event()
    deleted: list[BaseException | None] = []

    def delete() -> None:
        enqueuing.wait(5)
        try:
            database.run(tenants.delete, "acme")
            deleted.append(None)
        except BaseException as exc:  # reported by the assertion below
            deleted.append(exc)

    worker = threading.Thread(target=delete)
    worker.start()
    with database.transaction() as tx:
        queue.enqueue(tx, "acme", [make_item(f"m{i}") for i in range(50)], [], NOW)
        enqueuing.set()
        worker.join(0.3)
        assert worker.is_alive()  # the deletion waits for the enqueue to commit
    worker.join(10)
    assert deleted == [None]
    with database.transaction(write=False) as tx:
        rows = tx.raw("SELECT count(*) AS n FROM messages WHERE tenant_id = 'acme'")
        assert rows[0]["n"] == 0
        with pytest.raises(NotFound):
            queue.enqueue(tx, "acme", [make_item("late")], [], NOW)


def test_suspension_rules(acme: Database) -> None:
    with acme.transaction() as tx:
        queue.enqueue(
            tx,
            "acme",
            [
                make_item("a", batch_code="spring"),
                make_item("b", batch_code="autumn"),
                make_item("c"),
            ],
            [],
            NOW,
        )
        state = tenants.suspend(tx, "acme", "spring", NOW)
        assert state == {
            "tenant_id": "acme",
            "batch_code": "spring",
            "suspended_batches": ["spring"],
            "pending_messages": 1,
        }
        assert tenants.suspend(tx, "acme", "autumn", NOW)["suspended_batches"] == [
            "autumn",
            "spring",
        ]
        whole = tenants.suspend(tx, "acme", None, NOW)
        assert whole["suspended_batches"] == ["*"] and whole["pending_messages"] == 3
        assert tenants.suspend(tx, "acme", "winter", NOW)["suspended_batches"] == ["*"]
        with pytest.raises(Conflict) as info:
            tenants.activate(tx, "acme", "spring", NOW)
        assert info.value.message == (
            "cannot activate batch 'spring' while the whole tenant is suspended; activate the tenant first"
        )
        cleared = tenants.activate(tx, "acme", None, NOW)
        assert cleared["suspended_batches"] == [] and cleared["pending_messages"] == 3
        assert tenants.activate(tx, "acme", "never", NOW)["suspended_batches"] == []


def test_accounts_crud_and_password_rules(acme: Database) -> None:
    with acme.transaction() as tx:
        assert accounts.create_or_replace(
            tx,
            "acme",
            {
                "id": "smtp1",
                "host": "h",
                "port": 587,
                "user": "u",
                "password": "app-password",
                "limit_per_minute": 30,
            },
            NOW,
        )
        account = accounts.get(tx, "acme", "smtp1")
        assert account["password_set"] is True and "password" not in account
        assert account["limit_per_minute"] == 30 and account["is_default"] is False
        assert _delivery(tx, "smtp1")["password"] == "app-password"
        # Replacement without password keeps it; absent fields return to defaults.
        assert not accounts.create_or_replace(
            tx, "acme", {"id": "smtp1", "host": "h2", "port": 25}, NOW + 1
        )
        account = _delivery(tx, "smtp1")
        assert account["password"] == "app-password" and "limit_per_minute" not in account
        assert (
            account["host"] == "h2"
            and account["created_at"] == NOW
            and account["updated_at"] == NOW + 1
        )
        accounts.create_or_replace(
            tx, "acme", {"id": "smtp1", "host": "h2", "port": 25, "password": None}, NOW
        )
        assert accounts.get(tx, "acme", "smtp1")["password_set"] is False
        accounts.update(
            tx, "acme", "smtp1", {"password": "p2", "limit_per_day": 5, "port": None}, NOW
        )
        account = _delivery(tx, "smtp1")
        assert (
            account["password"] == "p2" and account["limit_per_day"] == 5 and "port" not in account
        )
        accounts.update(tx, "acme", "smtp1", {"password": None}, NOW)
        assert accounts.get(tx, "acme", "smtp1")["password_set"] is False
        assert [a["id"] for a in accounts.list_accounts(tx, "acme")] == ["main", "smtp1"]
        with pytest.raises(NotFound) as info:
            accounts.get(tx, "acme", "smtp9")
        assert info.value.code == "account_not_found"
        assert info.value.message == "Account 'smtp9' not found for tenant 'acme'"
        assert accounts.get_for_delivery(tx, "acme", "smtp9") is None


def test_default_account(acme: Database) -> None:
    with acme.transaction() as tx:
        assert accounts.default_account_id(tx, "acme") == "main"  # the only account
        accounts.create_or_replace(tx, "acme", {"id": "b", "host": "h", "port": 25}, NOW)
        assert accounts.default_account_id(tx, "acme") is None
        accounts.create_or_replace(
            tx, "acme", {"id": "b", "host": "h", "port": 25, "is_default": True}, NOW
        )
        assert accounts.default_account_id(tx, "acme") == "b"
        accounts.update(tx, "acme", "main", {"is_default": True}, NOW)
        assert accounts.default_account_id(tx, "acme") == "main"
        assert accounts.get(tx, "acme", "b")["is_default"] is False
        assert accounts.account_ids(tx, "acme") == {"main", "b"}
        assert accounts.count(tx) == 2 and accounts.count(tx, "nobody") == 0
