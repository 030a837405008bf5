"""The HTTP client of the sync exchange (reference §13.2–§13.4, §11.3).

The only place that sends sync requests. One :class:`ReportClient` per reporter process owns one
httpx transport per address policy (running on trio), whose keep-alive pool is keyed by origin,
so every tenant reuses its own connections from call to call. Requests go to the transport
directly: a sync POST needs none of the client layer (redirects are not followed, no cookies,
no proxies), and skipping it takes a quarter of the CPU of a call.

:meth:`ReportClient.post_report` never raises for network trouble: a refused connection, a DNS
failure, a TLS error, a link-local target or the whole-exchange timeout all come back as an
:class:`Answer` with outcome ``network_error``, because for the reporter they are one thing — the
items stay unacknowledged and the tenant goes into back-off.

Every connection goes through the outbound connector (``drivers/connect``): the host is resolved
once, every address is checked, and the socket goes to a checked address, so a name whose DNS
answer changes between check and connect cannot reach anything the policy refuses. A
``client_base_url`` set with the admin token is trusted (loopback and private networks allowed,
never link-local); one set with a tenant key follows the ``http_url`` rule of reference §11.3.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Final

import httpx
import trio

from mailproxyd.core import report as core_report
from mailproxyd.core.netpolicy import Policy
from mailproxyd.drivers.connect import AddressRefused, Resolver, checked_transport

TRUSTED: Final = Policy(trusted=True)

# A tenant's answer is a small JSON object; anything much larger is not one.
MAX_ANSWER_BYTES: Final = 1 << 20
# What httpx's client used to add: the same headers, and its per-phase timeouts (connect, read,
# write, pool) inside the whole-exchange timeout of ``post_report``.
_DEFAULT_HEADERS: Final = (("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"))
_PHASE_TIMEOUTS: Final = httpx.Timeout(5.0).as_dict()


@dataclass(frozen=True, slots=True)
class Answer:
    """The result of one sync POST, whatever happened."""

    status: int | None  # None: no HTTP answer arrived
    json: Any  # the decoded body, None when absent or not JSON
    reply: core_report.Reply
    duration: float  # seconds, the whole exchange

    @property
    def outcome(self) -> core_report.Outcome:
        return self.reply.outcome


def refused_address(address: str) -> bool:
    """Sync calls to an admin-set URL may reach loopback and private networks, never
    link-local, unspecified, multicast or broadcast addresses (reference §11.3)."""
    return TRUSTED.refusal(address) is not None


class ReportClient:
    """Sends sync POSTs; use as ``async with ReportClient(...) as client``."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        verify: bool | str = True,
        resolver: Resolver | None = None,
    ) -> None:
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._verify = verify
        self._resolver = resolver
        self._transports: dict[Policy, httpx.AsyncHTTPTransport] = {}

    def _transport(self, policy: Policy) -> httpx.AsyncHTTPTransport:
        found = self._transports.get(policy)
        if found is None:
            # No proxies from the environment (checked_transport): they would make the address
            # check meaningless and send loopback tenants through a proxy.
            found = checked_transport(
                policy, resolver=self._resolver, verify=self._verify, limits=self._limits
            )
            self._transports[policy] = found
        return found

    async def __aenter__(self) -> ReportClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            for transport in self._transports.values():
                await transport.aclose()
        self._transports.clear()

    async def _exchange(
        self,
        transport: httpx.AsyncHTTPTransport,
        url: str,
        body: bytes,
        headers: dict[str, str],
    ) -> tuple[int, bytes | None]:
        request = httpx.Request(
            "POST",
            url,
            content=body,
            headers=[*_DEFAULT_HEADERS, *headers.items()],
            extensions={"timeout": _PHASE_TIMEOUTS},
        )
        response = await transport.handle_async_request(request)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():  # Content-Encoding decoded
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    return response.status_code, None
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)
        finally:
            await response.aclose()

    async def post_report(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float,  # noqa: ASYNC109 -- a timeout is an outcome here, not an error
        *,
        trusted: bool = True,
        allow_private: bool = False,
    ) -> Answer:
        """POST ``body`` to ``url`` within ``timeout`` seconds for the whole exchange.

        ``trusted``: the URL was set with the admin token; otherwise loopback, private and
        shared addresses are refused unless ``allow_private`` (reference §11.3).
        """
        policy = TRUSTED if trusted else Policy(trusted=False, allow_private=allow_private)
        # Outside the timeout: the first call of a policy builds its transport, whose SSL
        # context (the CA bundle) takes a few hundred milliseconds of CPU on a loaded machine;
        # it is no part of the tenant's exchange.
        transport = self._transport(policy)
        started = time.monotonic()
        status: int | None = None
        raw: bytes | None = None
        error: str | None = None
        with trio.move_on_after(timeout) as scope:
            try:
                status, raw = await self._exchange(transport, url, body, headers)
            except AddressRefused as exc:
                error = f"{exc.host}: refused address ({exc.reason})"
            except (httpx.HTTPError, OSError) as exc:
                error = _describe(exc)
        if scope.cancelled_caught:
            status, raw, error = None, None, f"timeout after {_seconds(timeout)} s"
        duration = time.monotonic() - started
        decoded = core_report.decode_answer(raw) if raw else None
        reply = core_report.interpret(status, decoded, network_error=error)
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
