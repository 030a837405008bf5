"""Tenant, account and instance payloads (reference §4.4, §5.4–§5.6, §10.1, §11.8)."""

from __future__ import annotations

from typing import Any

import pytest

from mailproxyd.core.models.account import (
    derive_tls_mode,
    present_account,
    tls_conflict,
    use_tls_of,
    validate_account,
    validate_account_update,
    with_account_defaults,
)
from mailproxyd.core.models.instance import (
    API_TOKEN_REFUSAL,
    present_instance,
    validate_instance_update,
)
from mailproxyd.core.models.tenant import present_tenant, validate_tenant, validate_tenant_update
from mailproxyd.errors import ValidationFailed


def errors_of(fn: Any, body: Any, **kw: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as failed:
        fn(body, **kw)
    return failed.value.errors


ACCOUNT = {
    "id": "smtp1",
    "tenant_id": "acme",
    "host": "smtp.example.com",
    "port": 587,
    "user": "mailer@acme.example",
    "password": "app-password",
    "tls_mode": "starttls",
    "limit_per_minute": 30,
    "limit_per_hour": 500,
    "limit_per_day": 1000,
    "is_default": True,
}


# --- accounts -------------------------------------------------------------------------------


def test_account_contract_example() -> None:
    assert validate_account(ACCOUNT) == {
        "id": "smtp1",
        "host": "smtp.example.com",
        "port": 587,
        "user": "mailer@acme.example",
        "tls_mode": "starttls",
        "limit_per_minute": 30,
        "limit_per_hour": 500,
        "limit_per_day": 1000,
        "tls_verify": True,
        "limit_behavior": "defer",
        "max_concurrent": 3,
        "ttl": 300,
        "is_default": True,
        "password": "app-password",
    }


def test_account_defaults_and_password_absent() -> None:
    account = validate_account({"id": "a", "host": "10.0.0.1", "port": 25, "limit_per_day": 0})
    assert "password" not in account  # absent keeps a stored password on replacement
    assert "batch_size" not in account
    assert account["tls_mode"] == "opportunistic"
    assert account["limit_per_day"] is None  # 0 means unlimited
    assert account["user"] is None
    assert (
        validate_account({"id": "a", "host": "h", "port": 25, "password": None})["password"] is None
    )
    assert (
        validate_account({"id": "a", "host": "h", "port": 25, "batch_size": 10})["batch_size"] == 10
    )


def test_account_legacy_and_read_only_fields_are_ignored() -> None:
    body = {
        "id": "a",
        "host": "h.example",
        "port": 25,
        "is_pec_account": True,
        "imap_host": "imap.example",
        "imap_port": 993,
        "imap_user": "u",
        "imap_password": "p",
        "imap_ssl": True,
        "password_set": True,
        "created_at": "2026-01-01T00:00:00",
    }
    account = validate_account(body)
    assert not any(key.startswith("imap") or key == "is_pec_account" for key in account)


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"port": "abc"}, [("port", "must be an integer between 1 and 65535")]),
        ({"port": 0}, [("port", "must be an integer between 1 and 65535")]),
        ({"port": 65536}, [("port", "must be an integer between 1 and 65535")]),
        ({"port": True}, [("port", "must be an integer between 1 and 65535")]),
        ({"host": ""}, [("host", "must be a host name or IP address")]),
        ({"host": "bad host"}, [("host", "must be a host name or IP address")]),
        (
            {"id": "-x"},
            [
                (
                    "id",
                    "must be 1-64 characters from A-Z a-z 0-9 _ - . starting with a letter or digit",
                )
            ],
        ),
        (
            {"tls_mode": "ssl"},
            [("tls_mode", "must be one of none, opportunistic, starttls, implicit")],
        ),
        ({"use_tls": "yes"}, [("use_tls", "must be a boolean")]),
        (
            {"limit_per_minute": -1},
            [("limit_per_minute", "must be an integer between 0 and 9007199254740991")],
        ),
        ({"limit_behavior": "drop"}, [("limit_behavior", "must be one of defer, reject")]),
        ({"batch_size": 0}, [("batch_size", "must be an integer between 1 and 10000")]),
        ({"max_concurrent": 51}, [("max_concurrent", "must be an integer between 1 and 50")]),
        ({"ttl": 5}, [("ttl", "must be an integer between 10 and 3600")]),
        ({"password": 5}, [("password", "must be a string")]),
        ({"colour": "red"}, [("colour", "unknown field")]),
        ({"use_tls": True, "tls_mode": "none"}, [("use_tls", "conflicts with tls_mode 'none'")]),
        (
            {"use_tls": False, "tls_mode": "opportunistic"},
            [("use_tls", "conflicts with tls_mode 'opportunistic'")],
        ),
    ],
)
def test_account_field_errors(patch: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    body = {"id": "a", "host": "h.example", "port": 587, **patch}
    assert errors_of(validate_account, body) == expected


def test_account_required_and_all_errors_listed() -> None:
    assert errors_of(validate_account, {}) == [
        ("id", "required"),
        ("host", "required"),
        ("port", "required"),
    ]
    found = errors_of(validate_account, {"id": "a", "host": "h", "port": 0, "ttl": 1, "x": 1})
    # Unknown fields first, then the field rules in body order.
    assert found == [
        ("x", "unknown field"),
        ("port", "must be an integer between 1 and 65535"),
        ("ttl", "must be an integer between 10 and 3600"),
    ]
    with pytest.raises(ValidationFailed) as failed:
        validate_account({"id": "a", "host": "h", "port": "abc"})
    assert str(failed.value) == "port: must be an integer between 1 and 65535"
    assert errors_of(validate_account, [1]) == [
        ("", "must be an object"),
        ("id", "required"),
        ("host", "required"),
        ("port", "required"),
    ]


@pytest.mark.parametrize(
    ("use_tls", "port", "mode"),
    [
        (True, 465, "implicit"),
        (True, 587, "starttls"),
        (False, 465, "none"),
        (False, 25, "none"),
        (None, 465, "implicit"),
        (None, 587, "opportunistic"),
    ],
)
def test_tls_derivation_table(use_tls: bool | None, port: int, mode: str) -> None:
    assert derive_tls_mode(None, use_tls, port) == mode
    body: dict[str, Any] = {"id": "a", "host": "h", "port": port}
    if use_tls is not None:
        body["use_tls"] = use_tls
    assert validate_account(body)["tls_mode"] == mode
    assert "use_tls" not in validate_account(body)


def test_tls_conflicts_and_use_tls_of() -> None:
    assert tls_conflict("none", True) and tls_conflict("starttls", False)
    assert tls_conflict("implicit", False) and tls_conflict("opportunistic", False)
    assert not tls_conflict("starttls", True) and not tls_conflict("none", False)
    assert not tls_conflict(None, True) and not tls_conflict("none", None)
    assert (
        use_tls_of("starttls"),
        use_tls_of("implicit"),
        use_tls_of("none"),
        use_tls_of("opportunistic"),
    ) == (True, True, False, None)
    assert (
        validate_account(
            {"id": "a", "host": "h", "port": 465, "use_tls": True, "tls_mode": "starttls"}
        )["tls_mode"]
        == "starttls"
    )


def test_account_update() -> None:
    assert validate_account_update(
        {"limit_per_minute": 60, "limit_per_day": None}, account_id="smtp1"
    ) == {
        "limit_per_minute": 60,
        "limit_per_day": None,
    }
    assert validate_account_update({"password": None}, account_id="a") == {"password": None}
    assert validate_account_update({"password": "new"}, account_id="a") == {"password": "new"}
    assert validate_account_update({"ttl": None, "max_concurrent": None}, account_id="a") == {
        "ttl": 300,
        "max_concurrent": 3,
    }
    assert (
        validate_account_update({"id": "a", "imap_host": "x", "created_at": "…"}, account_id="a")
        == {}
    )
    assert errors_of(validate_account_update, {"id": "b"}, account_id="a") == [
        ("id", "cannot be changed")
    ]
    assert errors_of(validate_account_update, {"port": None}, account_id="a") == [
        ("port", "required")
    ]
    assert errors_of(validate_account_update, {"port": 0, "zz": 1}, account_id="a") == [
        ("zz", "unknown field"),
        ("port", "must be an integer between 1 and 65535"),
    ]


def test_account_update_tls() -> None:
    stored = {"port": 465, "tls_mode": "opportunistic"}
    assert validate_account_update({"use_tls": True}, account_id="a", current=stored) == {
        "tls_mode": "implicit"
    }
    assert validate_account_update({"use_tls": True}, account_id="a") == {"tls_mode": "starttls"}
    assert validate_account_update({"use_tls": False}, account_id="a") == {"tls_mode": "none"}
    # A use_tls that agrees with the stored mode keeps it.
    assert (
        validate_account_update(
            {"use_tls": True}, account_id="a", current={"port": 465, "tls_mode": "starttls"}
        )
        == {}
    )
    assert validate_account_update({"tls_mode": None, "port": 465}, account_id="a") == {
        "port": 465,
        "tls_mode": "implicit",
    }
    assert validate_account_update({"tls_mode": None}, account_id="a", current={"port": 587}) == {
        "tls_mode": "opportunistic"
    }
    assert errors_of(
        validate_account_update, {"tls_mode": "none", "use_tls": True}, account_id="a"
    ) == [("use_tls", "conflicts with tls_mode 'none'")]


def test_present_account() -> None:
    stored = {
        "id": "smtp1",
        "tenant_id": "acme",
        "host": "smtp.example.com",
        "port": 587,
        "user": "mailer@acme.example",
        "password_set": True,
        "tls_mode": "starttls",
        "limit_per_minute": 30,
        "limit_per_hour": 500,
        "limit_per_day": 1000,
        "is_default": True,
        "created_at": 1767225600.0,
        "updated_at": 1767225600.5,
    }
    assert present_account(stored) == {
        "id": "smtp1",
        "tenant_id": "acme",
        "host": "smtp.example.com",
        "port": 587,
        "user": "mailer@acme.example",
        "password_set": True,
        "tls_mode": "starttls",
        "use_tls": True,
        "tls_verify": True,
        "limit_per_minute": 30,
        "limit_per_hour": 500,
        "limit_per_day": 1000,
        "limit_behavior": "defer",
        "max_concurrent": 3,
        "ttl": 300,
        "is_default": True,
        "created_at": "2026-01-01T00:00:00",
        "updated_at": "2026-01-01T00:00:00",
    }
    bare = present_account(
        {
            "id": "a",
            "tenant_id": "t",
            "host": "h",
            "port": 25,
            "password": "secret",
            "batch_size": 7,
        }
    )
    assert "password" not in bare and bare["password_set"] is True
    assert "use_tls" not in bare and bare["tls_mode"] == "opportunistic" and bare["batch_size"] == 7
    assert present_account({"id": "a", "host": "h", "port": 465})["use_tls"] is True
    assert (
        present_account({"id": "a", "host": "h", "port": 25, "tls_mode": "none"})["use_tls"]
        is False
    )
    assert present_account({"id": "a", "host": "h", "port": 25})["password_set"] is False
    assert with_account_defaults({"port": 465})["tls_mode"] == "implicit"


# --- tenants --------------------------------------------------------------------------------

TENANT = {
    "id": "acme",
    "name": "ACME Corp",
    "client_base_url": "https://app.acme.example",
    "client_sync_path": "/mail-proxy/sync",
    "client_attachment_path": "/mail-proxy/attachments",
    "client_auth": {
        "method": "bearer",
        "token": "tok-XYZ-123",
        "signing_secret": "whsec_3f9a2c0d9e8b7a61",
    },
    "rate_limits": {"hourly": 2000},
}


def test_tenant_contract_example() -> None:
    assert validate_tenant(TENANT) == {
        "id": "acme",
        "name": "ACME Corp",
        "client_base_url": "https://app.acme.example",
        "client_sync_path": "/mail-proxy/sync",
        "client_attachment_path": "/mail-proxy/attachments",
        "client_auth": {
            "method": "bearer",
            "token": "tok-XYZ-123",
            "signing_secret": "whsec_3f9a2c0d9e8b7a61",
        },
        "rate_limits": {"hourly": 2000},
        "large_file_config": None,
        "active": True,
    }


def test_tenant_defaults() -> None:
    assert validate_tenant({"id": "t"}) == {
        "id": "t",
        "name": None,
        "client_base_url": None,
        "client_sync_path": "/mail-proxy/sync",
        "client_attachment_path": "/mail-proxy/attachments",
        "client_auth": {"method": "none"},
        "rate_limits": None,
        "large_file_config": None,
        "active": True,
    }
    # A GET body can be posted back: read-only keys and *_set flags are ignored.
    echoed = validate_tenant(
        {
            "id": "t",
            "client_auth": {"method": "basic", "user": "u", "password": "p", "password_set": True},
            "suspended_batches": [],
            "api_key_set": True,
            "created_at": "2026-01-01T00:00:00",
        }
    )
    assert echoed["client_auth"] == {"method": "basic", "user": "u", "password": "p"}


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"id": None}, [("id", "required")]),
        (
            {"id": "a b"},
            [
                (
                    "id",
                    "must be 1-64 characters from A-Z a-z 0-9 _ - . starting with a letter or digit",
                )
            ],
        ),
        ({"name": "x" * 201}, [("name", "must be at most 200 characters")]),
        ({"name": 5}, [("name", "must be a string without line breaks")]),
        (
            {"client_base_url": "ftp://x"},
            [("client_base_url", "must be an http:// or https:// URL")],
        ),
        (
            {"client_base_url": "https://"},
            [("client_base_url", "must be an http:// or https:// URL")],
        ),
        ({"client_sync_path": "sync"}, [("client_sync_path", "must be a path starting with /")]),
        (
            {"client_attachment_path": "/a b"},
            [("client_attachment_path", "must be a path starting with /")],
        ),
        ({"client_auth": "bearer"}, [("client_auth", "must be an object")]),
        (
            {"client_auth": {"method": "digest"}},
            [("client_auth.method", "must be one of none, bearer, basic")],
        ),
        (
            {"client_auth": {"method": "bearer"}},
            [("client_auth.token", "required when method is bearer")],
        ),
        (
            {"client_auth": {"method": "basic", "user": "u"}},
            [("client_auth.password", "required when method is basic")],
        ),
        (
            {"client_auth": {"signing_secret": "short"}},
            [("client_auth.signing_secret", "must be at least 16 characters")],
        ),
        ({"client_auth": {"kind": "x"}}, [("client_auth.kind", "unknown field")]),
        (
            {"rate_limits": {"hourly": -1}},
            [("rate_limits.hourly", "must be an integer between 0 and 9007199254740991")],
        ),
        ({"rate_limits": {"weekly": 1}}, [("rate_limits.weekly", "unknown field")]),
        ({"rate_limits": 5}, [("rate_limits", "must be an object")]),
        ({"active": "yes"}, [("active", "must be a boolean")]),
        ({"colour": 1}, [("colour", "unknown field")]),
    ],
)
def test_tenant_field_errors(patch: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert errors_of(validate_tenant, {"id": "acme", **patch}) == expected


def test_large_file_config() -> None:
    ok = validate_tenant(
        {
            "id": "t",
            "large_file_config": {
                "enabled": True,
                "max_size_mb": 10,
                "action": "rewrite",
                "storage_url": "s3://acme-mail/attachments",
                "file_ttl_days": 30,
            },
        },
        installed=lambda package: package == "s3fs",
    )
    assert ok["large_file_config"] == {
        "enabled": True,
        "max_size_mb": 10,
        "action": "rewrite",
        "storage_url": "s3://acme-mail/attachments",
        "file_ttl_days": 30,
    }
    assert validate_tenant({"id": "t", "large_file_config": {}})["large_file_config"] == {
        "enabled": False,
        "max_size_mb": 10,
        "action": "warn",
        "file_ttl_days": 30,
    }
    local = validate_tenant(
        {
            "id": "t",
            "large_file_config": {
                "enabled": True,
                "action": "rewrite",
                "storage_url": "file:///srv/big",
                "public_base_url": "https://files.acme.example",
            },
        }
    )
    assert local["large_file_config"]["storage_url"] == "file:///srv/big"
    # rewrite without enabled needs nothing yet.
    assert validate_tenant({"id": "t", "large_file_config": {"action": "rewrite"}})


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"enabled": True, "action": "rewrite"},
            [("large_file_config.storage_url", "required when action is rewrite")],
        ),
        (
            {"storage_url": "file:///srv/x"},
            [("large_file_config.public_base_url", "required for file:// storage")],
        ),
        (
            {"storage_url": "s3://bucket/p"},
            [
                (
                    "large_file_config.storage_url",
                    "s3:// storage needs the s3fs package, which is not installed",
                )
            ],
        ),
        (
            {"storage_url": "gs://bucket/p"},
            [
                (
                    "large_file_config.storage_url",
                    "gs:// storage needs the gcsfs package, which is not installed",
                )
            ],
        ),
        (
            {"storage_url": "az://c/p"},
            [
                (
                    "large_file_config.storage_url",
                    "az:// storage needs the adlfs package, which is not installed",
                )
            ],
        ),
        (
            {"storage_url": "ftp://x/y"},
            [("large_file_config.storage_url", "must be an s3://, gs://, az:// or file:/// URL")],
        ),
        (
            {"storage_url": "s3:///nobucket"},
            [("large_file_config.storage_url", "must be an s3://, gs://, az:// or file:/// URL")],
        ),
        ({"max_size_mb": 0}, [("large_file_config.max_size_mb", "must be a number > 0")]),
        ({"action": "zip"}, [("large_file_config.action", "must be one of warn, reject, rewrite")]),
        (
            {"file_ttl_days": 0},
            [("large_file_config.file_ttl_days", "must be an integer between 1 and 3650")],
        ),
        ({"enabled": 1}, [("large_file_config.enabled", "must be a boolean")]),
        (
            {"public_base_url": "files"},
            [("large_file_config.public_base_url", "must be an http:// or https:// URL")],
        ),
        ({"bucket": "x"}, [("large_file_config.bucket", "unknown field")]),
    ],
)
def test_large_file_config_errors(config: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    body = {"id": "t", "large_file_config": config}
    assert errors_of(validate_tenant, body, installed=lambda package: False) == expected


def test_tenant_update() -> None:
    body = {"client_auth": {"token": "tok-NEW-456"}, "large_file_config": None}
    assert validate_tenant_update(body) == {
        "client_auth": {"token": "tok-NEW-456"},
        "large_file_config": None,
    }
    stored = {"id": "acme", "client_auth": {"method": "bearer", "token_set": True}}
    assert validate_tenant_update(
        {"client_auth": {"token_set": True, "method": "bearer"}}, current=stored
    ) == {"client_auth": {"method": "bearer"}}
    assert errors_of(validate_tenant_update, {"client_auth": {"token": None}}, current=stored) == [
        ("client_auth.token", "required when method is bearer")
    ]
    assert validate_tenant_update(
        {"client_auth": {"token": None, "method": "none"}}, current=stored
    )
    assert errors_of(
        validate_tenant_update, {"client_auth": {"method": "basic", "user": "u"}}, current=stored
    ) == [("client_auth.password", "required when method is basic")]
    # Without the stored tenant, a key removed in the same patch is still caught.
    assert errors_of(
        validate_tenant_update, {"client_auth": {"method": "bearer", "token": None}}
    ) == [("client_auth.token", "required when method is bearer")]
    assert validate_tenant_update({"client_auth": None, "name": None, "active": False}) == {
        "client_auth": None,
        "name": None,
        "active": False,
    }
    assert validate_tenant_update({"id": "acme", "created_at": "x"}, current=stored) == {}
    assert errors_of(validate_tenant_update, {"id": "beta"}, current=stored) == [
        ("id", "cannot be changed")
    ]
    assert errors_of(validate_tenant_update, {"client_sync_path": "x"}) == [
        ("client_sync_path", "must be a path starting with /")
    ]


def test_present_tenant() -> None:
    stored = {
        "id": "acme",
        "name": "ACME Corp",
        "client_base_url": "https://app.acme.example",
        "client_sync_path": "/mail-proxy/sync",
        "client_attachment_path": "/mail-proxy/attachments",
        "client_auth": {
            "method": "bearer",
            "token": "tok-XYZ-123",
            "signing_secret": "whsec_3f9a2c0d9e8b7a61",
        },
        "rate_limits": {"hourly": 2000, "daily": None},
        "large_file_config": {
            "enabled": True,
            "max_size_mb": 10,
            "action": "rewrite",
            "storage_url": "s3://acme-mail/attachments",
            "file_ttl_days": 30,
        },
        "active": True,
        "suspended_batches": [],
        "api_key_set": True,
        "api_key_expires_at": None,
        "created_at": 1767225600.0,
        "updated_at": 1767225600.0,
    }
    assert present_tenant(stored) == {
        "id": "acme",
        "name": "ACME Corp",
        "client_base_url": "https://app.acme.example",
        "client_sync_path": "/mail-proxy/sync",
        "client_attachment_path": "/mail-proxy/attachments",
        "client_auth": {"method": "bearer", "token_set": True, "signing_secret_set": True},
        "rate_limits": {"hourly": 2000},
        "large_file_config": {
            "enabled": True,
            "max_size_mb": 10,
            "action": "rewrite",
            "storage_url": "s3://acme-mail/attachments",
            "file_ttl_days": 30,
        },
        "active": True,
        "suspended_batches": [],
        "api_key_set": True,
        "created_at": "2026-01-01T00:00:00",
        "updated_at": "2026-01-01T00:00:00",
    }
    flags = present_tenant(
        {
            "id": "b",
            "client_auth": {"method": "basic", "user": "u", "password_set": True},
            "api_key_expires_at": 1798761600.0,
        }
    )
    assert flags["client_auth"] == {"method": "basic", "user": "u", "password_set": True}
    assert flags["api_key_expires_at"] == 1798761600 and flags["api_key_set"] is False
    assert present_tenant({"id": "c"})["client_auth"] == {"method": "none"}


# --- instance -------------------------------------------------------------------------------


def test_instance_update() -> None:
    body = {
        "bounce_enabled": True,
        "bounce_imap_host": "imap.acme.example",
        "bounce_imap_user": "bounces@acme.example",
        "bounce_imap_password": "imap-secret",
        "bounce_return_path": "bounces@acme.example",
    }
    assert validate_instance_update(body) == body
    assert validate_instance_update({"name": "prod", "bounce_poll_interval": None}) == {
        "name": "prod",
        "bounce_poll_interval": None,
    }
    stored = {
        "bounce_imap_host": "imap.x",
        "bounce_imap_user": "u",
        "bounce_imap_password_set": True,
    }
    assert validate_instance_update({"bounce_enabled": True}, current=stored) == {
        "bounce_enabled": True
    }
    # Read-only keys of GET /instance are ignored.
    assert (
        validate_instance_update(
            {"version": "1.0.0", "bounce_last_sync": 1, "bounce_imap_password_set": True}
        )
        == {}
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"api_token": "x"}, [("api_token", API_TOKEN_REFUSAL)]),
        (
            {"bounce_enabled": True},
            [
                ("bounce_imap_host", "required when bounce_enabled is true"),
                ("bounce_imap_user", "required when bounce_enabled is true"),
                ("bounce_imap_password", "required when bounce_enabled is true"),
            ],
        ),
        ({"bounce_imap_port": 0}, [("bounce_imap_port", "must be an integer between 1 and 65535")]),
        (
            {"bounce_poll_interval": 5},
            [("bounce_poll_interval", "must be an integer between 10 and 3600")],
        ),
        ({"bounce_imap_ssl": "true"}, [("bounce_imap_ssl", "must be a boolean")]),
        (
            {"bounce_return_path": "Bounces <b@x.example>"},
            [("bounce_return_path", "must be an e-mail address")],
        ),
        ({"bounce_return_path": 5}, [("bounce_return_path", "must be an e-mail address")]),
        ({"bounce_imap_folder": ""}, [("bounce_imap_folder", "must be a non-empty string")]),
        ({"colour": 1}, [("colour", "unknown field")]),
    ],
)
def test_instance_errors(body: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert errors_of(validate_instance_update, body) == expected
    assert API_TOKEN_REFUSAL == "use mail-proxy NAME token --regenerate"


def test_instance_enable_with_password_cleared() -> None:
    stored = {
        "bounce_imap_host": "imap.x",
        "bounce_imap_user": "u",
        "bounce_imap_password_set": True,
    }
    assert errors_of(
        validate_instance_update,
        {"bounce_enabled": True, "bounce_imap_password": None},
        current=stored,
    ) == [("bounce_imap_password", "required when bounce_enabled is true")]


def test_present_instance() -> None:
    stored = {
        "name": "prod",
        "version": "1.0.0",
        "bounce_enabled": True,
        "bounce_imap_host": "imap.acme.example",
        "bounce_imap_user": "bounces@acme.example",
        "bounce_imap_password": "secret",
        "bounce_return_path": "bounces@acme.example",
        "bounce_last_sync": 1767225600.0,
        "created_at": 1767225600.0,
        "updated_at": 1767225600.0,
    }
    assert present_instance(stored) == {
        "name": "prod",
        "version": "1.0.0",
        "bounce_enabled": True,
        "bounce_imap_host": "imap.acme.example",
        "bounce_imap_port": 993,
        "bounce_imap_user": "bounces@acme.example",
        "bounce_imap_password_set": True,
        "bounce_imap_folder": "INBOX",
        "bounce_imap_ssl": True,
        "bounce_poll_interval": 60,
        "bounce_return_path": "bounces@acme.example",
        "bounce_last_sync": 1767225600,
        "created_at": "2026-01-01T00:00:00",
        "updated_at": "2026-01-01T00:00:00",
    }


def test_present_instance_shows_the_last_bounce_error_only_while_set() -> None:
    base = {"version": "1.0.0", "bounce_last_error": None, "bounce_last_error_ts": None}
    assert "bounce_last_error" not in present_instance(base)
    shown = present_instance(
        {**base, "bounce_last_error": "IMAP login refused", "bounce_last_error_ts": 1767225601.5}
    )
    assert shown["bounce_last_error"] == "IMAP login refused"
    assert shown["bounce_last_error_ts"] == 1767225601
    assert list(shown)[-2:] == ["bounce_last_error", "bounce_last_error_ts"]
