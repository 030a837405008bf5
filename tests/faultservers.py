"""Raw socket servers that misbehave on purpose, for the fault suite.

* :class:`FaultSmtpServer` — a minimal SMTP server (plain, STARTTLS or implicit TLS, optional
  ``AUTH PLAIN``) that answers normally until the session reaches the scripted stage, then drops
  the connection, resets it, stalls, answers garbage or ``421``. Written on bare sockets because
  aiosmtpd cannot drop a session before its banner or in the middle of the message data.
* :class:`RawHttpServer` — answers every request with fixed raw bytes, then closes, resets or
  hangs: truncated bodies, non-HTTP answers, resets and hangs of an attachment endpoint.
* :class:`TcpProxy` — forwards to a real server (the pymap IMAP server) and, once the client
  sends a chosen pattern (``FETCH``), drops or stalls the connection.

Each records what it saw (connections, commands, message data) for the assertions. Stalls end
when the server is closed, so teardown never waits for them.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from dataclasses import dataclass, field

__all__ = ["FaultSmtpServer", "RawHttpServer", "SmtpFault", "TcpProxy"]

HOST = "127.0.0.1"

# Stages of a session where a fault can be injected: "connect" (before the banner), a command
# verb (the fault replaces the reply to it), "354" (inside the message data, after the 354 and
# the first chunk of data), "dot" (after the terminating dot, instead of the reply).
STAGES = ("connect", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "354", "dot")


@dataclass(frozen=True)
class SmtpFault:
    """At ``stage``, do ``action``: ``drop`` (FIN), ``reset`` (RST), ``stall`` (say nothing
    until the client gives up), ``garbage`` (a line that is no SMTP reply), ``421`` (the
    server shutting down mid-session: a 421 reply, then close), or ``reply`` (``text`` as
    the reply, session goes on). ``421`` sends ``text`` instead of its 421 when given: a reply
    followed by a close (e.g. ``220`` to STARTTLS, then no handshake)."""

    stage: str
    action: str
    text: str = ""

    def __post_init__(self) -> None:
        assert self.stage in STAGES, self.stage
        assert self.action in ("drop", "reset", "stall", "garbage", "421", "reply"), self.action


@dataclass
class SmtpSession:
    commands: list[str] = field(default_factory=list)
    data: bytes = b""
    tls: bool = False


class _Stop(Exception):
    pass


class _Server:
    """A listening socket and one thread per accepted connection."""

    def __init__(self, rcvbuf: int | None = None) -> None:
        self._sock = socket.socket()
        if rcvbuf is not None:  # inherited by accepted sockets: the client's writes block early
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._sock.bind((HOST, 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.closed = threading.Event()
        self.connections = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve_guarded, args=(conn,), daemon=True).start()

    def _serve_guarded(self, conn: socket.socket) -> None:
        try:
            self.serve(conn)
        except (OSError, ssl.SSLError, _Stop):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def serve(self, conn: socket.socket) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stall(self) -> None:
        """Say nothing until the server closes; the client's timeout ends the session."""
        self.closed.wait()
        raise _Stop

    @staticmethod
    def reset(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        raise _Stop

    def close(self) -> None:
        self.closed.set()
        self._thread.join(2)
        self._sock.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()


class FaultSmtpServer(_Server):
    """See the module docstring. ``tls`` is ``"none"``, ``"starttls"`` (offered) or
    ``"implicit"`` with ``context`` (a server-side SSL context); ``auth`` offers AUTH PLAIN and
    accepts any credentials. ``sessions`` lists every connection's commands and data."""

    def __init__(
        self,
        fault: SmtpFault | None,
        *,
        tls: str = "none",
        context: ssl.SSLContext | None = None,
        auth: bool = False,
        rcvbuf: int | None = None,
    ) -> None:
        self.fault = fault
        self.tls = tls
        self.context = context
        self.auth = auth
        self.sessions: list[SmtpSession] = []
        super().__init__(rcvbuf)

    # ------------------------------------------------------------------ one session

    def serve(self, conn: socket.socket) -> None:
        session = SmtpSession()
        with self._lock:
            self.sessions.append(session)
        sock: socket.socket = conn
        if self.tls == "implicit":
            assert self.context is not None
            sock = self.context.wrap_socket(conn, server_side=True)
            session.tls = True
        reader = _LineReader(sock)
        if not self._fault_at("connect", sock, conn):
            self._send(sock, "220 faulty.test ESMTP ready")
        while True:
            line = reader.line()
            verb = line.split(" ", 1)[0].upper()
            session.commands.append(verb)
            if self._fault_at(verb, sock, conn):
                continue
            if verb in ("EHLO", "HELO"):
                lines = ["faulty.test", "SIZE 52428800", "8BITMIME"]
                if self.tls == "starttls" and not session.tls:
                    lines.append("STARTTLS")
                if self.auth:
                    lines.append("AUTH PLAIN")
                self._send(sock, *(f"250{'-' if i < len(lines) - 1 else ' '}{t}"
                                   for i, t in enumerate(lines)))  # fmt: skip
            elif verb == "STARTTLS":
                assert self.context is not None
                self._send(sock, "220 2.0.0 Ready to start TLS")
                sock = self.context.wrap_socket(sock, server_side=True)
                reader = _LineReader(sock)
                session.tls = True
            elif verb == "AUTH":
                self._send(sock, "235 2.7.0 Authentication successful")
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                self._send(sock, "250 2.0.0 OK")
            elif verb == "DATA":
                self._send(sock, "354 End data with <CR><LF>.<CR><LF>")
                first = reader.chunk()
                session.data += first
                if self._fault_at("354", sock, conn):
                    continue
                while not session.data.endswith(b"\r\n.\r\n"):
                    session.data += reader.chunk()
                if self._fault_at("dot", sock, conn):
                    continue
                self._send(sock, "250 2.0.0 OK: queued")
            elif verb == "QUIT":
                self._send(sock, "221 2.0.0 Bye")
                return
            else:
                self._send(sock, "502 5.5.2 Command not recognized")

    def _fault_at(self, stage: str, sock: socket.socket, raw: socket.socket) -> bool:
        """Apply the fault when ``stage`` is its stage; True when a reply was sent instead."""
        fault = self.fault
        if fault is None or fault.stage != stage:
            return False
        if fault.action == "drop":
            sock.close()
            raise _Stop
        if fault.action == "reset":
            self.reset(raw)
        if fault.action == "stall":
            self.stall()
        if fault.action == "garbage":
            sock.sendall(b"hello? \x00\xff this is not SMTP\r\n")
            return True
        if fault.action == "421":
            self._send(sock, fault.text or "421 4.3.2 Service shutting down")
            sock.close()
            raise _Stop
        self._send(sock, fault.text)
        return True

    @staticmethod
    def _send(sock: socket.socket, *lines: str) -> None:
        sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def transactions(self) -> list[SmtpSession]:
        """Sessions that reached the message data."""
        with self._lock:
            return [s for s in self.sessions if s.data]


class _LineReader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise _Stop
        self.buf += data

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def chunk(self) -> bytes:
        """Whatever is buffered, or the next read."""
        if not self.buf:
            self._more()
        data, self.buf = self.buf, b""
        return data


class RawHttpServer(_Server):
    """Reads a request, answers ``answer`` (raw bytes, may be empty), then ``after``: ``close``,
    ``reset`` or ``hang``. ``answer`` empty with ``reset``: a reset instead of any answer."""

    def __init__(self, answer: bytes, after: str = "close") -> None:
        assert after in ("close", "reset", "hang"), after
        self.answer = answer
        self.after = after
        self.requests: list[str] = []  # request lines ("POST /path HTTP/1.1")
        super().__init__()

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.split(" ")[1:2] == [path])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
        with self._lock:
            self.requests.append(buf.split(b"\r\n", 1)[0].decode("latin-1"))
        if self.answer:
            conn.sendall(self.answer)
        if self.after == "reset":
            self.reset(conn)
        if self.after == "hang":
            self.stall()


class TcpProxy(_Server):
    """Forwards to ``upstream``; when ``trigger`` appears in what the client sends and the
    fault is armed, ``action`` (``drop`` or ``stall``) instead of forwarding it."""

    def __init__(self, upstream: tuple[str, int], trigger: bytes, action: str = "drop") -> None:
        assert action in ("drop", "stall"), action
        self.upstream = upstream
        self.trigger = trigger
        self.action = action
        self.armed = threading.Event()
        self.armed.set()
        self.faults = 0
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        up = socket.create_connection(self.upstream, timeout=10)
        up.settimeout(None)
        done = threading.Event()

        def pump_down() -> None:
            try:
                while not done.is_set():
                    data = up.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
            except OSError:
                pass
            finally:
                done.set()
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pump_down, daemon=True).start()
        try:
            while not done.is_set():
                data = conn.recv(65536)
                if not data:
                    break
                if self.armed.is_set() and self.trigger in data.upper():
                    with self._lock:
                        self.faults += 1
                    if self.action == "stall":
                        self.stall()
                    raise _Stop
                up.sendall(data)
        finally:
            done.set()
            with contextlib.suppress(OSError):
                up.close()
