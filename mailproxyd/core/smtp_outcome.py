"""Outcome classification of one SMTP attempt (reference §10.3, texts reference §10.5, fields reference §13.1).

The SMTP driver records *what happened* as an :class:`Attempt` — the stage the session
reached, the last reply, the per-recipient ``RCPT`` replies, whether the terminating dot of the
data was sent, and the kind of network failure if any — and :func:`classify` turns that into
an :class:`Outcome` (``sent`` / ``temporary`` / ``permanent`` / ``uncertain``) with the exact
error text. Keeping the judgement here, away from sockets, lets one table-driven test cover
every row of the reference.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailproxyd.core.redact import escape_control
from mailproxyd.core.timefmt import iso

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "DATA_TIMEOUT_SECONDS",
    "SMTP_TIMEOUT_SECONDS",
    "UNCERTAIN_TEXT",
    "Attempt",
    "Failure",
    "Kind",
    "Outcome",
    "RcptReply",
    "Stage",
    "account_deleted",
    "build_failed",
    "classify",
    "delivery_log_line",
    "reply_text",
]

#: The SMTP timeouts, defined here only: ``GMP_SMTP_TIMEOUT``'s default (per operation,
#: reference §10.2), the TCP connect, and the wait for the reply to the data (never shorter than
#: the per-operation timeout).
SMTP_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0
DATA_TIMEOUT_SECONDS = 120.0


class Stage(enum.Enum):
    """Where an attempt ended. The value is the ``STAGE`` of reference §10.5 error texts."""

    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "EHLO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    MAIL = "MAIL FROM"
    RCPT = "RCPT TO"
    DATA = "DATA"  # the DATA command and its 354
    MESSAGE = "message data"  # transmitting the data up to and including the final dot
    DATA_REPLY = "reply to the data"  # the reply after the final dot

    @property
    def label(self) -> str:
        """The ``STAGE`` word of error texts; the data and its reply are reported as ``DATA``."""
        if self in (Stage.MESSAGE, Stage.DATA_REPLY):
            return "DATA"
        return self.value


class Failure(enum.Enum):
    """Failures that are not an SMTP reply (translated by the driver from exceptions)."""

    DNS = "dns"
    REFUSED = "refused"
    RESET = "reset"
    CLOSED = "closed"
    TIMEOUT = "timeout"
    NETWORK = "network"
    MALFORMED = "malformed"
    TLS_HANDSHAKE = "tls_handshake"
    CERTIFICATE = "certificate"
    STARTTLS_NOT_OFFERED = "starttls_not_offered"
    CLEAR_CREDENTIALS = "clear_credentials"
    AUTH_NOT_OFFERED = "auth_not_offered"
    NO_COMMON_MECHANISM = "no_common_mechanism"
    SMTPUTF8_NOT_OFFERED = "smtputf8_not_offered"
    #: The outbound network policy refused every address of the host (reference §11.3); detail: host.
    POLICY_REFUSED = "policy_refused"


_FAILURE_TEXT = {
    Failure.DNS: "host not found",
    Failure.REFUSED: "connection refused",
    Failure.RESET: "connection reset",
    Failure.CLOSED: "connection closed by server",
    Failure.TIMEOUT: "timed out",
    Failure.NETWORK: "network error",
    Failure.MALFORMED: "malformed reply",
    Failure.TLS_HANDSHAKE: "TLS handshake failed",
    Failure.CERTIFICATE: "certificate verification failed",
}
# Failures whose complete text is fixed by the reference (§10.1, §10.2).
_FIXED_TEXT = {
    Failure.STARTTLS_NOT_OFFERED: "STARTTLS: not offered by server",
    Failure.CLEAR_CREDENTIALS: (
        "STARTTLS: not offered; refusing to send credentials in clear "
        "(set tls_mode to none to allow)"
    ),
    Failure.AUTH_NOT_OFFERED: "AUTH: not offered by server",
    Failure.SMTPUTF8_NOT_OFFERED: "MAIL FROM: SMTPUTF8 required but not offered by server",
}


class Kind(enum.Enum):
    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    UNCERTAIN = "uncertain"


# Failures that never pass by themselves: retrying with the same settings cannot help.
_PERMANENT_FAILURES = frozenset(
    {
        Failure.TLS_HANDSHAKE,
        Failure.CERTIFICATE,
        Failure.STARTTLS_NOT_OFFERED,
        Failure.CLEAR_CREDENTIALS,
        Failure.AUTH_NOT_OFFERED,
        Failure.NO_COMMON_MECHANISM,
        Failure.SMTPUTF8_NOT_OFFERED,
        Failure.POLICY_REFUSED,
    }
)

UNCERTAIN_TEXT = "DATA: no reply after the message data was transmitted (outcome unknown)"


@dataclass(frozen=True, slots=True)
class RcptReply:
    """The reply to ``RCPT TO`` for one recipient."""

    address: str
    code: int
    text: str = ""


@dataclass(frozen=True, slots=True)
class Attempt:
    """The facts of one attempt, as observed by the driver.

    ``stage`` is where the session stopped (``DATA_REPLY`` once the data was answered). ``code`` and
    ``text`` are the last reply at that stage (``None`` when there was none). ``failure`` is set
    when the stage ended without a usable reply; ``detail`` adds context to its text (e.g.
    ``smtp.example.com:587`` for connect failures, the TLS library's reason). ``data_sent`` is
    true once the terminating ``.`` of the data has been written completely.
    """

    stage: Stage
    code: int | None = None
    text: str = ""
    rcpts: Sequence[RcptReply] = ()
    data_sent: bool = False
    failure: Failure | None = None
    detail: str = ""
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The classified result of an attempt.

    ``error_text`` is the reference §10.5 text (``None`` for ``sent``). ``smtp_code`` is the reply code
    that caused a failure (reference §13.1), ``refused_recipients`` maps each refused address to
    ``{"code": …, "message": …}``. ``release_slot`` tells process code whether the rate-limit
    slot of the attempt is returned (reference §9: only when it failed before the data was transmitted).
    """

    kind: Kind
    error_text: str | None = None
    smtp_code: int | None = None
    refused_recipients: dict[str, dict[str, object]] = field(default_factory=dict)
    release_slot: bool = False

    @property
    def uncertain(self) -> bool:
        return self.kind is Kind.UNCERTAIN

    @property
    def retryable(self) -> bool:
        """Temporary and uncertain outcomes follow the retry ladder (reference §10.3, §10.4)."""
        return self.kind in (Kind.TEMPORARY, Kind.UNCERTAIN)


def reply_text(code: int, text: str) -> str:
    """``<code> <server text>`` with multi-line replies joined by a space (reference §10.5)."""
    joined = " ".join(line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip())
    return f"{code} {joined}" if joined else str(code)


def build_failed(reason: str) -> Outcome:
    """A message that could not be built: permanent, before the server was contacted."""
    return Outcome(Kind.PERMANENT, f"message build failed: {reason}", release_slot=True)


def account_deleted() -> Outcome:
    return Outcome(Kind.PERMANENT, "account deleted", release_slot=True)


def _failure_text(attempt: Attempt) -> str:
    failure = attempt.failure
    assert failure is not None
    label = attempt.stage.label
    if failure in _FIXED_TEXT:
        return _FIXED_TEXT[failure]
    if failure is Failure.POLICY_REFUSED:
        return f"Connection to {attempt.detail} refused by network policy"
    if failure is Failure.NO_COMMON_MECHANISM:
        offered = f" (server offers: {attempt.detail})" if attempt.detail else ""
        return f"AUTH: no common mechanism{offered}"
    what = _FAILURE_TEXT[failure]
    if failure is Failure.TIMEOUT and attempt.timeout is not None:
        what = f"timed out after {attempt.timeout:g} s"
    if attempt.stage is Stage.MESSAGE:
        return f"DATA: {what} while transmitting the message data"
    if attempt.detail:
        sep = " " if attempt.detail.startswith("(") else ": "
        return f"{label}: {what}{sep}{attempt.detail}"
    return f"{label}: {what}"


def _refused(rcpts: Sequence[RcptReply]) -> dict[str, dict[str, object]]:
    return {
        r.address: {"code": r.code, "message": reply_text(r.code, r.text).partition(" ")[2]}
        for r in rcpts
        if not 200 <= r.code < 300
    }


def classify(attempt: Attempt) -> Outcome:
    """Classify an attempt per reference §10.3."""
    refused = _refused(attempt.rcpts)
    # reference §9: the rate-limit slot is given back only when nothing of the data went out.
    release = not attempt.data_sent

    if attempt.failure is not None:
        if attempt.data_sent and attempt.failure is not Failure.MALFORMED:
            # The dot went out and no reply came back: the server may have taken the message.
            return Outcome(Kind.UNCERTAIN, UNCERTAIN_TEXT, refused_recipients=refused)
        kind = Kind.PERMANENT if attempt.failure in _PERMANENT_FAILURES else Kind.TEMPORARY
        text = _failure_text(attempt)
        return Outcome(kind, text, refused_recipients=refused, release_slot=release)

    code = attempt.code
    if attempt.stage is Stage.RCPT and code != 421:
        return _all_refused(attempt.rcpts, refused)
    if code is None:
        return Outcome(Kind.TEMPORARY, f"{attempt.stage.label}: no reply", release_slot=release)

    text = f"{attempt.stage.label}: {reply_text(code, attempt.text)}"
    if 200 <= code < 300 and attempt.stage is Stage.DATA_REPLY:
        return Outcome(Kind.SENT, refused_recipients=refused)
    if 500 <= code < 600:
        return Outcome(Kind.PERMANENT, text, code, refused, release_slot=release)
    # 4xx (421 included), and anything unexpected: a 2xx/3xx where the session could not go
    # on (e.g. 250 instead of 354 to DATA) or a number outside SMTP's range.
    return Outcome(Kind.TEMPORARY, text, code, refused, release_slot=release)


def _all_refused(rcpts: Sequence[RcptReply], refused: dict[str, dict[str, object]]) -> Outcome:
    """Every recipient refused: permanent only when every refusal is 5xx (reference §10.3, §13.1)."""
    if not rcpts:
        return Outcome(Kind.TEMPORARY, "RCPT TO: no recipients", release_slot=True)
    failures = [r for r in rcpts if not 200 <= r.code < 300]
    hard = [r for r in failures if 500 <= r.code < 600]
    soft = [r for r in failures if not 500 <= r.code < 600]
    decider = soft[0] if soft else hard[0]
    kind = Kind.TEMPORARY if soft else Kind.PERMANENT
    text = f"RCPT TO: all recipients refused: {reply_text(decider.code, decider.text)}"
    return Outcome(kind, text, decider.code, refused, release_slot=True)


def _log_value(value: object) -> str:
    text = str(value)
    if text and not any(ch in text for ch in ' "=\\') and text.isprintable():
        return text
    return _quoted(text)


def _quoted(text: str) -> str:
    # Ids and SMTP replies come from outside: no control character reaches the log.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escape_control(escaped, limit=None) + '"'


def delivery_log_line(
    event: str,
    *,
    tenant: str,
    message_id: str,
    account: str | None,
    attempt: int,
    rcpts: int | None = None,
    duration_ms: int | None = None,
    until: float | None = None,
    reason: str | None = None,
) -> str:
    """The INFO line of one attempt with ``GMP_LOG_DELIVERY_ACTIVITY`` (reference §18.6).

    ``event`` is ``sent``, ``deferred`` or ``failed``; ``reason`` is always quoted, other values
    only when they contain blanks, quotes, ``=`` or unprintable characters (which are escaped,
    so no outside text starts a log line). The one format of that line, used by the sender. E.g.
    ``delivery deferred tenant=acme id=MSG-005 account=smtp2 attempt=2
    until=2026-01-01T00:06:00Z reason="RCPT TO: …"``.
    """
    parts = [
        f"delivery {event}",
        f"tenant={_log_value(tenant)}",
        f"id={_log_value(message_id)}",
        f"account={_log_value(account if account is not None else '-')}",
    ]
    if rcpts is not None:
        parts.append(f"rcpts={rcpts}")
    parts.append(f"attempt={attempt}")
    if until is not None:
        parts.append(f"until={iso(until)}Z")
    if duration_ms is not None:
        parts.append(f"duration_ms={duration_ms}")
    if reason is not None:
        parts.append(f"reason={_quoted(reason)}")
    return " ".join(parts)
