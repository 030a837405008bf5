"""Real HTTP servers serving attachment content (``http_url`` and ``endpoint`` modes).

``file_server()`` (fixture factory) starts a threaded HTTP/1.1 server on 127.0.0.1. Routes map
a path to a :class:`Serve`: fixed bytes, a status, a redirect, or a generated body of a given
size streamed in chunks (so a 30 MB answer costs the server no memory). Every request is
recorded with its method, path, headers and body; ``connections`` counts accepted sockets.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Serve:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    #: Stream this many bytes of ``b"x"`` instead of ``body`` (no Content-Length: chunked).
    stream_size: int | None = None


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FileServer:
    routes: dict[str, Serve] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    streamed: int = 0  # bytes of stream_size answers actually written
    aborted: int = 0  # stream_size answers the client cut off before their end
    #: SO_SNDBUF of accepted connections (small: less data sits in buffers when cut off).
    send_buffer: int | None = None

    def start(self, ssl_context: Any = None) -> None:
        """Serve on a free port; with ``ssl_context`` (server side) over TLS."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                server.connections += 1
                if server.send_buffer is not None:
                    self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, server.send_buffer)
                super().setup()

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append(
                    Request(self.command, self.path, dict(self.headers.items()), body)
                )
                serve = server.routes.get(self.path.split("?", 1)[0], Serve(status=404))
                self.send_response(serve.status)
                for name, value in serve.headers:
                    self.send_header(name, value)
                if serve.stream_size is not None:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"x" * 65536
                    left = serve.stream_size
                    try:
                        while left > 0:
                            part = chunk[: min(left, len(chunk))]
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                            server.streamed += len(part)
                            left -= len(part)
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                    except OSError:
                        server.aborted += 1
                        self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(serve.body)))
                self.end_headers()
                self.wfile.write(serve.body)

            do_GET = _answer
            do_POST = _answer

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def file_server() -> Iterator[Any]:
    made: list[FileServer] = []

    def make(routes: dict[str, Serve] | None = None) -> FileServer:
        srv = FileServer(routes=dict(routes or {}))
        srv.start()
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()
