"""Real SMTP servers for tests: aiosmtpd ``Controller``s on 127.0.0.1 (a pytest plugin).

Fixtures:

* ``smtp_ca`` — a trustme CA; ``smtp_ca_file`` — its PEM file (for ``cafile=`` or
  ``SSL_CERT_FILE``); the server certificate is valid for ``localhost`` and ``127.0.0.1``.
* ``smtp_server`` — a factory: ``smtp_server(tls="none"|"starttls"|"implicit", auth=False,
  auth_require_tls=True, untrusted=False, cert_names=("localhost", "127.0.0.1"),
  xtest_auth_only=False, script=None, **smtp_kwargs)`` starts a server and returns a
  :class:`SmtpServer`. Its ``script`` chooses the reply of each stage and can drop or stall the
  connection; its ``log`` records every message, AUTH and command seen.
* ``smtp_plain``, ``smtp_starttls_auth``, ``smtp_implicit`` — the three usual servers.

Every server accepts the user ``USER`` with password ``PASSWORD`` (PLAIN and LOGIN).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.helpers import free_port

__all__ = ["PASSWORD", "USER", "Received", "Script", "ServerLog", "SmtpServer", "free_port"]

USER = "mailer@acme.example"
PASSWORD = "app-password"
HOST = "127.0.0.1"


@dataclass
class Received:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]
    tls: bool
    login: str | None


@dataclass
class Script:
    """Replies chosen per stage; ``None`` means the server's normal behaviour.

    Replies are complete lines such as ``"451 4.3.0 Try again later"``; a reply without a
    leading code tests malformed replies. ``rcpt`` maps lower-cased addresses to replies.
    """

    greeting: str | None = None
    greeting_stall: float = 0.0
    ehlo: str | None = None
    helo: str | None = None
    starttls: str | None = None
    auth: str | None = None
    mail: str | None = None
    rcpt: dict[str, str] = field(default_factory=dict)
    data_command: str | None = None
    stall_after_354: bool = False  # stop reading: the client's data write times out
    data_end: str | None = None
    drop_after_data: bool = False  # the message arrives, no reply is ever sent
    stall_after_data: float = 0.0
    rset: str | None = None
    drop_on_rset: bool = False
    pipelining: bool = False  # offer PIPELINING (RFC 2920) in the EHLO reply


@dataclass
class ServerLog:
    """What the server saw; shared with the asyncio thread, read after the client is done."""

    messages: list[Received] = field(default_factory=list)
    auth_attempts: list[tuple[str | None, bool]] = field(default_factory=list)  # (login, tls)
    auth_mechanisms: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    sessions: int = 0  # connections that sent EHLO or HELO

    def count(self, verb: str) -> int:
        return sum(1 for c in self.commands if c == verb)


class _Handler:
    def __init__(self, script: Script, log: ServerLog) -> None:
        self.script = script
        self.log = log

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself without this hook
        if self.script.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.script.mail is not None:
            return self.script.mail
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.script.rcpt.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_AUTH(
        self, server: SMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> Any:
        return self.script.auth if self.script.auth is not None else MISSING

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.log.messages.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content or b""),
                mail_options=list(envelope.mail_options),
                tls=_is_tls(server, session),
                login=_login(session),
            )
        )
        if self.script.drop_after_data:
            _transport(server).abort()
            return "250 never sent"
        if self.script.stall_after_data:
            await asyncio.sleep(self.script.stall_after_data)
        return self.script.data_end or "250 2.0.0 OK: queued"


class _XTestHandler(_Handler):
    """A handler whose only AUTH mechanism is one no client knows."""

    async def auth_XTEST(self, server: SMTP, args: list[str]) -> AuthResult:
        return AuthResult(success=False, handled=False)


def _transport(server: SMTP) -> asyncio.Transport:
    transport = server.transport
    assert isinstance(transport, asyncio.Transport)
    return transport


def _is_tls(server: SMTP, session: Session) -> bool:
    # STARTTLS sets session.ssl; with implicit TLS only the transport knows.
    transport = server.transport
    return session.ssl is not None or (
        transport is not None and transport.get_extra_info("ssl_object") is not None
    )


def _login(session: Session) -> str | None:
    # The authenticator below stores the login as the session's auth_data.
    return str(session.auth_data) if session.authenticated and session.auth_data else None


class _ScriptedSMTP(SMTP):
    """aiosmtpd's server with the stages aiosmtpd has no hooks for made scriptable."""

    def __init__(self, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._script = handler.script
        self._log = handler.log
        self._greeted = False
        self._counted = False

    async def push(self, status: Any) -> None:
        if not self._greeted and str(status).startswith("220 "):
            self._greeted = True
            if self._script.greeting_stall:
                await asyncio.sleep(self._script.greeting_stall)
            if self._script.greeting is not None:
                await super().push(self._script.greeting)
                if not self._script.greeting.startswith("2"):
                    assert self.transport is not None
                    self.transport.close()
                return
        await super().push(status)

    def _count(self, verb: str) -> None:
        self._log.commands.append(verb)
        if not self._counted:
            self._counted = True
            self._log.sessions += 1

    async def smtp_EHLO(self, hostname: str) -> None:
        self._count("EHLO")
        if self._script.ehlo is not None:
            await self.push(self._script.ehlo)
            return
        await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        self._count("HELO")
        if self._script.helo is not None:
            await self.push(self._script.helo)
            return
        await super().smtp_HELO(hostname)

    async def smtp_STARTTLS(self, arg: str) -> None:
        self._log.commands.append("STARTTLS")
        if self._script.starttls is not None:
            await self.push(self._script.starttls)
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        self._log.commands.append("AUTH")
        await super().smtp_AUTH(arg)

    async def smtp_DATA(self, arg: str) -> None:
        self._log.commands.append("DATA")
        if self._script.data_command is not None:
            await self.push(self._script.data_command)
            return
        if self._script.stall_after_354:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            _transport(self).pause_reading()
            await asyncio.sleep(3600)
            return
        await super().smtp_DATA(arg)

    async def smtp_RSET(self, arg: str) -> None:
        self._log.commands.append("RSET")
        if self._script.drop_on_rset:
            _transport(self).abort()
            return
        if self._script.rset is not None:
            await self.push(self._script.rset)
            return
        await super().smtp_RSET(arg)

    async def smtp_QUIT(self, arg: str) -> None:
        self._log.commands.append("QUIT")
        await super().smtp_QUIT(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _ScriptedSMTP(self.handler, **self.SMTP_kwargs)


def _authenticator(log: ServerLog) -> Callable[..., AuthResult]:
    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        login = data.login.decode() if isinstance(data, LoginPassword) else None
        password = data.password.decode() if isinstance(data, LoginPassword) else None
        log.auth_attempts.append((login, _is_tls(server, session)))
        log.auth_mechanisms.append(mechanism)
        ok = login == USER and password == PASSWORD
        return AuthResult(success=ok, handled=False, auth_data=login)

    return authenticate


@dataclass
class SmtpServer:
    """A running test server: where it listens, its script and what it saw."""

    host: str
    port: int
    script: Script
    log: ServerLog
    tls: str
    controller: Controller

    def account(self, **overrides: Any) -> dict[str, Any]:
        """An account mapping for the driver pointing at this server."""
        base: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "tls_mode": "none" if self.tls == "none" else self.tls,
            "tls_verify": True,
            "ttl": 300,
        }
        base.update(overrides)
        return base


@pytest.fixture(scope="session")
def smtp_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def smtp_ca_file(smtp_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("smtp-ca") / "ca.pem"
    smtp_ca.cert_pem.write_to_path(str(path))
    return str(path)


def _server_context(ca: trustme.CA, names: tuple[str, ...]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


@pytest.fixture
def smtp_server(smtp_ca: trustme.CA) -> Iterator[Callable[..., SmtpServer]]:
    started: list[Controller] = []
    lock = threading.Lock()

    def start(
        tls: str = "none",
        *,
        auth: bool = False,
        auth_require_tls: bool = True,
        untrusted: bool = False,
        xtest_auth_only: bool = False,
        cert_names: tuple[str, ...] = ("localhost", HOST),
        script: Script | None = None,
        **smtp_kwargs: Any,
    ) -> SmtpServer:
        script = script or Script()
        log = ServerLog()
        handler = (_XTestHandler if xtest_auth_only else _Handler)(script, log)
        # An untrusted server presents a certificate from a CA the client does not know.
        ca = trustme.CA() if untrusted else smtp_ca
        ctx = _server_context(ca, cert_names) if tls != "none" else None
        kwargs: dict[str, Any] = dict(smtp_kwargs)
        if tls == "starttls":
            kwargs["tls_context"] = ctx
        if auth or xtest_auth_only:
            kwargs["authenticator"] = _authenticator(log)
            # aiosmtpd counts only STARTTLS as TLS; an implicit-TLS session is encrypted anyway.
            kwargs["auth_require_tls"] = auth_require_tls and tls == "starttls"
            if xtest_auth_only:
                kwargs["auth_exclude_mechanism"] = ["PLAIN", "LOGIN"]
        for _ in range(5):  # the free port can be taken between probing and binding
            port = free_port()
            controller = _Controller(
                handler,
                hostname=HOST,
                port=port,
                ssl_context=ctx if tls == "implicit" else None,
                ready_timeout=5.0,
                **kwargs,
            )
            try:
                controller.start()
                break
            except (OSError, RuntimeError):
                continue
        else:  # pragma: no cover
            raise RuntimeError("could not start the test SMTP server")
        with lock:
            started.append(controller)
        return SmtpServer(HOST, port, script, log, tls, controller)

    yield start
    for controller in started:
        controller.stop(no_assert=True)


@pytest.fixture
def smtp_plain(smtp_server: Callable[..., SmtpServer]) -> SmtpServer:
    return smtp_server("none")


@pytest.fixture
def smtp_starttls_auth(smtp_server: Callable[..., SmtpServer]) -> SmtpServer:
    return smtp_server("starttls", auth=True)


@pytest.fixture
def smtp_implicit(smtp_server: Callable[..., SmtpServer]) -> SmtpServer:
    return smtp_server("implicit", auth=True)
