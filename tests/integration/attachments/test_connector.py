"""The outbound connector against real HTTP servers (reference §11.3): every address checked,
only checked addresses dialled, a name's second answer never trusted (DNS rebinding)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx
import pytest

from mailproxyd.core.netpolicy import Policy
from mailproxyd.drivers.connect import backend_of, checked_transport
from mailproxyd.drivers.http import ReportClient
from mailproxyd.services.attachments.fetch import Failure, Limits, http_fetch
from tests.fileservers import FileServer, Serve
from tests.tenantservers import TenantServer

LIMITS = Limits(max_bytes=1 << 20, threshold=100 * 1024)
PUBLIC = "192.0.2.10"  # TEST-NET-1: public under the rule, unreachable from here


class Resolver:
    """A test resolver answering from a script, one answer per lookup (then the last)."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = [list(a) for a in answers]
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


async def test_a_name_that_rebinds_to_a_private_address_never_reaches_it(
    file_server: Callable[..., FileServer],
) -> None:
    files = file_server({"/doc": Serve(body=b"internal")})
    resolver = Resolver([PUBLIC], ["127.0.0.1"])
    transport = checked_transport(Policy(), resolver=resolver)
    url = f"http://files.example:{files.port}/doc"
    async with httpx.AsyncClient(transport=transport, timeout=1.0) as client:
        # First answer public: that very address is dialled (and is unreachable here).
        with pytest.raises(Failure) as first:
            await http_fetch(client, "GET", url, LIMITS)
        assert first.value.permanent is False
        assert backend_of(transport).dialled == [(PUBLIC, files.port)]
        # Second answer private: refused before any connection.
        with pytest.raises(Failure) as second:
            await http_fetch(client, "GET", url, LIMITS)
        assert second.value.reason == "address not allowed (127.0.0.1)"
        assert second.value.permanent is True
    assert backend_of(transport).dialled == [(PUBLIC, files.port)]
    assert files.connections == 0


async def test_a_name_with_one_private_address_among_public_ones_is_refused(
    file_server: Callable[..., FileServer],
) -> None:
    files = file_server({"/doc": Serve(body=b"internal")})
    resolver = Resolver([PUBLIC, "127.0.0.1"])
    transport = checked_transport(Policy(), resolver=resolver)
    async with httpx.AsyncClient(transport=transport, timeout=1.0) as client:
        with pytest.raises(Failure) as refused:
            await http_fetch(client, "GET", f"http://mixed.example:{files.port}/doc", LIMITS)
    assert refused.value.reason == "address not allowed (127.0.0.1)"
    assert backend_of(transport).dialled == []
    assert files.connections == 0


async def test_the_checked_address_is_dialled_with_the_name_kept_in_host(
    file_server: Callable[..., FileServer],
) -> None:
    files = file_server({"/doc": Serve(body=b"content")})
    transport = checked_transport(Policy(allow_private=True), resolver=Resolver(["127.0.0.1"]))
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
        content = await http_fetch(client, "GET", f"http://docs.example:{files.port}/doc", LIMITS)
    assert content.data == b"content"
    assert files.requests[0].headers["Host"] == f"docs.example:{files.port}"


async def test_sync_calls_dial_the_checked_address_and_follow_the_trust_of_the_url(
    tenant_server: Callable[..., TenantServer],
) -> None:
    srv = tenant_server()
    url = f"http://app.example:{srv.port}/mail-proxy/sync"
    body = b'{"delivery_report":[]}'
    async with ReportClient(resolver=Resolver(["127.0.0.1"])) as client:
        # Set with the admin token: loopback is fine.
        answer = await client.post_report(url, body, {}, timeout=5)
        assert answer.outcome == "ok"
        # Set with a tenant key: the http_url rule, loopback refused before connecting.
        answer = await client.post_report(url, body, {}, timeout=5, trusted=False)
        assert answer.outcome == "network_error"
        assert "address not allowed (127.0.0.1)" in (answer.reply.error or "")
    assert len(srv.calls) == 1
    assert srv.calls[0].header("Host") == f"app.example:{srv.port}"
    # Link-local stays refused for trusted URLs too.
    async with ReportClient(resolver=Resolver(["169.254.169.254"])) as client:
        answer = await client.post_report(url, body, {}, timeout=5)
        assert answer.outcome == "network_error"


class _PublicLoopback(Policy):
    """A stand-in for the public internet: 127.0.0.1 plays a public address (no public one
    can be bound here); every other loopback address stays refused as private."""

    def refusal(self, address: str) -> str | None:
        return None if address == "127.0.0.1" else super().refusal(address)


async def test_every_redirect_is_checked_again(file_server: Callable[..., FileServer]) -> None:
    files = file_server()
    files.routes["/go"] = Serve(
        status=302, headers=(("Location", f"http://internal.example:{files.port}/secret"),)
    )
    files.routes["/secret"] = Serve(body=b"internal")
    resolver = _Names({"public.example": "127.0.0.1", "internal.example": "127.0.0.2"})
    transport = checked_transport(_PublicLoopback(), resolver=resolver)
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
        with pytest.raises(Failure) as refused:
            await http_fetch(client, "GET", f"http://public.example:{files.port}/go", LIMITS)
    assert refused.value.reason == "address not allowed (127.0.0.2)"
    assert refused.value.permanent is True
    assert [r.path for r in files.requests] == ["/go"]


class _Names:
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    async def __call__(self, host: str, port: int) -> list[str]:
        return [self.names[host]]


async def test_tls_goes_to_the_checked_address_with_the_name_as_sni() -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("files.example")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    files = FileServer(routes={"/doc": Serve(body=b"over tls")})
    files.start(ssl_context=server_ctx)
    try:
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        transport = checked_transport(
            Policy(allow_private=True),
            resolver=_Names({"files.example": "127.0.0.1"}),
            verify=client_ctx,
        )
        async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
            url = f"https://files.example:{files.port}/doc"
            content = await http_fetch(client, "GET", url, LIMITS)
        # The certificate names files.example: it verified because SNI and the check used
        # the name while the socket went to the checked address.
        assert content.data == b"over tls"
        assert backend_of(transport).dialled == [("127.0.0.1", files.port)]
    finally:
        files.close()
