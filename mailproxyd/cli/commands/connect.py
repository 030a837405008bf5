"""``mail-proxy NAME connect``: the REPL bound to the running instance (reference §15.3, §16)."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from mailproxyd.cli.apps import instance as instance_app
from mailproxyd.cli.apps import instance_name
from mailproxyd.cli.context import existing_instance, running_url
from mailproxyd.cli.errors import NotRunning
from mailproxyd.errors import MailProxyError
from mailproxyd.settings import load_settings


@instance_app.command
def connect(
    *,
    url: Annotated[str | None, Parameter(help="API URL (default: the running node's).")] = None,
    token: Annotated[str | None, Parameter(help="Admin token (default: the instance's).")] = None,
) -> int:
    """A Python console with `proxy` bound to the instance's HTTP API (exit() to leave)."""
    from mailproxyd.repl import ProxyError, run_console

    name = instance_name()
    directory = existing_instance(name)
    target = url or running_url(directory)
    if target is None:
        raise NotRunning()
    secret = token or load_settings("instance", name=name).api_token
    if not secret:
        raise MailProxyError(f"no admin token: give --token or see mail-proxy {name} token")
    try:
        return run_console(name, target, secret)
    except ProxyError as exc:
        raise MailProxyError(str(exc)) from None
