"""A real aiosmtpd server whose answers are chosen by the recipient addresses of each message.

The dispatch tests need one server that answers chosen codes at chosen stages, drops the
connection after the data, holds sessions open for a while and counts simultaneous sessions.
Each message picks its behaviour through the local parts of its addresses, so one server serves
a whole test and the scripts stay beside the messages that use them:

* ``rcpt550@…`` / ``rcpt451@…``: that recipient is refused at ``RCPT TO`` with that code;
* ``data550@…`` / ``data451@…``: the reply to the message data carries that code;
* ``mail451@…`` as sender (``from``): ``MAIL FROM`` answers 451;
* ``drop@…``: the connection is closed after the data, without a reply;
* ``slow<ms>@…``: the reply to the data comes after that many milliseconds.

Every accepted message is kept in ``received`` (envelope and parsed headers) in arrival order.
The server runs in a thread (``aiosmtpd.controller.Controller``): the code under test talks to
it over a real TCP socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from tests.helpers import free_port

TEXTS = {
    550: "5.1.1 User unknown",
    551: "5.1.6 Mailbox moved",
    451: "4.3.0 Temporary failure, try again later",
    452: "4.2.2 Mailbox full",
    554: "5.7.1 Message rejected",
}
_CODE = re.compile(r"^(rcpt|data|mail)(\d{3})$")
_SLOW = re.compile(r"^slow(\d+)$")


def _local(address: str) -> str:
    return address.split("@", 1)[0].lower()


def _reply(code: int) -> str:
    return f"{code} {TEXTS.get(code, 'scripted reply')}"


_MAIL_ID = re.compile(rb"^X-Genro-Mail-ID: ([^\r\n]*)", re.MULTILINE)


@dataclasses.dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float
    #: The X-Genro-Mail-ID header, read cheaply at arrival (tests poll ``ids()`` often).
    mail_id: str = ""

    def __post_init__(self) -> None:
        found = _MAIL_ID.search(self.data)
        self.mail_id = found.group(1).decode() if found else ""

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class ScriptedHandler:
    """aiosmtpd handler hooks with the scripts described in the module docstring."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.sessions = 0
        self.max_sessions = 0
        self.connections = 0
        #: Messages whose data arrived (counted before any scripted reply or delay).
        self.data_received = 0
        #: Ignore every script and accept everything (a server that "recovered").
        self.accept_all = False

    def session_opened(self) -> None:
        with self.lock:
            self.sessions += 1
            self.connections += 1
            self.max_sessions = max(self.max_sessions, self.sessions)

    def session_closed(self) -> None:
        with self.lock:
            self.sessions -= 1

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        match = _CODE.match(_local(address))
        if match and match.group(1) == "mail" and not self.accept_all:
            return _reply(int(match.group(2)))
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        match = _CODE.match(_local(address))
        if match and match.group(1) == "rcpt" and not self.accept_all:
            return _reply(int(match.group(2)))
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_received += 1  # the whole message data is in; the reply is next
        locals_ = [] if self.accept_all else [_local(a) for a in envelope.rcpt_tos]
        for local in locals_:
            slow = _SLOW.match(local)
            if slow:
                await asyncio.sleep(int(slow.group(1)) / 1000)
        if "drop" in locals_:
            # Record that the data arrived, then vanish without a reply.
            self._keep(envelope)
            assert server.transport is not None
            server.transport.close()
            return "421 closing"  # never reaches the client: the transport is gone
        for local in locals_:
            match = _CODE.match(local)
            if match and match.group(1) == "data":
                return _reply(int(match.group(2)))
        self._keep(envelope)
        return "250 2.0.0 OK queued"

    def _keep(self, envelope: Any) -> None:
        with self.lock:
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or b""),
                    time.time(),
                )
            )

    def ids(self) -> list[str]:
        with self.lock:
            return [r.mail_id for r in self.received]


class _CountingSMTP(SMTP):
    def __init__(self, handler: ScriptedHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._counter = handler
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._counted:
            self._counted = True
            self._counter.session_opened()
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self._counter.session_closed()
        super().connection_lost(error)


class ScriptedController(Controller):
    """A ``Controller`` on 127.0.0.1 with a free port and session counting."""

    def __init__(self, handler: ScriptedHandler) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=free_port(), ready_timeout=10)
        self.scripted = handler

    def factory(self) -> SMTP:
        return _CountingSMTP(
            self.scripted, hostname="mx.test", ident="scripted", enable_SMTPUTF8=True
        )
