"""Pytest plugin: the real HTTP API over a real database, and clients for it.

``api_server`` starts hypercorn on a free loopback port in a background thread with its
own trio loop, serving ``create_app(ctx)`` where ``ctx`` is a genuine ``ServiceContext``
over a freshly opened database. The supervisor end of the link is a :class:`RecordingLink`,
a small in-process object that records what the API sends and answers the few calls the
API makes (the daemon's system tests cover the real link). Running the server in its own
thread lets sync clients (httpx, schemathesis) and async tests alike talk to it.

Every response body any client of this plugin receives is kept in :data:`RESPONSES`, so
the secrets test (``test_secrets.py``, run last) can prove no secret ever left the API.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from mailproxyd.core.crypto import SecretBox
from mailproxyd.settings import Settings
from tests.helpers import make_settings

PG_ADMIN_URL = os.environ.get("MAIL_PROXY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# (request line, status, body bytes) of every response received through these clients.
RESPONSES: list[tuple[str, int, bytes]] = []
# Secret values handed to the API by the tests: none may ever come back in a response.
SECRETS: set[str] = set()
# Tenant API keys: allowed only in the response that issued them.
ISSUED_KEYS: dict[str, str] = {}


def secret(value: str) -> str:
    """Register ``value`` as a secret the API must never return, and give it back."""
    SECRETS.add(value)
    return value


async def refused_upgrade(
    url: str, headers: list[tuple[bytes, bytes]] | None = None, timeout: float = 5.0
) -> Any:
    """Open a WebSocket to ``url`` (``ws://host:port/path``) that the server must refuse, and
    return trio-websocket's ``ConnectionRejected`` (its ``status_code`` and ``body``).

    Unlike ``open_websocket_url``, which leaves the socket of a refused upgrade to the garbage
    collector, the TCP stream is this helper's own and is closed here.
    """
    from urllib.parse import urlsplit

    from trio_websocket import ConnectionRejected, wrap_client_stream

    parts = urlsplit(url)
    assert parts.scheme == "ws" and parts.hostname and parts.port, url
    resource = parts.path + (f"?{parts.query}" if parts.query else "")
    rejected: list[ConnectionRejected] = []
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        try:
            try:
                async with trio.open_nursery() as nursery:
                    await wrap_client_stream(
                        nursery, stream, parts.netloc, resource, extra_headers=headers
                    )
                    pytest.fail(f"the upgrade of {url} was accepted")
            except* ConnectionRejected as group:
                rejected.extend(group.exceptions)  # type: ignore[arg-type]
        finally:
            await stream.aclose()
    return rejected[0]


class RecordingLink:
    """The supervisor side of the worker link, reduced to recording and canned answers."""

    def __init__(self, sender_processes: int = 2) -> None:
        self.sent: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sender_processes = sender_processes
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return False

    async def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.sent.append(dict(message))

    async def wake(self, target: str, reason: str, tenant_id: str | None = None) -> None:
        msg: dict[str, Any] = {"type": "wake", "target": target, "reason": reason}
        if tenant_id is not None:
            msg["tenant_id"] = tenant_id
        await self.send(msg)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 15.0
    ) -> dict[str, Any]:
        with self._lock:
            self.calls.append((method, dict(params or {})))
        workers = {
            "api": {"expected": 1, "running": 1},
            "sender": {"expected": self.sender_processes, "running": self.sender_processes},
            "reporter": {"expected": 1, "running": 1},
        }
        if method == "status":
            return {"workers": workers}
        if method == "run_now":
            return {"triggered": True}
        if method == "workers":
            return {"workers": []}
        return {}

    def wakes(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.sent if m.get("type") == "wake"]


@dataclasses.dataclass
class ApiServer:
    """A running API: its base URL, settings, database and link."""

    url: str
    settings: Settings
    db: Any  # mailproxyd.store.Database, for looking behind the API
    link: RecordingLink
    admin_token: str
    ctx: Any = None

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """A sync client; ``token`` becomes ``X-API-Token``; responses are recorded."""
        headers = {"X-API-Token": token} if token else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=30,
            event_hooks={"response": [_record]},
            **kwargs,
        )

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)

    def set_settings(self, **changes: Any) -> None:
        """Replace ``ctx.settings`` as a reload would (reference §3.4)."""
        self.ctx.settings = dataclasses.replace(self.ctx.settings, **changes)
        self.settings = self.ctx.settings


def _record(response: httpx.Response) -> None:
    response.read()
    RESPONSES.append(
        (
            f"{response.request.method} {response.request.url.path}",
            response.status_code,
            response.content,
        )
    )


class _ServerThread:
    """hypercorn + the app in a thread of its own, stopped through its trio token."""

    def __init__(self, settings: Settings, key: bytes, link: RecordingLink) -> None:
        self.settings = settings
        self.key = key
        self.link = link
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.binds: list[str] = []
        self.ctx: Any = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="api-server", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self.ready.wait(30) or self.error is not None:
            raise RuntimeError(f"API server did not start: {self.error!r}")

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        from mailproxyd.api import create_app
        from mailproxyd.services.context import ServiceContext
        from mailproxyd.store import AsyncDatabase, open_database

        db = open_database(self.settings.database, box=SecretBox(self.key))
        self.ctx = ServiceContext(
            kind="api",
            index=0,
            settings=self.settings,
            db=AsyncDatabase(db),
            link=self.link,  # type: ignore[arg-type]
            log=logging.getLogger("mailproxyd.api.test"),
            instance_key=self.key,
        )
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.websocket_ping_interval = 20
        config.graceful_timeout = 0.2
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                self.binds = await nursery.start(
                    lambda task_status: serve(
                        create_app(self.ctx),
                        config,
                        shutdown_trigger=self._stop.wait,  # type: ignore[union-attr]
                        task_status=task_status,
                    )
                )
                self.ready.set()
        finally:
            db.close()

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(15)


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def api_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database for the session: a SQLite file, or a throw-away PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path_factory.mktemp('api') / 'api.db'}"
        return
    psycopg = pytest.importorskip("psycopg")
    name = f"mp_api_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            # A throw-away database: durability of each commit buys the tests nothing.
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    except psycopg.OperationalError as exc:
        if os.environ.get("MAIL_PROXY_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Rows the schema itself creates; everything else is emptied between tests.
_KEEP_TABLES = frozenset({"schema_version", "seq_counter"})


def _reset_database(url: str) -> None:
    """Empty every data table, so each test starts from a new-database state."""
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            ).fetchall()
            tables = [r[0] for r in rows if r[0] not in _KEEP_TABLES]
            # DELETE beats TRUNCATE by far on a handful of rows; FK order is skipped by
            # disabling triggers for this session (the test role is a superuser).
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")
                for table in tables:
                    conn.execute(f'DELETE FROM "{table}"')
        return
    import sqlite3

    lite = sqlite3.connect(url.removeprefix("sqlite:"), timeout=10)
    try:
        names = [
            r[0]
            for r in lite.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        lite.execute("PRAGMA foreign_keys = OFF")
        for name in names:
            if name not in _KEEP_TABLES:
                lite.execute(f'DELETE FROM "{name}"')
        lite.commit()
    finally:
        lite.close()


@dataclasses.dataclass
class _Backend:
    server: _ServerThread
    settings: Settings
    db: Any


@pytest.fixture(scope="session")
def _api_backend(api_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Backend]:
    """One API server per backend for the whole session (fast); state is reset per test."""
    from mailproxyd.store import open_database

    key = secrets.token_bytes(32)
    settings = make_settings(
        api_db_url,
        tmp_path_factory.mktemp("home"),
        environ={"GMP_API_TOKEN": secrets.token_urlsafe(32), "GMP_TEST_MODE": "true"},
    )
    SECRETS.add(settings.api_token or "")
    db = open_database(settings.database, box=SecretBox(key))  # migrates once, here
    server = _ServerThread(settings, key, RecordingLink(settings.sender_processes))
    server.start()
    try:
        yield _Backend(server, settings, db)
    finally:
        server.stop()
        db.close()


@pytest.fixture
def api_settings_overrides() -> dict[str, Any]:
    """Override (e.g. with ``parametrize``) to change settings such as ``max_batch``."""
    return {}


@pytest.fixture
def api_server(
    _api_backend: _Backend, api_settings_overrides: dict[str, Any]
) -> Iterator[ApiServer]:
    """The API over an empty database, on both backends."""
    backend = _api_backend
    _reset_database(backend.settings.database)
    link = backend.server.link
    with link._lock:
        link.sent.clear()
        link.calls.clear()
    ctx = backend.server.ctx
    ctx.settings = dataclasses.replace(backend.settings, **api_settings_overrides)
    try:
        yield ApiServer(
            url=backend.server.binds[0],
            settings=ctx.settings,
            db=backend.db,
            link=link,
            admin_token=backend.settings.api_token or "",
            ctx=ctx,
        )
    finally:
        ctx.settings = backend.settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "run_last: run after every other test of the session")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The secrets walk must see every response the suite produced.
    items.sort(key=lambda item: item.get_closest_marker("run_last") is not None)
