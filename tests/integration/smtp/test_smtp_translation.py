"""The driver's translation of smtplib/socket/ssl exceptions into attempt facts (reference §10.3).

These exceptions are built by hand because several of them (a reset in the middle of a TLS
handshake, smtplib's "line too long") are hard to provoke on demand from a real server.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailproxyd.core.smtp_outcome import Failure, Kind, Stage, classify
from mailproxyd.drivers.smtp import SmtpPool, _dot_stuff, _from_exception, _quote


def _disconnected(cause: OSError | None) -> smtplib.SMTPServerDisconnected:
    """Raise the way smtplib does: on end of stream plainly, on a socket error from inside
    the handler of that error (which leaves it as ``__context__``)."""
    if cause is None:
        return smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
    try:
        try:
            raise cause
        except OSError as exc:
            raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}") from None
    except smtplib.SMTPServerDisconnected as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (socket.gaierror(-2, "Name or service not known"), Failure.DNS),
        (ConnectionRefusedError(111, "refused"), Failure.REFUSED),
        (TimeoutError("timed out"), Failure.TIMEOUT),
        (ConnectionResetError(104, "reset"), Failure.RESET),
        (BrokenPipeError(32, "pipe"), Failure.RESET),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), Failure.RESET),
        (ssl.SSLError(1, "bad record mac"), Failure.NETWORK),  # after the handshake
        (_disconnected(None), Failure.CLOSED),
        (_disconnected(TimeoutError("timed out")), Failure.TIMEOUT),
        (_disconnected(ConnectionResetError(104, "reset")), Failure.RESET),
        (smtplib.SMTPResponseException(500, b"Line too long."), Failure.MALFORMED),
        (smtplib.SMTPException("weird"), Failure.MALFORMED),
        (OSError(113, "No route to host"), Failure.NETWORK),
    ],
)
def test_exception_kinds(exc: BaseException, failure: Failure) -> None:
    attempt = _from_exception(exc, Stage.MAIL, "", 30)
    assert attempt.failure is failure
    assert classify(attempt).kind is Kind.TEMPORARY


@pytest.mark.parametrize("stage", [Stage.CONNECT, Stage.STARTTLS])
def test_handshake_failure_is_permanent(stage: Stage) -> None:
    outcome = classify(_from_exception(ssl.SSLError(1, "wrong version number"), stage, "", 30))
    assert outcome.kind is Kind.PERMANENT
    assert outcome.error_text == f"{stage.value}: TLS handshake failed: wrong version number"


def test_certificate_error_is_permanent_with_reason() -> None:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate"
    attempt = _from_exception(exc, Stage.STARTTLS, "", 30)
    outcome = classify(attempt)
    assert outcome.kind is Kind.PERMANENT
    assert (
        outcome.error_text == "STARTTLS: certificate verification failed: self-signed certificate"
    )


@pytest.mark.parametrize("cause", [None, TimeoutError("timed out"), ConnectionResetError(104, "x")])
def test_failure_after_the_dot_is_uncertain(cause: OSError | None) -> None:
    attempt = _from_exception(_disconnected(cause), Stage.DATA_REPLY, "", 120)
    outcome = classify(replace(attempt, data_sent=True))
    assert outcome.kind is Kind.UNCERTAIN and not outcome.release_slot


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"a\r\n.b\r\n", b"a\r\n..b\r\n"),
        (b".a\r\n", b"..a\r\n"),
        (b"a\r\n.\r\nb", b"a\r\n..\r\nb\r\n"),
        (b"no dots\r\n", b"no dots\r\n"),
    ],
)
def test_dot_stuffing(data: bytes, wire: bytes) -> None:
    assert _dot_stuff(data) == wire


@pytest.mark.parametrize("verify", [True, False])
def test_tls_contexts_require_tls_1_2(verify: bool) -> None:
    ctx = SmtpPool()._ssl_context(verify)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.check_hostname is verify
    assert (ctx.verify_mode == ssl.CERT_REQUIRED) is verify


_ATEXT = "abcxyzABCXYZ0189!#$%&'*+/=?^_`{|}~-"


@given(
    local=st.lists(st.text(_ATEXT, min_size=1, max_size=8), min_size=1, max_size=3),
    domain=st.lists(st.text("abz09-AZ", min_size=1, max_size=8), min_size=1, max_size=3),
)
@settings(max_examples=300)
def test_plain_envelope_addresses_are_quoted_as_smtplib_quotes_them(
    local: list[str], domain: list[str]
) -> None:
    addr = ".".join(local) + "@" + ".".join(domain)
    assert _quote(addr) == smtplib.quoteaddr(addr) == f"<{addr}>"


@pytest.mark.parametrize(
    "addr",
    [
        "",
        '"ann smith"@example.org',
        "Ann <ann@example.org>",
        "<ann@example.org>",
        "ann@[192.0.2.1]",
        "ann..b@example.org",
        "ännä@exämple.org",
        "ann@example.org ",
    ],
)
def test_other_envelope_addresses_take_smtplib_s_path(addr: str) -> None:
    assert _quote(addr) == smtplib.quoteaddr(addr)
