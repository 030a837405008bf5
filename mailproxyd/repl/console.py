"""The interactive console of ``mail-proxy NAME connect`` (reference §16).

A ``code.InteractiveConsole`` with ``proxy``, ``ProxyError`` and the guided forms
``new_tenant()``, ``new_account()`` and ``new_message()``. The prompt shows the instance and
the selected tenant (``mail-proxy[prod/acme]>>> ``). A ``ProxyError`` prints as one line, not
as a traceback.
"""

from __future__ import annotations

import code
import getpass
import secrets
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mailproxyd.repl.client import Proxy, ProxyError

BANNER = """\
mail-proxy {name} at {url}
  proxy.status(), proxy.stats(), proxy.run_now(), proxy.suspend(), proxy.activate()
  proxy.use('acme'), then proxy.accounts.list(), proxy.messages.sent(), ...
  proxy.tenants.list(), new_tenant(), new_account(), new_message()
exit() or Ctrl-D to leave."""


class _Prompt:
    """``sys.ps1`` that follows the selected tenant."""

    def __init__(self, proxy: Proxy, name: str, more: bool = False) -> None:
        self._proxy, self._name, self._more = proxy, name, more

    def __str__(self) -> str:
        if self._more:
            return "... "
        selected = f"/{self._proxy.tenant_id}" if self._proxy.tenant_id else ""
        return f"mail-proxy[{self._name}{selected}]>>> "


def _ask(label: str, default: str | None = None, *, required: bool = False) -> str:
    shown = f"{label} [{default}]: " if default else f"{label}: "
    while True:
        answer = input(shown).strip()
        if answer:
            return answer
        if default:
            return default
        if not required:
            return ""
        print(f"{label} is required.")


def _secret(label: str) -> str:
    return getpass.getpass(f"{label}: ")


def _choice(label: str, choices: Sequence[str], default: str) -> str:
    while True:
        answer = _ask(f"{label} ({'/'.join(choices)})", default)
        if answer in choices:
            return answer
        print(f"choose one of: {', '.join(choices)}")


def _int(label: str, default: int) -> int:
    while True:
        answer = _ask(label, str(default))
        try:
            return int(answer)
        except ValueError:
            print(f"{label}: must be an integer")


def forms(proxy: Proxy) -> dict[str, Callable[[], None]]:
    """The guided forms, bound to ``proxy``."""

    def new_tenant() -> None:
        """Create a tenant, field by field."""
        tenant_id = _ask("Tenant ID", required=True)
        payload: dict[str, Any] = {"id": tenant_id, "name": _ask("Name", tenant_id)}
        base_url = _ask("Base URL")
        if base_url:
            payload["client_base_url"] = base_url
        payload["client_sync_path"] = _ask("Sync path", "/mail-proxy/sync")
        payload["client_attachment_path"] = _ask("Attachment path", "/mail-proxy/attachments")
        method = _choice("Auth method", ("none", "bearer", "basic"), "none")
        auth: dict[str, Any] = {"method": method}
        if method == "bearer":
            auth["token"] = _secret("Auth token")
        elif method == "basic":
            auth["user"] = _ask("Auth user", required=True)
            auth["password"] = _secret("Auth password")
        payload["client_auth"] = auth
        result = proxy.tenants.add(payload)
        if result.get("created"):
            print(f"Tenant '{tenant_id}' created successfully!")
        else:
            print(f"Tenant '{tenant_id}' replaced successfully!")
        if result.get("api_key"):
            print(f"API key (shown once): {result['api_key']}")

    def new_account() -> None:
        """Create an SMTP account, field by field."""
        tenant = _ask("Tenant", proxy.tenant_id, required=True)
        payload: dict[str, Any] = {
            "tenant_id": tenant,
            "id": _ask("Account ID", required=True),
            "host": _ask("Host", required=True),
            "port": _int("Port", 587),
        }
        user = _ask("User")
        if user:
            payload["user"] = user
            password = _secret("Password")
            if password:
                payload["password"] = password
        payload["tls_mode"] = _choice(
            "TLS mode", ("none", "opportunistic", "starttls", "implicit"), "starttls"
        )
        for key, label in (
            ("limit_per_minute", "Limit per minute"),
            ("limit_per_hour", "Limit per hour"),
            ("limit_per_day", "Limit per day"),
        ):
            payload[key] = _int(f"{label} (0 = unlimited)", 0)
        payload["limit_behavior"] = _choice("Behaviour over a limit", ("defer", "reject"), "defer")
        result = proxy.accounts.add(payload)
        verb = "created" if result.get("created") else "replaced"
        print(f"Account '{payload['id']}' {verb} for tenant '{tenant}'")

    def new_message() -> None:
        """Queue one message, field by field."""
        tenant = _ask("Tenant", proxy.tenant_id, required=True)
        item: dict[str, Any] = {}
        account = _ask("Account", "default")
        if account != "default":
            item["account_id"] = account
        item["id"] = _ask("Message ID", f"repl-{secrets.token_hex(4)}")
        item["from"] = _ask("From", required=True)
        item["to"] = [a.strip() for a in _ask("To", required=True).split(",") if a.strip()]
        item["subject"] = _ask("Subject", required=True)
        item["body"] = _ask("Body")
        item["content_type"] = _choice("Content type", ("plain", "html"), "plain")
        item["priority"] = _choice("Priority", ("immediate", "high", "medium", "low"), "medium")
        result = proxy.messages.add([item], tenant_id=tenant)
        if result.get("queued"):
            print(f"Message '{item['id']}' queued")
        for rejection in result.get("rejected") or []:
            print(f"Message '{rejection.get('id')}' rejected: {rejection.get('reason')}")

    return {"new_tenant": new_tenant, "new_account": new_account, "new_message": new_message}


class _Console(code.InteractiveConsole):
    def showtraceback(self) -> None:
        kind, value, _tb = sys.exc_info()
        if isinstance(value, ProxyError):
            self.write(f"ProxyError: {value}\n")
            return
        if isinstance(value, KeyboardInterrupt | EOFError) and kind is not None:
            self.write(f"{kind.__name__}\n")
            return
        super().showtraceback()


def namespace(proxy: Proxy) -> dict[str, Any]:
    return {"proxy": proxy, "ProxyError": ProxyError, **forms(proxy)}


def run_console(name: str, url: str, token: str) -> int:
    """Run the REPL until ``exit()`` or Ctrl-D; returns the exit code."""
    try:
        import readline  # noqa: F401  (line editing and history in input())
    except ImportError:
        pass
    proxy = Proxy(url, token, name=name)
    proxy.status()  # fail now, not at the first call, when the node does not answer
    sys.ps1 = _Prompt(proxy, name)
    sys.ps2 = _Prompt(proxy, name, more=True)
    console = _Console(namespace(proxy))
    try:
        console.interact(banner=BANNER.format(name=name, url=url), exitmsg="")
    except SystemExit as exc:
        code_ = exc.code
        return code_ if isinstance(code_, int) else 0
    finally:
        proxy.close()
    return 0
