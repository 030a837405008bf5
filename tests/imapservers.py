"""A real IMAP server for the bounce tests: pymap's in-memory backend, TLS from trustme.

``imap_server()`` (a factory fixture) starts one server in a thread with its own asyncio loop,
listening on three ports that share one mailbox store:

* ``port`` — plain, offering STARTTLS (``bounce_imap_ssl: false``);
* ``ssl_port`` — implicit TLS (``bounce_imap_ssl: true``, the default);
* an administration port, used by the fixture itself to APPEND messages, read flags and
  recreate folders (a new UIDVALIDITY), so that its own sessions stay out of the log.

Every session of the first two ports is logged (:attr:`ImapServer.sessions`: when opened and closed),
so tests can show that pollers never overlapped. ``stop()`` / ``start()`` take the
server down and bring it back on the same ports with the same messages. The certificate is
issued by ``smtp_ca`` (tests/smtpservers.py), so ``smtp_ca_file`` trusts both servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import imaplib
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

from tests.helpers import free_port

HOST = "127.0.0.1"
USER = "bounces@acme.example"
PASSWORD = "imap-secret"


@dataclasses.dataclass
class Session:
    listener: str  # "plain" or "ssl"
    opened: float  # time.monotonic()
    closed: float | None = None


class ImapServer:
    """One pymap server (see the module docstring)."""

    def __init__(self, ca: trustme.CA, user: str = USER, password: str = PASSWORD) -> None:
        self.host = HOST
        self.user = user
        self.password = password
        self.port = free_port()
        self.ssl_port = free_port()
        self.admin_port = free_port()
        self.sessions: list[Session] = []
        self._lock = threading.Lock()
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", HOST).configure_cert(self._context)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._servers: list[asyncio.AbstractServer] = []
        self._login: Any = None
        self._configs: dict[str, Any] = {}
        self._run(self._setup())
        self.start()

    # ------------------------------------------------------------------ lifecycle

    def _run(self, coro: Any, timeout: float = 15.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _setup(self) -> None:
        from pymap.backend.dict import Config, DictBackend, Login
        from pysasl.hashing import BuiltinHash

        # pymap's greeting names the host; without this it asks DNS on every connection.
        os.environ.setdefault("FQDN", "imap.test")

        args = argparse.Namespace(passlib_cfg=None, proxy_protocol=None, debug=False)
        # The default hash takes 500,000 PBKDF2 rounds per login: a second of CPU per session.
        cheap_hash = BuiltinHash(rounds=1000)

        def config(tls: bool) -> Any:
            return Config(
                args,
                host=HOST,
                port=0,
                demo_data=False,
                demo_user=self.user,
                demo_password=self.password,
                ssl_context=self._context,
                tls_enabled=tls,
                reject_dnsbl=False,
                invalid_user_sleep=0.0,
                hash_context=cheap_hash,
            )

        main = config(True)
        self._login = Login(main)
        await DictBackend._add_demo_user(main, self._login)
        # The implicit-TLS port is already encrypted: no STARTTLS there.
        self._configs = {"plain": main, "ssl": config(False), "admin": config(False)}

    async def _start(self) -> None:
        from proxyprotocol.reader import ProxyProtocolReader
        from pymap.imap import IMAPServer

        for name, port, context in (
            ("plain", self.port, None),
            ("ssl", self.ssl_port, self._context),
            ("admin", self.admin_port, None),
        ):
            config = self._configs[name]
            handler = ProxyProtocolReader(config.proxy_protocol).get_callback(
                IMAPServer(self._login, config)
            )
            server = await asyncio.start_server(
                self._logged(name, handler), HOST, port, ssl=context, reuse_address=True
            )
            self._servers.append(server)

    def _logged(self, name: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            session = Session(name, time.monotonic())
            if name != "admin":
                with self._lock:
                    self.sessions.append(session)
            try:
                await handler(reader, writer)
            finally:
                session.closed = time.monotonic()

        return serve

    async def _stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
            with contextlib.suppress(Exception):
                server.close_clients()  # type: ignore[attr-defined]  # Python 3.13+
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    def start(self) -> None:
        self._run(self._start())

    def stop(self) -> None:
        """Stop listening (the messages are kept for the next ``start``)."""
        self._run(self._stop())

    async def _shutdown(self) -> None:
        await self._stop()
        # Sessions still open (a poller cancelled mid-session) end here, not in a dead loop.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()  # else the loop is left to the garbage collector, unclosed

    # ------------------------------------------------------------------ the mailbox

    @contextlib.contextmanager
    def _admin(self) -> Iterator[imaplib.IMAP4]:
        imap = imaplib.IMAP4(HOST, self.admin_port, timeout=10)
        try:
            imap.login(self.user, self.password)
            yield imap
        finally:
            with contextlib.suppress(Exception):
                imap.logout()

    def append(self, raw: bytes, folder: str = "INBOX") -> int:
        """Deliver one message into ``folder``; returns its UID."""
        with self._admin() as imap:
            typ, data = imap.append(folder, None, None, raw)
            assert typ == "OK", data
            match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            assert match, data
            return int(match.group(1))

    def create(self, folder: str) -> None:
        with self._admin() as imap:
            typ, data = imap.create(folder)
            assert typ == "OK", data

    def recreate(self, folder: str) -> None:
        """Delete and create ``folder`` again: empty, with a new UIDVALIDITY."""
        with self._admin() as imap:
            typ, data = imap.delete(folder)
            assert typ == "OK", data
            typ, data = imap.create(folder)
            assert typ == "OK", data

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self._admin() as imap:
            typ, data = imap.status(folder, "(UIDVALIDITY)")
            assert typ == "OK", data
            match = re.search(rb"UIDVALIDITY (\d+)", data[0] or b"")
            assert match, data
            return int(match.group(1))

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        """``{uid: {flag, …}}`` of every message in ``folder``."""
        with self._admin() as imap:
            typ, _ = imap.select(folder, readonly=True)
            assert typ == "OK"
            typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS)")
            assert typ == "OK", data
        found: dict[int, set[str]] = {}
        for item in data:
            if not isinstance(item, bytes):
                continue
            uid = re.search(rb"UID (\d+)", item)
            flags = re.search(rb"FLAGS \(([^)]*)\)", item)
            if uid:
                found[int(uid.group(1))] = set(flags.group(1).decode().split()) if flags else set()
        return found

    def count(self, folder: str = "INBOX") -> int:
        return len(self.flags(folder))

    def closed_sessions(self) -> list[Session]:
        with self._lock:
            return [s for s in self.sessions if s.closed is not None]

    def max_concurrent(self) -> int:
        """The most poller sessions that were ever open at the same time."""
        with self._lock:
            edges = []
            for s in self.sessions:
                edges.append((s.opened, 1))
                edges.append((s.closed if s.closed is not None else float("inf"), -1))
        most = current = 0
        for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
            current += step
            most = max(most, current)
        return most


@pytest.fixture
def imap_server(smtp_ca: trustme.CA) -> Iterator[Callable[..., ImapServer]]:
    started: list[ImapServer] = []

    def start(**kwargs: Any) -> ImapServer:
        server = ImapServer(smtp_ca, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
