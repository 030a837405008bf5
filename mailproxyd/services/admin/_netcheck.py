"""The reference §11.3 check of values a tenant key sets: where they lead, judged when they are saved.

A value that points the node at a refused address (loopback, private or shared ranges unless
``GMP_ALLOW_PRIVATE_NETWORKS``; link-local and the like always) is a 422 naming the field. The
same rule applies again at every connection (the stored ``*_untrusted`` marker), so a name
that resolves elsewhere later gains nothing.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mailproxyd.core.netpolicy import Policy
from mailproxyd.drivers.connect import refusal_for
from mailproxyd.services.context import ServiceContext


def _policy(ctx: ServiceContext) -> Policy:
    return Policy(trusted=False, allow_private=bool(ctx.settings.allow_private_networks))


async def host_refusal(ctx: ServiceContext, host: str, port: int) -> str | None:
    """Why the untrusted rule refuses ``host`` now, or ``None``."""
    return await refusal_for(host, port, _policy(ctx)) if host else None


async def url_refusal(ctx: ServiceContext, url: str) -> str | None:
    """Why the untrusted rule refuses the host of ``url`` now, or ``None``."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return None
    return await host_refusal(ctx, host, port or (443 if parts.scheme == "https" else 80))
