"""Fixtures of the API tests: the live server of ``tests.apiclient`` and two tenants."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest

from tests.apiclient import (
    ISSUED_KEYS,
    ApiServer,
    _api_backend,
    api_db_url,
    api_server,
    api_settings_overrides,
    pytest_collection_modifyitems,
    pytest_configure,
    secret,
)

__all__ = [
    "_api_backend",
    "api_db_url",
    "api_server",
    "api_settings_overrides",
    "pytest_collection_modifyitems",
    "pytest_configure",
]


@dataclasses.dataclass
class World:
    """Tenants ``acme`` (account ``smtp1``, default) and ``beta`` (account ``main``) with keys."""

    server: ApiServer
    admin: httpx.Client
    a: httpx.Client
    b: httpx.Client
    a_key: str
    b_key: str
    anon: httpx.Client


def make_tenant(admin: httpx.Client, tenant_id: str, **fields: object) -> str:
    body = {
        "id": tenant_id,
        "name": f"{tenant_id.title()} Corp",
        "client_base_url": f"https://{tenant_id}.example",
        "client_auth": {
            "method": "bearer",
            "token": secret(f"tok-{tenant_id}-0123456789"),
            "signing_secret": secret(f"whsec_{tenant_id}_0123456789abcdef"),
        },
        **fields,
    }
    r = admin.post("/tenant", json=body)
    assert r.status_code == 200, r.text
    key = r.json()["api_key"]
    ISSUED_KEYS[key] = f"POST /tenant {tenant_id}"
    return str(key)


def make_account(admin: httpx.Client, tenant_id: str, account_id: str, **fields: object) -> None:
    body = {
        "id": account_id,
        "tenant_id": tenant_id,
        "host": "smtp.example.com",
        "port": 587,
        "user": f"mailer@{tenant_id}.example",
        "password": secret(f"pw-{tenant_id}-{account_id}-secret"),
        **fields,
    }
    r = admin.post("/account", json=body)
    assert r.status_code == 200, r.text


@pytest.fixture
def world(api_server: ApiServer) -> Iterator[World]:
    with api_server.admin() as admin:
        a_key = make_tenant(admin, "acme")
        b_key = make_tenant(admin, "beta")
        make_account(admin, "acme", "smtp1", is_default=True)
        make_account(admin, "beta", "main")
        with (
            api_server.client(a_key) as a,
            api_server.client(b_key) as b,
            api_server.client() as anon,
        ):
            yield World(api_server, admin, a, b, a_key, b_key, anon)


def msg(id: str, **fields: object) -> dict[str, object]:
    """A valid message item."""
    base: dict[str, object] = {
        "id": id,
        "from": "Shop <orders@acme.example>",
        "to": ["ann@example.org"],
        "subject": "Your order",
        "body": "Thanks!",
    }
    base.update(fields)
    return base
