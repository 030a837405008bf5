"""Records of uploaded large files (reference §11.8, §5.8) on both backends, and the trust markers."""

from __future__ import annotations

from mailproxyd.store import Database, largefiles, tenants

from .conftest import NOW


def test_records_are_found_by_id_listed_when_expired_and_forgotten(database: Database) -> None:
    with database.transaction() as tx:
        for n, expires in enumerate((NOW - 10, NOW + 10, NOW - 5)):
            largefiles.record(
                tx,
                f"{n:032x}",
                {
                    "tenant_id": "acme",
                    "url": f"file:///f/{n}",
                    "filename": "a.bin",
                    "size": 1,
                    "expires_at": expires,
                },
            )
        assert largefiles.get(tx, f"{1:032x}")["url"] == "file:///f/1"
        assert largefiles.get(tx, "f" * 32) is None
        due = largefiles.expired(tx, NOW)
        assert sorted(e["file_id"] for e in due) == [f"{0:032x}", f"{2:032x}"]
        largefiles.forget(tx, f"{0:032x}")
        assert [e["file_id"] for e in largefiles.expired(tx, NOW)] == [f"{2:032x}"]


def test_the_untrusted_url_marker_is_kept_and_not_shown(database: Database) -> None:
    with database.transaction() as tx:
        tenants.create_or_replace(tx, {"id": "acme", "client_base_url": "https://a.example"}, NOW)
        tenants.update(
            tx,
            "acme",
            {"client_base_url": "https://b.example", tenants.UNTRUSTED_URL_KEY: True},
            NOW,
        )
        assert tenants.get_for_sync(tx, "acme")[tenants.UNTRUSTED_URL_KEY] is True
        tenants.update(tx, "acme", {"name": "Acme"}, NOW)
        assert tenants.get_for_sync(tx, "acme")[tenants.UNTRUSTED_URL_KEY] is True
        tenants.update(tx, "acme", {tenants.UNTRUSTED_URL_KEY: None}, NOW)
        assert not tenants.get_for_sync(tx, "acme").get(tenants.UNTRUSTED_URL_KEY)
