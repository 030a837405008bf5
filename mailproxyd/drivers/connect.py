"""The outbound connector (reference §11.3): resolve, check every address, dial a checked one.

Every outbound connection of the node goes through here — attachment and endpoint fetches and
sync calls (as an httpx transport whose network backend is :class:`CheckedBackend`) and SMTP
connections to tenant-set hosts (:func:`connect_blocking`, called from the SMTP driver's
thread). The host is resolved once per connection, every address is judged by
``core.netpolicy``, and the socket is opened to one of those very addresses, so a name that
changes its answer between a check and a connect (DNS rebinding) never gets through. TLS and
the ``Host`` header still use the name: httpcore wraps the stream with ``server_hostname`` set
from the request's origin, not from the address dialled.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import httpcore
import httpx
import trio

from mailproxyd.core.netpolicy import Policy, literal_host

#: ``resolver(host, port)`` → the addresses of ``host`` (async: the HTTP clients).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
#: The blocking counterpart, for the SMTP driver's worker thread.
BlockingResolver = Callable[[str, int], Sequence[str]]


class AddressRefused(OSError):
    """Every way to ``host`` leads to an address the policy refuses; ``reason`` says which."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(reason)
        self.host = host
        self.reason = reason


class ResolveFailed(OSError):
    """The host name did not resolve (a temporary failure, reference §11.5)."""


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address of ``host`` from the system resolver, in its order."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA cannot encode
        raise ResolveFailed(f"cannot resolve {host}: {exc}") from exc
    return _unique(str(info[4][0]) for info in infos)


def blocking_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ResolveFailed(f"cannot resolve {host}: {exc}") from exc
    return _unique(str(info[4][0]) for info in infos)


def _unique(addresses: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(addresses))


def checked(host: str, addresses: Sequence[str], policy: Policy) -> list[str]:
    """``addresses`` when every one is allowed; :class:`AddressRefused` names the first refused.

    All of them, not just the one dialled: a name that mixes a public and a private address
    is a rebinding set-up, and trying the next address after a failure would reach it.
    """
    if not addresses:
        raise ResolveFailed(f"cannot resolve {host}: no address")
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            raise AddressRefused(host, reason)
    return list(addresses)


async def resolve_checked(
    host: str, port: int, policy: Policy, resolver: Resolver | None = None
) -> list[str]:
    """The checked addresses of ``host`` (reference §11.3), or :class:`AddressRefused`/:class:`ResolveFailed`."""
    bare = host.strip("[]")
    if literal_host(bare) is not None:
        return checked(host, [bare], policy)
    found = await (resolver or system_resolver)(bare, port)
    return checked(host, found, policy)


def connect_blocking(
    host: str,
    port: int,
    timeout: float,
    policy: Policy,
    resolver: BlockingResolver | None = None,
) -> socket.socket:
    """A TCP socket to a checked address of ``host`` (for ``smtplib``, in a worker thread)."""
    bare = host.strip("[]")
    found = (
        [bare] if literal_host(bare) is not None else (resolver or blocking_resolver)(bare, port)
    )
    last: OSError | None = None
    for address in checked(host, found, policy):
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            last = exc
    assert last is not None
    raise last


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's trio backend, dialling only addresses the policy accepted."""

    def __init__(self, policy: Policy, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self._resolver = resolver
        self._inner = httpcore.TrioBackend()
        #: Every address dialled, newest last (kept short; tests and logs look at it).
        self.dialled: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            addresses = await resolve_checked(host, port, self.policy, self._resolver)
        if scope.cancelled_caught:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out")
        last: Exception | None = None
        for address in addresses:
            self.dialled = [*self.dialled[-15:], (address, port)]
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout, OSError) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not outbound destinations")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def checked_transport(
    policy: Policy,
    *,
    resolver: Resolver | None = None,
    verify: bool | str | ssl.SSLContext = True,
    limits: httpx.Limits | None = None,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through :class:`CheckedBackend`."""
    transport = httpx.AsyncHTTPTransport(
        verify=verify, limits=limits or httpx.Limits(max_connections=100), trust_env=False
    )
    pool = transport._pool
    # httpx does not take a network backend; its pool does. Replacing it keeps httpx's
    # SSL context, limits and exception mapping.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=pool._ssl_context,
        max_connections=pool._max_connections,
        max_keepalive_connections=pool._max_keepalive_connections,
        keepalive_expiry=pool._keepalive_expiry,
        http1=pool._http1,
        http2=pool._http2,
        network_backend=CheckedBackend(policy, resolver),
    )
    return transport


def backend_of(transport: httpx.AsyncHTTPTransport) -> CheckedBackend:
    backend = transport._pool._network_backend
    assert isinstance(backend, CheckedBackend)
    return backend


async def refusal_for(
    host: str, port: int, policy: Policy, resolver: Resolver | None = None
) -> str | None:
    """Why ``policy`` refuses ``host`` now (``address not allowed (…)``), ``None`` if it does not.

    For checks when a value is saved: a name that does not resolve yet is not refused (the
    connection is checked again anyway).
    """
    try:
        await resolve_checked(host, port, policy, resolver)
    except AddressRefused as exc:
        return exc.reason
    except OSError:
        return None
    return None
