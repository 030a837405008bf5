"""The HTTP client of the sync exchange (contract §13.2–§13.4, §11.3).

The only place that sends sync requests. One :class:`SyncClient` per reporter process owns one
``httpx.AsyncClient`` (running on trio), whose keep-alive pool is keyed by origin, so every
tenant reuses its own connections from call to call.

:meth:`SyncClient.post_report` never raises for network trouble: a refused connection, a DNS
failure, a TLS error, a link-local target or the whole-exchange timeout all come back as an
:class:`Answer` with outcome ``network_error``, because for the reporter they are one thing — the
items stay unacknowledged and the tenant goes into back-off.

Sync targets may be loopback or private (the tenant configuration is trusted, §11.3) but never
link-local. The host is resolved and checked here before httpx connects (results kept 30 s);
httpx resolves again for the connection, so a host whose DNS changes in between is not caught —
acceptable for trusted tenant URLs, unlike the untrusted attachment URLs of §11.3.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import trio

from mailproxyd.core import sync

# A tenant's answer is a small JSON object; anything much larger is not one.
MAX_ANSWER_BYTES: Final = 1 << 20
# Resolution results are reused briefly: the reporter may call one tenant many times a second.
_RESOLVE_TTL: Final = 30.0
#: Most (host, port) address checks remembered at once.
RESOLVED_MAX: Final = 1024
# Cloud metadata services outside the link-local ranges (§11.3 names this one).
_METADATA_ADDRESSES: Final = frozenset({ipaddress.ip_address("fd00:ec2::254")})


class RefusedAddress(OSError):
    """The sync URL resolves to an address that sync calls may never reach."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The result of one sync POST, whatever happened."""

    status: int | None  # None: no HTTP answer arrived
    json: Any  # the decoded body, None when absent or not JSON
    reply: sync.Reply
    duration: float  # seconds, the whole exchange

    @property
    def outcome(self) -> sync.Outcome:
        return self.reply.outcome


def refused_address(address: str) -> bool:
    """Sync calls may reach loopback and private networks, never link-local (§11.3).

    Unspecified and multicast addresses cannot be a tenant either and are refused with them.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip in _METADATA_ADDRESSES


class SyncClient:
    """Sends sync POSTs; use as ``async with SyncClient(...) as client``."""

    def __init__(self, *, max_connections: int = 100, verify: bool | str = True) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        # trust_env=False: proxies from the environment would make the address check meaningless
        # and send loopback tenants through a proxy.
        self._client = httpx.AsyncClient(
            limits=limits, follow_redirects=False, trust_env=False, verify=verify
        )
        self._resolved: dict[tuple[str, int], float] = {}

    async def __aenter__(self) -> SyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await self._client.aclose()

    async def _check_target(self, url: str) -> None:
        """Resolve the host and refuse it when any of its addresses is off limits."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (host, port)
        now = time.monotonic()
        if self._resolved.get(key, 0.0) > now:
            return
        try:
            infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
        for info in infos:
            address = str(info[4][0])
            if refused_address(address):
                raise RefusedAddress(f"{host} resolves to the refused address {address}")
        if len(self._resolved) >= RESOLVED_MAX:
            # Bounded: forget the expired checks, and all of them if that is not enough.
            self._resolved = {k: t for k, t in self._resolved.items() if t > now}
            if len(self._resolved) >= RESOLVED_MAX:
                self._resolved.clear()
        self._resolved[key] = now + _RESOLVE_TTL

    async def _exchange(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes | None]:
        await self._check_target(url)
        async with self._client.stream("POST", url, content=body, headers=headers) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    return response.status_code, None
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)

    async def post_report(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float,  # noqa: ASYNC109 -- a timeout is an outcome here, not an error
    ) -> Answer:
        """POST ``body`` to ``url`` within ``timeout`` seconds for the whole exchange."""
        started = time.monotonic()
        status: int | None = None
        raw: bytes | None = None
        error: str | None = None
        with trio.move_on_after(timeout) as scope:
            try:
                status, raw = await self._exchange(url, body, headers)
            except RefusedAddress as exc:
                error = str(exc)
            except (httpx.HTTPError, OSError) as exc:
                error = _describe(exc)
        if scope.cancelled_caught:
            status, raw, error = None, None, f"timeout after {_seconds(timeout)} s"
        duration = time.monotonic() - started
        decoded = sync.decode_answer(raw) if raw else None
        reply = sync.interpret(status, decoded, network_error=error)
        return Answer(status=status, json=decoded, reply=reply, duration=duration)


def _seconds(value: float) -> str:
    return str(int(value)) if math.isclose(value, round(value)) else f"{value:g}"


def _describe(exc: BaseException) -> str:
    """A short reason for ``last_error`` and logs, without the URL's secrets."""
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed: {exc}" if str(exc) else "connection failed"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol error"
    return type(exc).__name__
