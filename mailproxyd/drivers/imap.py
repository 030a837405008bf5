"""The bounce mailbox over IMAP: the only importer of ``imaplib`` (reference §12).

:class:`Mailbox` is one IMAP session: connect (TLS when ``ssl``, otherwise STARTTLS when the
server offers it), log in, select the folder and learn its UIDVALIDITY; then list the UIDs
above a cursor, fetch messages without marking them read (``BODY.PEEK[]``), and flag processed
ones ``\\Seen``. Nothing is ever deleted or expunged.

Every method blocks; the async surface (:func:`open_mailbox` and :class:`AsyncMailbox`) runs
each in a worker thread through ``trio.to_thread``, like the SMTP driver. Every ``imaplib``,
socket and ssl exception is translated here into :class:`ImapError`, whose text is what
``GET /instance`` shows as ``bounce_last_error``: it never contains the password.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from mailproxyd.errors import MailProxyError

FETCH_BATCH = 50
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)", re.I)
_FETCH_UID = re.compile(rb"UID (\d+)", re.I)


class ImapError(MailProxyError):
    """The bounce mailbox could not be read."""


@dataclass(frozen=True)
class MailboxConfig:
    """Where the bounce mailbox is and how to log in (from the instance settings, reference §5.6)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    ssl: bool = True
    timeout: float = 30.0


def _context(cafile: str | None) -> ssl.SSLContext:
    # Without ``cafile`` the default context honours SSL_CERT_FILE / SSL_CERT_DIR.
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = max(ctx.minimum_version, ssl.TLSVersion.TLSv1_2)
    return ctx


def _text(data: object) -> str:
    if isinstance(data, list):
        data = b" ".join(d if isinstance(d, bytes) else str(d).encode() for d in data)
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace").strip()
    return str(data).strip()


def _quote_folder(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Mailbox:
    """One blocking IMAP session on the bounce folder."""

    def __init__(
        self,
        config: MailboxConfig,
        *,
        cafile: str | None = None,
        ssl_context_factory: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self.config = config
        self._ssl_factory = ssl_context_factory or (lambda: _context(cafile))
        self._imap: imaplib.IMAP4 | None = None
        self.uidvalidity = 0
        self.tls = False  # the session is encrypted (implicit TLS or STARTTLS)

    @property
    def _where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def open(self) -> None:
        """Connect, secure, log in and select the folder; raises :class:`ImapError`."""
        cfg = self.config
        try:
            if cfg.ssl:
                self._imap = imaplib.IMAP4_SSL(
                    cfg.host, cfg.port, ssl_context=self._ssl_factory(), timeout=cfg.timeout
                )
                self.tls = True
            else:
                self._imap = imaplib.IMAP4(cfg.host, cfg.port, timeout=cfg.timeout)
                if "STARTTLS" in self._imap.capabilities:
                    self._imap.starttls(self._ssl_factory())
                    self.tls = True
        except ssl.SSLError as exc:
            self.close()
            raise ImapError(f"IMAP TLS failed with {self._where}: {exc.reason or exc}") from None
        except (OSError, imaplib.IMAP4.error, EOFError) as exc:
            self.close()
            raise ImapError(f"IMAP server unreachable at {self._where}: {_describe(exc)}") from None
        self._login()
        self._select()

    def _login(self) -> None:
        assert self._imap is not None
        cfg = self.config
        try:
            if cfg.user.isascii() and cfg.password.isascii():
                self._imap.login(cfg.user, cfg.password)
            else:  # LOGIN is ASCII only; SASL PLAIN carries UTF-8
                creds = f"\0{cfg.user}\0{cfg.password}".encode()
                self._imap.authenticate("PLAIN", lambda _challenge: creds)
        except imaplib.IMAP4.error as exc:
            self.close()
            raise ImapError(f"IMAP login refused for {cfg.user!r}: {_server_text(exc)}") from None
        except (OSError, EOFError) as exc:
            self.close()
            raise ImapError(f"IMAP connection lost at login: {_describe(exc)}") from None

    def _select(self) -> None:
        assert self._imap is not None
        folder = self.config.folder
        typ, data = self._call(lambda imap: imap.select(_quote_folder(folder)))
        if typ != "OK":
            self.close()
            raise ImapError(f"IMAP folder {folder!r} cannot be selected: {_text(data)}")
        found = None
        _, codes = self._imap.response("UIDVALIDITY")  # from SELECT's "OK [UIDVALIDITY n]"
        for item in codes or ():
            if isinstance(item, bytes) and item.strip().isdigit():
                found = int(item)
        if found is None:  # a server that does not say it on SELECT
            typ, data = self._call(lambda imap: imap.status(_quote_folder(folder), "(UIDVALIDITY)"))
            first = data[0] if typ == "OK" and data and isinstance(data[0], bytes) else b""
            match = _UIDVALIDITY.search(first)
            found = int(match.group(1)) if match else None
        if found is None:
            self.close()
            raise ImapError(f"IMAP folder {folder!r} has no UIDVALIDITY")
        self.uidvalidity = found

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs of the folder above ``last_uid``, ascending."""
        typ, data = self._call(lambda imap: imap.uid("SEARCH", "UID", f"{last_uid + 1}:*"))
        if typ != "OK":
            raise ImapError(f"IMAP search failed: {_text(data)}")
        # ``n:*`` always includes the highest UID, even when it is below n.
        found = {int(token) for token in _text(data).split() if token.isdigit()}
        return sorted(uid for uid in found if uid > last_uid)

    def fetch(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The raw messages of ``uids`` (those still present), without setting ``\\Seen``."""
        if not uids:
            return {}
        wanted = ",".join(str(uid) for uid in uids)
        typ, data = self._call(lambda imap: imap.uid("FETCH", wanted, "(UID BODY.PEEK[])"))
        if typ != "OK":
            raise ImapError(f"IMAP fetch failed: {_text(data)}")
        messages: dict[int, bytes] = {}
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                match = _FETCH_UID.search(item[0])
                if match:
                    messages[int(match.group(1))] = item[1]
        return messages

    def mark_seen(self, uids: Sequence[int]) -> None:
        """Flag ``uids`` as ``\\Seen`` (processed; never deleted)."""
        if not uids:
            return
        wanted = ",".join(str(uid) for uid in uids)
        typ, data = self._call(lambda imap: imap.uid("STORE", wanted, "+FLAGS.SILENT", r"(\Seen)"))
        if typ != "OK":
            raise ImapError(f"IMAP store failed: {_text(data)}")

    def _call(self, op: Callable[[imaplib.IMAP4], tuple[str, Any]]) -> tuple[str, list[Any]]:
        if self._imap is None:
            raise ImapError("IMAP session is closed")
        try:
            typ, data = op(self._imap)
            return typ, list(data or [])
        except imaplib.IMAP4.abort as exc:
            self.close()
            raise ImapError(f"IMAP connection lost: {_server_text(exc)}") from None
        except imaplib.IMAP4.error as exc:
            return "NO", [str(exc).encode()]
        except (OSError, EOFError) as exc:
            self.close()
            raise ImapError(f"IMAP connection lost: {_describe(exc)}") from None

    def close(self) -> None:
        """Log out (best effort) and drop the connection."""
        imap, self._imap = self._imap, None
        if imap is None:
            return
        try:
            imap.logout()
        except Exception:
            try:
                imap.shutdown()
            except Exception:
                pass


def _server_text(exc: BaseException) -> str:
    text = str(exc)
    # imaplib wraps the server's words as "b'[AUTHENTICATIONFAILED] ...'"
    match = re.fullmatch(r"b(['\"])(.*)\1", text)
    return match.group(2) if match else text


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, EOFError):
        return "connection closed by the server"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- async surface

T = TypeVar("T")


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    # Abandoned when cancelled (a stopping reporter must not wait for a socket timeout); the
    # thread then ends on its own, and its session with it.
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


class AsyncMailbox:
    """:class:`Mailbox` for trio: every call runs in a worker thread."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    @property
    def uidvalidity(self) -> int:
        return self.mailbox.uidvalidity

    @property
    def tls(self) -> bool:
        return self.mailbox.tls

    async def uids_after(self, last_uid: int) -> list[int]:
        return await _in_thread(self.mailbox.uids_after, last_uid)

    async def fetch(self, uids: Sequence[int]) -> dict[int, bytes]:
        return await _in_thread(self.mailbox.fetch, uids)

    async def mark_seen(self, uids: Sequence[int]) -> None:
        await _in_thread(self.mailbox.mark_seen, uids)

    async def aclose(self) -> None:
        await _in_thread(self.mailbox.close)


async def open_mailbox(
    config: MailboxConfig,
    *,
    cafile: str | None = None,
    ssl_context_factory: Callable[[], ssl.SSLContext] | None = None,
) -> AsyncMailbox:
    """Open a session on the bounce folder (see :meth:`Mailbox.open`)."""
    mailbox = Mailbox(config, cafile=cafile, ssl_context_factory=ssl_context_factory)
    await _in_thread(mailbox.open)
    return AsyncMailbox(mailbox)
