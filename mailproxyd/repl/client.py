"""``proxy``: a synchronous client of the HTTP API for the REPL (reference §16).

Every call is one HTTP request with the admin token. Account and message calls take
``tenant_id=`` or use the tenant selected with ``proxy.use()``. API errors raise ``ProxyError``
whose text is ``<HTTP status> <error>: <detail>``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

# ``list`` is also a method name of the sub-APIs; annotations use this alias.
Records = list[dict[str, Any]]
NO_TENANT = "no tenant selected: call proxy.use(tenant_id) or pass tenant_id"


class ProxyError(Exception):
    """An API call failed; the text is ``<HTTP status> <error>: <detail>``."""


def _detail(body: dict[str, Any]) -> str:
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    rejected = body.get("rejected")
    if isinstance(rejected, list) and rejected:
        return "; ".join(f"{r.get('id')}: {r.get('reason')}" for r in rejected)
    return json.dumps(detail)


def _fields(data: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    if data is not None and not isinstance(data, dict):
        raise TypeError("pass a dict or keyword arguments")
    return {**(data or {}), **fields}


class Proxy:
    """The instance's HTTP API, bound to the admin token."""

    def __init__(self, url: str, token: str, *, name: str = "", timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.name = name
        self.tenant_id: str | None = None
        self._http = httpx.Client(
            base_url=self.url, headers={"X-API-Token": token}, timeout=timeout
        )
        self.tenants = Tenants(self)
        self.accounts = Accounts(self)
        self.messages = Messages(self)

    def __repr__(self) -> str:
        selected = f", tenant '{self.tenant_id}'" if self.tenant_id else ""
        return f"<mail-proxy {self.name or ''} at {self.url}{selected}>".replace("  ", " ")

    def close(self) -> None:
        self._http.close()

    # --- transport ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """One API call; the decoded JSON body, or ``ProxyError``."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(
                method,
                path,
                params={k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()},
                json=body,
            )
        except httpx.HTTPError as exc:
            raise ProxyError(f"cannot reach {self.url}: {exc}") from None
        try:
            decoded = response.json()
        except ValueError:
            decoded = None
        if response.status_code >= 400:
            if isinstance(decoded, dict):
                raise ProxyError(
                    f"{response.status_code} {decoded.get('error')}: {_detail(decoded)}"
                )
            raise ProxyError(f"{response.status_code} error: {response.text[:200]}")
        return decoded

    def tenant(self, tenant_id: str | None) -> str:
        """``tenant_id``, else the selected tenant, else ``ProxyError``."""
        chosen = tenant_id if tenant_id is not None else self.tenant_id
        if chosen is None:
            raise ProxyError(NO_TENANT)
        return chosen

    # --- instance-wide calls -----------------------------------------------------------------

    def use(self, tenant_id: str | None) -> Proxy:
        """Select a tenant for later calls (``None`` clears it); returns ``proxy``."""
        self.tenant_id = tenant_id
        return self

    def status(self) -> dict[str, Any]:
        """``GET /status``."""
        return dict(self.request("GET", "/status"))

    def stats(self, tenant_id: str | None = None) -> dict[str, Any]:
        """``GET /stats`` without ``ok``."""
        found = dict(self.request("GET", "/stats", params={"tenant_id": tenant_id}))
        found.pop("ok", None)
        return found

    def run_now(self, tenant_id: str | None = None) -> dict[str, Any]:
        """``POST /commands/run-now``."""
        body = {"tenant_id": tenant_id} if tenant_id is not None else {}
        return dict(self.request("POST", "/commands/run-now", body=body))

    def _command(self, name: str, tenant_id: str | None, batch_code: str | None) -> dict[str, Any]:
        chosen = tenant_id if tenant_id is not None else self.tenant_id
        body: dict[str, Any] = {}
        if chosen is not None:
            body["tenant_id"] = chosen
        if batch_code is not None:
            if chosen is None:
                raise ProxyError(NO_TENANT)
            body["batch_code"] = batch_code
        return dict(self.request("POST", f"/commands/{name}", body=body))

    def suspend(
        self, tenant_id: str | None = None, batch_code: str | None = None
    ) -> dict[str, Any]:
        """Suspend a tenant, one of its batches, or (no tenant) the whole scheduler."""
        return self._command("suspend", tenant_id, batch_code)

    def activate(
        self, tenant_id: str | None = None, batch_code: str | None = None
    ) -> dict[str, Any]:
        """Activate a tenant, one of its batches, or (no tenant) the whole scheduler."""
        return self._command("activate", tenant_id, batch_code)


def _path_id(value: str) -> str:
    return quote(value, safe="")


class Tenants:
    """``proxy.tenants``: the tenant routes (reference §5.5)."""

    def __init__(self, proxy: Proxy) -> None:
        self._p = proxy

    def __repr__(self) -> str:
        return "<proxy.tenants: list(), get(id), add(...), update(id, ...), delete(id)>"

    def list(self, active_only: bool = False) -> Records:
        found = self._p.request("GET", "/tenants", params={"active_only": active_only or None})
        return list(found["tenants"])

    def get(self, tenant_id: str) -> dict[str, Any]:
        return dict(self._p.request("GET", f"/tenant/{_path_id(tenant_id)}"))

    def add(self, data: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        return dict(self._p.request("POST", "/tenant", body=_fields(data, fields)))

    def update(self, tenant_id: str, **fields: Any) -> dict[str, Any]:
        return dict(self._p.request("PUT", f"/tenant/{_path_id(tenant_id)}", body=fields))

    def delete(self, tenant_id: str) -> dict[str, Any]:
        return dict(self._p.request("DELETE", f"/tenant/{_path_id(tenant_id)}"))


class Accounts:
    """``proxy.accounts``: the account routes (reference §5.4) of the selected tenant."""

    def __init__(self, proxy: Proxy) -> None:
        self._p = proxy

    def __repr__(self) -> str:
        return "<proxy.accounts: list(), get(id), add(...), update(id, ...), delete(id)>"

    def list(self, tenant_id: str | None = None) -> Records:
        tenant = self._p.tenant(tenant_id)
        return list(self._p.request("GET", "/accounts", params={"tenant_id": tenant})["accounts"])

    def get(self, account_id: str, tenant_id: str | None = None) -> dict[str, Any]:
        tenant = self._p.tenant(tenant_id)
        path = f"/account/{_path_id(account_id)}"
        return dict(self._p.request("GET", path, params={"tenant_id": tenant}))

    def add(self, data: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        body = _fields(data, fields)
        body["tenant_id"] = self._p.tenant(body.get("tenant_id"))
        return dict(self._p.request("POST", "/account", body=body))

    def update(
        self, account_id: str, tenant_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        tenant = self._p.tenant(tenant_id)
        path = f"/account/{_path_id(account_id)}"
        return dict(self._p.request("PUT", path, params={"tenant_id": tenant}, body=fields))

    def delete(self, account_id: str, tenant_id: str | None = None) -> dict[str, Any]:
        tenant = self._p.tenant(tenant_id)
        path = f"/account/{_path_id(account_id)}"
        return dict(self._p.request("DELETE", path, params={"tenant_id": tenant}))


class Messages:
    """``proxy.messages``: listing, reading, adding and removing messages (reference §5.3)."""

    def __init__(self, proxy: Proxy) -> None:
        self._p = proxy

    def __repr__(self) -> str:
        return (
            "<proxy.messages: list(status, limit), pending(), sent(), errors(), get(id), "
            "add([...]), delete(ids), cleanup()>"
        )

    def list(
        self, status: str | None = None, limit: int = 100, tenant_id: str | None = None
    ) -> Records:
        tenant = self._p.tenant(tenant_id)
        params = {"tenant_id": tenant, "status": status, "limit": limit}
        return list(self._p.request("GET", "/messages", params=params)["messages"])

    def pending(self, limit: int = 100, tenant_id: str | None = None) -> Records:
        return self.list("pending,deferred", limit, tenant_id)

    def sent(self, limit: int = 100, tenant_id: str | None = None) -> Records:
        return self.list("sent", limit, tenant_id)

    def errors(self, limit: int = 100, tenant_id: str | None = None) -> Records:
        return self.list("error", limit, tenant_id)

    def get(self, message_id: str, tenant_id: str | None = None) -> dict[str, Any]:
        tenant = self._p.tenant(tenant_id)
        path = f"/message/{_path_id(message_id)}"
        return dict(self._p.request("GET", path, params={"tenant_id": tenant}))

    def add(self, messages: Any, tenant_id: str | None = None) -> dict[str, Any]:
        if isinstance(messages, dict):
            messages = [messages]
        body = {"tenant_id": self._p.tenant(tenant_id), "messages": list(messages)}
        return dict(self._p.request("POST", "/commands/add-messages", body=body))

    def delete(self, ids: Any, tenant_id: str | None = None) -> dict[str, Any]:
        if isinstance(ids, str):
            ids = [ids]
        body = {"tenant_id": self._p.tenant(tenant_id), "ids": list(ids)}
        return dict(self._p.request("POST", "/commands/delete-messages", body=body))

    def cleanup(
        self, tenant_id: str | None = None, older_than_seconds: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"tenant_id": self._p.tenant(tenant_id)}
        if older_than_seconds is not None:
            body["older_than_seconds"] = older_than_seconds
        return dict(self._p.request("POST", "/commands/cleanup-messages", body=body))
