"""The API worker process: ``python -m mailproxyd.workers.api``.

Runs the quart-trio application of ``mailproxyd.api`` under hypercorn inside trio. The listening
socket is bound before anything else so that a port in use is reported as a fatal start error
(the node exits 1, reference §18.4) instead of a crash loop, and ``started()`` is reported only once
hypercorn really accepts connections. A stop closes the listener and gives requests in progress
up to ``link.API_GRACE_SECONDS`` (reference §18.3).
"""

from __future__ import annotations

import errno
import logging
import socket
import sys

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from mailproxyd.api.app import create_asgi_app
from mailproxyd.link import API_GRACE_SECONDS
from mailproxyd.services.context import ServiceContext
from mailproxyd.workers._runtime import FatalWorkerError, run_worker

#: Connection bounds (hypercorn's own settings): an idle keep-alive connection, or one whose
#: request headers are not complete, is closed after KEEP_ALIVE_SECONDS; a connection on which
#: the client sends nothing for READ_TIMEOUT_SECONDS is closed (WebSocket clients answer the
#: 20 s pings, so a live /events stream is never cut); at most BACKLOG connections wait to be
#: accepted (the kernel caps it at net.core.somaxconn). Request bodies are bounded by the
#: application (10 s, then 408).
KEEP_ALIVE_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 60
#: The event loop accepts one connection per scheduling round, so under overload connections
#: queue up: with 128, a burst (hundreds of slow clients, every refused client reconnecting)
#: filled the queue, the kernel dropped new SYNs, and a client's connect took 1 s or 3 s
#: (its SYN retransmits; /health over 1 s in the overload fault test, the kernel's
#: ListenOverflows counter rising). Queued, a connection costs the kernel a few hundred bytes.
BACKLOG = 2048
#: Accept loops per listening socket (see ``_with_accept_loops``).
ACCEPT_LOOPS = 8
#: How long a thread holds the GIL while another waits for it (CPython's default is 5 ms).
GIL_SWITCH_SECONDS = 0.001


def _config(ctx: ServiceContext) -> Config:
    config = Config()
    host = str(ctx.settings.host)
    # IPv6 literals need brackets in a hypercorn bind string.
    bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    config.bind = [f"{bind_host}:{ctx.settings.port}"]
    config.graceful_timeout = API_GRACE_SECONDS
    config.accesslog = None
    # /events pings every 20 s (reference §5.9); hypercorn sends the WebSocket pings.
    config.websocket_ping_interval = 20.0
    # Hypercorn's own INFO lines ("Running on … (CTRL + C to quit)") would contradict the
    # node's ready line; its warnings and errors still reach the log.
    hypercorn_log = logging.getLogger("mailproxyd.api.hypercorn")
    hypercorn_log.setLevel(logging.WARNING)
    config.errorlog = hypercorn_log
    # Bodies are capped by the application (GMP_MAX_REQUEST_MB); hypercorn's own caps stay wide.
    config.h11_max_incomplete_size = 64 * 1024
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.read_timeout = READ_TIMEOUT_SECONDS
    config.backlog = BACKLOG
    return config


def _with_accept_loops(sockets: Sockets) -> Sockets:
    """``sockets`` with each listening socket given ``ACCEPT_LOOPS`` file descriptors.

    Hypercorn runs one accept loop per socket, and a loop accepts one connection per round of
    the event loop: under overload, a burst of connections (hundreds of slow clients at once)
    waited in the kernel's queue for seconds, a new client (a health check) behind them. Each
    duplicate descriptor gets a loop of its own, so a round accepts up to ``ACCEPT_LOOPS``.
    """
    insecure = [
        dup for sock in sockets.insecure_sockets for dup in [sock, *_dups(sock, ACCEPT_LOOPS - 1)]
    ]
    return Sockets(sockets.secure_sockets, insecure, sockets.quic_sockets)


def _dups(sock: socket.socket, count: int) -> list[socket.socket]:
    return [sock.dup() for _ in range(count)]


async def api_body(
    ctx: ServiceContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    config = _config(ctx)
    try:
        sockets = config.create_sockets()
    except OSError as exc:
        where = f"{ctx.settings.host}:{ctx.settings.port}"
        if exc.errno == errno.EADDRINUSE:
            raise FatalWorkerError(
                f"port {ctx.settings.port} is already in use ({where})"
            ) from None
        raise FatalWorkerError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
    sockets = _with_accept_loops(sockets)
    app = wrap_app(create_asgi_app(ctx), config.wsgi_max_body_size, None)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: worker_serve(
                app,
                config,
                sockets=sockets,
                shutdown_trigger=ctx.stopping.wait,
                task_status=task_status,
            )
        )
        ctx.log.info("listening on http://%s:%s", ctx.settings.host, ctx.settings.port)
        task_status.started()


def main() -> None:
    # The ingest writer's thread validates and stores whole groups of requests while holding
    # the GIL; at the default 5 ms switch interval the event loop waited behind it at every
    # wake-up, and /health took 1.4 s (p90) in the long overload test. At 1 ms: 0.69 s.
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    run_worker("api", api_body)


if __name__ == "__main__":
    main()
