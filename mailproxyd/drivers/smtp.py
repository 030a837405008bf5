"""SMTP sessions over pooled connections (reference §10.1, §10.2) — the only ``smtplib`` user.

A :class:`SmtpPool` keeps idle connections per account and runs each attempt as a blocking
smtplib session in a worker thread (``trio.to_thread`` with its own ``CapacityLimiter``). The
transaction is driven step by step — ``MAIL``, one ``RCPT`` per recipient, ``DATA``, the data,
the final reply — so that the driver always knows the stage of a reply and whether the
terminating dot was sent. Every smtplib, socket and ssl exception is translated here into the
facts of an :class:`~mailproxyd.core.smtp_outcome.Attempt`; the judgement (sent, temporary,
permanent, uncertain) and the error texts come from :mod:`mailproxyd.core.smtp_outcome`.
Nothing from smtplib leaks out of this module.
"""

from __future__ import annotations

import binascii
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from mailproxyd.core.mime import Built, FileSegment
from mailproxyd.core.models.account import derive_tls_mode
from mailproxyd.core.netpolicy import Policy
from mailproxyd.core.smtp_outcome import (
    CONNECT_TIMEOUT_SECONDS,
    DATA_TIMEOUT_SECONDS,
    SMTP_TIMEOUT_SECONDS,
    Attempt,
    Failure,
    Outcome,
    RcptReply,
    Stage,
    classify,
)
from mailproxyd.drivers.connect import AddressRefused, ResolveFailed, connect_blocking

__all__ = ["AttemptResult", "SmtpAccount", "SmtpPool"]

_AUTH_PREFERENCE = ("CRAM-MD5", "PLAIN", "LOGIN")  # best first (reference §10.2)
_CHUNK = 64 * 1024  # data is written in chunks so the timeout means "no progress"
# A dot-atom addr-spec (RFC 5321 reference §4.1.2) with a domain of letters, digits, dots and hyphens: the
# common envelope address, which ``smtplib.quoteaddr`` (a full RFC 2822 parse, the largest
# cost of a session's commands) would return unchanged between angle brackets.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDR = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


#: Hosts set with the admin token: anything but link-local and the like (reference §11.3).
ADMIN_HOST = Policy(trusted=True)


@dataclass(frozen=True, slots=True)
class SmtpAccount:
    """What a session needs to know about an account (plaintext password, from the store)."""

    host: str
    port: int
    user: str | None = None
    password: str | None = None
    tls_mode: str = "opportunistic"
    tls_verify: bool = True
    ttl: float = 300.0
    max_concurrent: int = 3
    #: Where the host may lead (reference §11.3): an admin-set host is trusted (never link-local); one
    #: set with a tenant key follows the http_url rule.
    policy: Policy = ADMIN_HOST

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any], *, allow_private: bool = False) -> SmtpAccount:
        port = int(m["port"])
        return cls(
            policy=Policy(trusted=not m.get("host_untrusted"), allow_private=allow_private),
            host=str(m["host"]),
            port=port,
            user=m.get("user") or None,
            password=m.get("password"),
            tls_mode=derive_tls_mode(m.get("tls_mode") or None, m.get("use_tls"), port),
            tls_verify=m.get("tls_verify", True) is not False,
            ttl=float(m.get("ttl") or 300),
            max_concurrent=int(m.get("max_concurrent") or 3),
        )

    def connection_key(self) -> tuple[Any, ...]:
        """Fields that must match for an idle connection to be reused for this account."""
        return (
            self.host,
            self.port,
            self.user,
            self.password,
            self.tls_mode,
            self.tls_verify,
            self.ttl,
            self.policy,
        )


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """The classified outcome of one attempt plus what the log line and metrics need."""

    outcome: Outcome
    attempt: Attempt
    duration_ms: int
    reused: bool = False

    @property
    def accepted_recipients(self) -> int:
        return sum(1 for r in self.attempt.rcpts if 200 <= r.code < 300)


@dataclass(slots=True)
class _Conn:
    smtp: _Session
    key: tuple[Any, ...]  # SmtpAccount.connection_key() of the account it was opened for
    ttl: float
    last_used: float


class _Stop(Exception):
    """Ends a session early with a fully described attempt."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(attempt.stage.value)
        self.attempt = attempt


class SmtpPool:
    """Pooled SMTP delivery for every account of a sender process.

    ``timeout`` is ``GMP_SMTP_TIMEOUT``; the reply to the data is awaited
    ``max(data_timeout, timeout)``. ``cafile`` or ``ssl_context_factory(verify)`` replace the
    system trust store (tests); production leaves both unset so that
    ``ssl.create_default_context()`` honours ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``.
    """

    def __init__(
        self,
        *,
        timeout: float = SMTP_TIMEOUT_SECONDS,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        data_timeout: float = DATA_TIMEOUT_SECONDS,
        local_hostname: str | None = None,
        cafile: str | None = None,
        ssl_context_factory: Callable[[bool], ssl.SSLContext] | None = None,
        threads: int = 32,
        clock: Callable[[], float] = time.monotonic,
        allow_private: bool = False,
    ) -> None:
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.data_timeout = max(data_timeout, timeout)
        self._local_hostname = local_hostname
        self._cafile = cafile
        self._ssl_factory = ssl_context_factory
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self._idle: dict[Hashable, list[_Conn]] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._closed = False
        self.limiter = trio.CapacityLimiter(threads)
        self.connections_opened = 0  # observable for tests and metrics
        # GMP_ALLOW_PRIVATE_NETWORKS, for hosts set with a tenant key (reference §11.3).
        self.allow_private = allow_private

    # ------------------------------------------------------------------ async surface

    async def send(
        self, key: Hashable, account: SmtpAccount | Mapping[str, Any], built: Built
    ) -> AttemptResult:
        """One delivery attempt of ``built`` through ``account`` (pooled under ``key``)."""
        acc = (
            account
            if isinstance(account, SmtpAccount)
            else SmtpAccount.from_mapping(account, allow_private=self.allow_private)
        )
        return await trio.to_thread.run_sync(
            self.send_blocking, key, acc, built, limiter=self.limiter
        )

    async def sweep(self) -> int:
        """Close idle connections older than their account's ``ttl``; returns how many."""
        return await trio.to_thread.run_sync(self.sweep_blocking, limiter=self.limiter)

    async def close_idle(self, key: Hashable) -> int:
        """``QUIT`` the idle connections of one account (e.g. deleted or reconfigured)."""
        return await trio.to_thread.run_sync(self.close_idle_blocking, key, limiter=self.limiter)

    async def aclose(self) -> None:
        """``QUIT`` every idle connection (shutdown); connections used later are not pooled."""
        await trio.to_thread.run_sync(self.close_blocking, limiter=self.limiter)

    # ------------------------------------------------------------------ blocking surface

    @property
    def local_hostname(self) -> str:
        if self._local_hostname is None:
            self._local_hostname = socket.getfqdn()  # may do DNS: once per pool
        return self._local_hostname

    def idle_count(self, key: Hashable | None = None) -> int:
        with self._lock:
            if key is not None:
                return len(self._idle.get(key, ()))
            return sum(len(v) for v in self._idle.values())

    def send_blocking(self, key: Hashable, account: SmtpAccount, built: Built) -> AttemptResult:
        """The blocking attempt behind :meth:`send` (runs in a worker thread)."""
        results: list[AttemptResult] = []
        self.send_many_blocking(key, account, [built], results)
        return results[0]

    def send_many_blocking(
        self,
        key: Hashable,
        account: SmtpAccount,
        builts: Sequence[Built],
        results: list[AttemptResult],
        go_on: Callable[[], bool] = lambda: True,
    ) -> None:
        """One attempt per message of ``builts``, in order, over one session when possible.

        Each result is appended to ``results`` as soon as its attempt is over, so a caller that
        stops waiting knows which attempts ended. Before each attempt ``go_on()`` is asked;
        when it answers False the rest are not attempted. Between two messages the session
        needs no ``RSET`` after an accepted one (RFC 5321 reference §4.1.1.4), only after a refused one;
        a connection that cannot go on is closed and the next message opens another.
        """
        conn: _Conn | None = None
        try:
            for built in builts:
                if not go_on():
                    return
                start = time.perf_counter()
                reused = conn is not None
                try:
                    if conn is None:
                        conn = self._reusable(key, account)
                        reused = conn is not None
                        if conn is None:
                            conn = self._open(account)
                    attempt = self._transaction(conn, built)
                    clean = True
                except _Stop as stop:
                    attempt = stop.attempt
                    clean = False
                if conn is not None and not clean:
                    if not _keepable(attempt):
                        _close(conn.smtp, quit_first=_healthy(attempt))
                        conn = None
                    elif built is not builts[-1] and not _reset(conn):
                        conn = None
                duration = int((time.perf_counter() - start) * 1000)
                results.append(AttemptResult(classify(attempt), attempt, duration, reused))
        finally:
            if conn is not None:
                if not self._closed:
                    conn.last_used = self._clock()
                    with self._lock:
                        self._idle.setdefault(key, []).append(conn)
                else:
                    _close(conn.smtp, quit_first=True)

    def sweep_blocking(self) -> int:
        now = self._clock()
        expired: list[_Conn] = []
        with self._lock:
            for key, conns in list(self._idle.items()):
                keep: list[_Conn] = []
                for c in conns:
                    (expired if now - c.last_used >= c.ttl else keep).append(c)
                if keep:
                    self._idle[key] = keep
                else:
                    del self._idle[key]
        for c in expired:
            _close(c.smtp, quit_first=True)
        return len(expired)

    def close_idle_blocking(self, key: Hashable) -> int:
        with self._lock:
            conns = self._idle.pop(key, [])
        for c in conns:
            _close(c.smtp, quit_first=True)
        return len(conns)

    def close_blocking(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c for v in self._idle.values() for c in v]
            self._idle.clear()
        for c in conns:
            _close(c.smtp, quit_first=True)

    # ------------------------------------------------------------------ connections

    def _ssl_context(self, verify: bool) -> ssl.SSLContext:
        ctx = self._contexts.get(verify)
        if ctx is None:
            if self._ssl_factory is not None:
                ctx = self._ssl_factory(verify)
            else:
                ctx = ssl.create_default_context(cafile=self._cafile if verify else None)
                if not verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
            if ctx.minimum_version < ssl.TLSVersion.TLSv1_2:
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._contexts[verify] = ctx
        return ctx

    def _reusable(self, key: Hashable, account: SmtpAccount) -> _Conn | None:
        """An idle connection for the account that answers ``RSET``; stale ones are closed."""
        wanted = account.connection_key()
        while True:
            with self._lock:
                conns = self._idle.get(key)
                conn = conns.pop() if conns else None
            if conn is None:
                return None
            if conn.key != wanted or self._clock() - conn.last_used >= account.ttl:
                _close(conn.smtp, quit_first=True)
                continue
            if _reset(conn):
                return conn

    def _open(self, account: SmtpAccount) -> _Conn:
        """Connect, read the greeting, EHLO, TLS and AUTH; raises :class:`_Stop` on failure."""
        where = f"({account.host}:{account.port})"
        stage = Stage.CONNECT
        smtp = _Session(self.local_hostname, self.timeout)
        try:
            try:
                sock = connect_blocking(
                    account.host, account.port, self.connect_timeout, account.policy
                )
            except AddressRefused:
                failure = Attempt(
                    Stage.CONNECT, failure=Failure.POLICY_REFUSED, detail=account.host
                )
                raise _Stop(failure) from None
            except ResolveFailed as exc:
                raise _Stop(
                    _from_exception(
                        socket.gaierror(socket.EAI_NONAME, str(exc)),
                        Stage.CONNECT,
                        where,
                        self.connect_timeout,
                    )
                ) from None
            except OSError as exc:
                raise _Stop(
                    _from_exception(exc, Stage.CONNECT, where, self.connect_timeout)
                ) from None
            with self._lock:
                self.connections_opened += 1
            sock.settimeout(self.timeout)
            if account.tls_mode == "implicit":
                try:
                    sock = self._ssl_context(account.tls_verify).wrap_socket(
                        sock, server_hostname=account.host
                    )
                except OSError as exc:
                    sock.close()
                    raise _Stop(_from_exception(exc, Stage.CONNECT, "", self.timeout)) from None
            smtp.attach(sock, account.host)

            stage = Stage.GREETING
            code, text = smtp.getreply()
            if code != 220:
                raise _Stop(_reply(stage, code, text))

            stage = Stage.EHLO
            self._hello(smtp)

            if account.tls_mode in ("opportunistic", "starttls"):
                stage = Stage.STARTTLS
                if smtp.has_extn("starttls"):
                    code, text = smtp.docmd("STARTTLS")
                    if code != 220:
                        raise _Stop(_reply(stage, code, text))
                    smtp.upgrade(self._ssl_context(account.tls_verify))
                    stage = Stage.EHLO
                    self._hello(smtp)
                elif account.tls_mode == "starttls":
                    raise _Stop(Attempt(stage, failure=Failure.STARTTLS_NOT_OFFERED))
                elif account.user:
                    raise _Stop(Attempt(stage, failure=Failure.CLEAR_CREDENTIALS))

            if account.user:
                stage = Stage.AUTH
                self._authenticate(smtp, account)
        except _Stop as stop:
            _close(smtp, quit_first=_healthy(stop.attempt))
            raise
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            _close(smtp, quit_first=False)
            raise _Stop(_from_exception(exc, stage, "", self.timeout)) from None
        return _Conn(smtp, account.connection_key(), account.ttl, self._clock())

    def _hello(self, smtp: _Session) -> None:
        code, text = smtp.ehlo(self.local_hostname)
        if 500 <= code < 600:
            code, text = smtp.helo(self.local_hostname)
        if code != 250:
            raise _Stop(_reply(Stage.EHLO, code, text))

    def _authenticate(self, smtp: _Session, account: SmtpAccount) -> None:
        if not smtp.has_extn("auth"):
            raise _Stop(Attempt(Stage.AUTH, failure=Failure.AUTH_NOT_OFFERED))
        offered = smtp.esmtp_features["auth"].upper().split()
        mechanism = next((m for m in _AUTH_PREFERENCE if m in offered), None)
        if mechanism is None:
            raise _Stop(
                Attempt(Stage.AUTH, failure=Failure.NO_COMMON_MECHANISM, detail=" ".join(offered))
            )
        smtp.user, smtp.password = account.user or "", account.password or ""
        authobject = getattr(smtp, "auth_" + mechanism.lower().replace("-", "_"))
        try:
            smtp.auth(mechanism, authobject, initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as exc:
            raise _Stop(_reply(Stage.AUTH, exc.smtp_code, _text(exc.smtp_error))) from None

    # ------------------------------------------------------------------ transaction

    def _transaction(self, conn: _Conn, built: Built) -> Attempt:
        """MAIL, RCPT×n, DATA, the data, its reply. Returns the attempt when the data was
        accepted; raises :class:`_Stop` otherwise."""
        smtp = conn.smtp
        stage = Stage.MAIL
        rcpts: list[RcptReply] = []
        data_sent = False
        try:
            options: list[str] = []
            if built.needs_smtputf8:
                if not smtp.has_extn("smtputf8"):
                    raise _Stop(Attempt(stage, failure=Failure.SMTPUTF8_NOT_OFFERED))
                options.append("SMTPUTF8")
            if built.needs_8bitmime and smtp.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
            if smtp.has_extn("size"):
                options.append(f"SIZE={built.size}")
            pipelined = smtp.has_extn("pipelining") and bool(built.rcpt_to)
            if pipelined:
                # RFC 2920: MAIL, every RCPT and DATA in one write, then their replies in order.
                smtp.send_envelope(built.mail_from, options, built.rcpt_to)
            else:
                smtp.putcmd_mail(built.mail_from, options)
            code, text = smtp.getreply()
            if code != 250:
                if pipelined and code != 421:
                    smtp.drain_envelope(len(built.rcpt_to))
                raise _Stop(_reply(stage, code, text))

            stage = Stage.RCPT
            for addr in built.rcpt_to:
                if not pipelined:
                    smtp.putcmd_rcpt(addr)
                code, text = smtp.getreply()
                rcpts.append(RcptReply(addr, code, _text(text)))
                if code == 421:  # the server is closing the session
                    raise _Stop(_reply(stage, code, text, rcpts))
            if not any(200 <= r.code < 300 for r in rcpts):
                if pipelined:
                    smtp.drain_envelope(0)
                raise _Stop(_reply(stage, rcpts[-1].code if rcpts else None, "", rcpts))

            stage = Stage.DATA
            if not pipelined:
                smtp.putcmd("DATA")
            code, text = smtp.getreply()
            if code != 354:
                raise _Stop(_reply(stage, code, text, rcpts))

            stage = Stage.MESSAGE
            if built.segments:
                for segment in built.segments:
                    if isinstance(segment, bytes):
                        smtp.send_data(_dot_stuff(segment) if segment else b"")
                    else:
                        _send_file_base64(smtp, segment)
                smtp.send_data(b".\r\n")
            else:
                payload = _dot_stuff(built.data)
                smtp.send_data(payload + b".\r\n")
            data_sent = True

            # After the dot, a missing reply means the outcome is unknown (reference §10.3).
            stage = Stage.DATA_REPLY
            smtp.set_timeout(self.data_timeout)
            code, text = smtp.getreply()
            smtp.set_timeout(self.timeout)
            attempt = _reply(stage, code, text, rcpts, data_sent=True)
        except _Stop:
            raise
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            timeout = self.data_timeout if stage is Stage.DATA_REPLY else self.timeout
            attempt = _from_exception(exc, stage, "", timeout)
            raise _Stop(_with_progress(attempt, rcpts, data_sent)) from None
        if attempt.code is None or not 200 <= attempt.code < 300:
            raise _Stop(attempt)
        return attempt


def _reset(conn: _Conn) -> bool:
    """``RSET`` before the next transaction; a failed reset closes the connection (and only
    costs a new one, never a failed attempt, reference §10.2)."""
    try:
        code, _ = conn.smtp.rset()
    except (smtplib.SMTPException, OSError):
        code = -1
    if code == 250:
        conn.smtp.command_encoding = "ascii"
        return True
    _close(conn.smtp, quit_first=False)
    return False


class _Session(smtplib.SMTP):
    """smtplib's command layer on a socket connected by the pool (stage by stage)."""

    def __init__(self, local_hostname: str, timeout: float) -> None:
        super().__init__(local_hostname=local_hostname, timeout=timeout)

    def attach(self, sock: socket.socket, host: str) -> None:
        self.sock = sock
        self.file = None
        self._host = host

    def upgrade(self, context: ssl.SSLContext) -> None:
        """Complete STARTTLS after the 220: wrap the socket and forget the pre-TLS state."""
        assert self.sock is not None
        self.sock = context.wrap_socket(self.sock, server_hostname=self._host)
        self.file = None
        self.helo_resp = None
        self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False

    def _options(self, options: Sequence[str]) -> str:
        if "SMTPUTF8" in options:
            self.command_encoding = "utf-8"
        return (" " + " ".join(options)) if options else ""

    def putcmd_mail(self, sender: str, options: Sequence[str]) -> None:
        """``MAIL FROM`` as smtplib's ``mail`` sends it, without waiting for the reply."""
        self.putcmd("mail", f"FROM:{_quote(sender)}{self._options(options)}")

    def putcmd_rcpt(self, addr: str) -> None:
        self.putcmd("rcpt", f"TO:{_quote(addr)}")

    def send_envelope(self, sender: str, options: Sequence[str], rcpts: Sequence[str]) -> None:
        """MAIL, RCPT×n and DATA in one write (PIPELINING); the replies are read after."""
        lines = [f"mail FROM:{_quote(sender)}{self._options(options)}"]
        lines += [f"rcpt TO:{_quote(addr)}" for addr in rcpts]
        lines.append("data")
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("command and arguments contain prohibited newline characters")
        assert self.sock is not None
        self.sock.sendall(("\r\n".join(lines) + "\r\n").encode(self.command_encoding))

    def drain_envelope(self, rcpt_replies: int) -> None:
        """After a refused pipelined envelope: read the replies still due (``rcpt_replies``
        RCPT replies, then DATA's). Should DATA have been accepted anyway, an empty message is
        ended at once and its reply read, so the session stays in step for a reset."""
        for _ in range(rcpt_replies):
            self.getreply()
        code, _ = self.getreply()
        if code == 354:
            assert self.sock is not None
            self.sock.sendall(b".\r\n")
            self.getreply()

    def set_timeout(self, seconds: float) -> None:
        if self.sock is not None:
            self.sock.settimeout(seconds)

    def send_data(self, payload: bytes) -> None:
        """Write the data in chunks, so the socket timeout means "no progress" (reference §10.2)."""
        assert self.sock is not None
        view = memoryview(payload)
        for offset in range(0, len(view), _CHUNK):
            self.sock.sendall(view[offset : offset + _CHUNK])


# 57 bytes of content make one 76-character base64 line; read this many lines at a time.
_FILE_LINES = 8192


def _send_file_base64(smtp: _Session, segment: FileSegment) -> None:
    """Send a file as base64 lines while reading it, so memory stays at one chunk (reference §11.5).

    Base64 has no ``.``, so these lines need no dot-stuffing. A file that is shorter or longer
    than the size the message declared is an error: the data would not match ``SIZE=``.
    """
    sent = 0
    with open(segment.path, "rb") as src:
        while chunk := src.read(57 * _FILE_LINES):
            sent += len(chunk)
            enc = binascii.b2a_base64(chunk, newline=False)
            lines = b"\r\n".join(enc[i : i + 76] for i in range(0, len(enc), 76))
            smtp.send_data(lines + b"\r\n")
    if sent != segment.size:
        raise ValueError("attachment file changed while it was sent")


def _dot_stuff(data: bytes) -> bytes:
    """Double every dot that starts a line (RFC 5321 reference §4.5.2); the data ends with CRLF."""
    data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def _quote(addr: str) -> str:
    """``addr`` as a ``MAIL FROM``/``RCPT TO`` path: ``smtplib.quoteaddr``'s answer."""
    if _PLAIN_ADDR.fullmatch(addr):
        return f"<{addr}>"
    return smtplib.quoteaddr(addr)


def _text(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return raw


def _reply(
    stage: Stage,
    code: int | None,
    text: bytes | str,
    rcpts: list[RcptReply] | None = None,
    data_sent: bool = False,
) -> Attempt:
    if code == -1:  # smtplib's marker for a line that does not start with a number
        return Attempt(
            stage, failure=Failure.MALFORMED, rcpts=tuple(rcpts or ()), data_sent=data_sent
        )
    return Attempt(stage, code, _text(text), tuple(rcpts or ()), data_sent)


def _with_progress(attempt: Attempt, rcpts: list[RcptReply], data_sent: bool) -> Attempt:
    return Attempt(
        attempt.stage,
        attempt.code,
        attempt.text,
        tuple(rcpts),
        data_sent,
        attempt.failure,
        attempt.detail,
        attempt.timeout,
    )


def _keepable(attempt: Attempt) -> bool:
    """After a refused transaction the connection is still good: the next use resets it."""
    return (
        attempt.failure is None
        and attempt.code is not None
        and attempt.code != 421
        and attempt.stage in (Stage.MAIL, Stage.RCPT, Stage.DATA, Stage.DATA_REPLY)
    )


def _healthy(attempt: Attempt) -> bool:
    """Whether the session can still be ended politely with ``QUIT``."""
    if attempt.failure is None:
        return attempt.code is not None and attempt.code not in (421, -1)
    return attempt.failure in (
        Failure.STARTTLS_NOT_OFFERED,
        Failure.CLEAR_CREDENTIALS,
        Failure.AUTH_NOT_OFFERED,
        Failure.NO_COMMON_MECHANISM,
        Failure.SMTPUTF8_NOT_OFFERED,
    )


def _from_exception(exc: BaseException, stage: Stage, detail: str, timeout: float) -> Attempt:
    """Translate a socket/ssl/smtplib exception into the facts of an attempt."""
    if isinstance(exc, smtplib.SMTPResponseException):
        # Replies are read with getreply(), which returns codes instead of raising; smtplib
        # raises this only for its own protocol complaints (a reply line over 8 KiB is
        # reported as "500 Line too long"). That is a malformed reply, not a server's 5xx.
        return Attempt(stage, failure=Failure.MALFORMED, detail=_text(exc.smtp_error))
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib closes and re-raises; the socket error that caused it is the context.
        cause = exc.__context__
        if not isinstance(cause, OSError) or isinstance(cause, smtplib.SMTPException):
            return Attempt(stage, failure=Failure.CLOSED, detail=detail)
        exc = cause
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or getattr(exc, "reason", None) or str(exc)
        return Attempt(stage, failure=Failure.CERTIFICATE, detail=str(reason))
    if isinstance(exc, ssl.CertificateError):
        return Attempt(stage, failure=Failure.CERTIFICATE, detail=str(exc))
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return Attempt(stage, failure=Failure.RESET, detail=detail)
    if isinstance(exc, ssl.SSLError):
        reason = str(getattr(exc, "reason", None) or exc)
        if stage in (Stage.CONNECT, Stage.STARTTLS):
            return Attempt(stage, failure=Failure.TLS_HANDSHAKE, detail=reason)
        # Once the session is encrypted, a TLS error is a broken connection like any other.
        return Attempt(stage, failure=Failure.NETWORK, detail=reason)
    if isinstance(exc, socket.gaierror):
        return Attempt(stage, failure=Failure.DNS, detail=detail)
    if isinstance(exc, TimeoutError):
        return Attempt(stage, failure=Failure.TIMEOUT, detail=detail, timeout=timeout)
    if isinstance(exc, ConnectionRefusedError):
        return Attempt(stage, failure=Failure.REFUSED, detail=detail)
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return Attempt(stage, failure=Failure.RESET, detail=detail)
    if isinstance(exc, smtplib.SMTPException | ValueError):
        return Attempt(stage, failure=Failure.MALFORMED, detail=detail)
    return Attempt(stage, failure=Failure.NETWORK, detail=detail or str(exc))


def _close(smtp: smtplib.SMTP, *, quit_first: bool) -> None:
    if quit_first and smtp.sock is not None:
        try:
            smtp.sock.settimeout(5)
            smtp.quit()
            return
        except (smtplib.SMTPException, OSError):
            pass
    try:
        smtp.close()
    except OSError:
        pass
