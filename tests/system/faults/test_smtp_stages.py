"""SMTP servers that fail at every stage of a session, through the real daemon: the connection
dropped or reset before the banner, after it, after EHLO, during STARTTLS, after AUTH, MAIL and
RCPT, inside the message data and after the final dot; stalls past the timeouts; garbage
replies; 421 mid-session; certificates with a wrong host name, expired, or from an unknown CA;
and the scripted refusals of a real SMTP server (aiosmtpd).

Each broken server is one account with one message. A temporary failure gives a ``deferred``
report item whose ``deferred_reason`` is the error text, a second attempt (the retry), then
``error`` with ``Max retries (1) exceeded: <text>``; a permanent one gives ``error`` at the first
attempt; a drop after the final dot is the uncertain outcome: ``outcome_uncertain`` on every
item, and the retry carries the same ``Message-ID`` (reference §10.3, §10.4, §10.5, §13.1).
"""

from __future__ import annotations

import base64
import datetime
import os
import signal
import ssl
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Any

import httpx
import pytest
import trustme

from tests.daemon import ADMIN_TOKEN, Daemon, wait_for
from tests.faultservers import FaultSmtpServer, SmtpFault
from tests.smtpservers import Script, SmtpServer
from tests.system.faults.conftest import Scale
from tests.system.faults.harness import Inspector, message
from tests.system.smtpsink import SmtpSink
from tests.tenantservers import TenantServer

TIMEOUT = 5  # GMP_SMTP_TIMEOUT of the node under test
CLOSED = "connection closed by server"
DATA_SUFFIX = " while transmitting the message data"
UNCERTAIN = "DATA: no reply after the message data was transmitted (outcome unknown)"


@dataclass(frozen=True)
class Case:
    name: str
    fault: SmtpFault | None
    kind: str  # "temporary", "permanent" or "uncertain"
    text: str  # exact, or a prefix when it ends with "…"
    tls: str = "none"  # the server's side: none, starttls, implicit
    tls_mode: str = "none"  # the account's
    auth: bool = False
    large: bool = False  # a message too big to sit in the socket buffers
    cert: str = "good"  # good, wrong_host, expired
    long_only: bool = False
    script: Script | None = None  # an aiosmtpd server with this script instead of a raw one
    untrusted: bool = False  # (aiosmtpd) a certificate from a CA nobody trusts


CASES = [
    Case("drop-before-banner", SmtpFault("connect", "drop"), "temporary", f"greeting: {CLOSED}"),
    # The reset may beat the client to its first read: reported at connect then (both temporary).
    Case("reset-before-banner", SmtpFault("connect", "reset"), "temporary",
         "greeting: connection reset|connect: connection reset (127.0.0.1:…)"),
    Case("drop-after-banner", SmtpFault("EHLO", "drop"), "temporary", f"EHLO: {CLOSED}"),
    Case("drop-after-ehlo", SmtpFault("MAIL", "drop"), "temporary", f"MAIL FROM: {CLOSED}"),
    Case("drop-at-starttls", SmtpFault("STARTTLS", "drop"), "temporary", f"STARTTLS: {CLOSED}",
         tls="starttls", tls_mode="starttls"),
    # 220 to STARTTLS, then the connection closes before the handshake: a network failure that
    # may pass (temporary), not a handshake the two sides cannot agree on (permanent).
    Case("drop-during-starttls", SmtpFault("STARTTLS", "421", "220 2.0.0 Ready to start TLS"),
         "temporary", "STARTTLS: connection reset", tls="starttls", tls_mode="starttls"),
    Case("drop-at-auth", SmtpFault("AUTH", "drop"), "temporary", f"AUTH: {CLOSED}", auth=True),
    Case("drop-after-auth", SmtpFault("MAIL", "drop"), "temporary", f"MAIL FROM: {CLOSED}",
         auth=True),
    Case("drop-after-mail", SmtpFault("RCPT", "drop"), "temporary", f"RCPT TO: {CLOSED}"),
    Case("drop-after-rcpt", SmtpFault("DATA", "drop"), "temporary", f"DATA: {CLOSED}"),
    Case("reset-during-data", SmtpFault("354", "reset"), "temporary", "DATA: …" + DATA_SUFFIX,
         large=True),
    Case("drop-after-dot", SmtpFault("dot", "drop"), "uncertain", UNCERTAIN),
    Case("reset-after-dot", SmtpFault("dot", "reset"), "uncertain", UNCERTAIN),
    Case("stall-banner", SmtpFault("connect", "stall"), "temporary",
         f"greeting: timed out after {TIMEOUT} s"),
    Case("stall-mail", SmtpFault("MAIL", "stall"), "temporary",
         f"MAIL FROM: timed out after {TIMEOUT} s"),
    Case("stall-during-data", SmtpFault("354", "stall"), "temporary",
         f"DATA: timed out after {TIMEOUT} s" + DATA_SUFFIX, large=True),
    # The reply to the data is awaited 120 s: the long run only.
    Case("stall-after-dot", SmtpFault("dot", "stall"), "uncertain", UNCERTAIN, long_only=True),
    Case("garbage-banner", SmtpFault("connect", "garbage"), "temporary", "greeting: malformed reply…"),
    Case("garbage-rcpt", SmtpFault("RCPT", "garbage"), "temporary", "RCPT TO: malformed reply…"),
    Case("garbage-after-dot", SmtpFault("dot", "garbage"), "temporary", "DATA: malformed reply…"),
    Case("421-ehlo", SmtpFault("EHLO", "421"), "temporary", "EHLO: 421 4.3.2 Service shutting down"),
    Case("421-auth", SmtpFault("AUTH", "421"), "temporary", "AUTH: 421 4.3.2 Service shutting down",
         auth=True),
    Case("421-rcpt", SmtpFault("RCPT", "421"), "temporary",
         "RCPT TO: 421 4.3.2 Service shutting down"),
    Case("421-data-command", SmtpFault("DATA", "421"), "temporary",
         "DATA: 421 4.3.2 Service shutting down"),
    Case("wrong-host-implicit", None, "permanent", "connect: certificate verification failed…",
         tls="implicit", tls_mode="implicit", cert="wrong_host"),
    Case("expired-starttls", None, "permanent", "STARTTLS: certificate verification failed…",
         tls="starttls", tls_mode="starttls", cert="expired"),
    # Replies of a real SMTP server implementation (aiosmtpd, scripted).
    Case("greet421", None, "temporary", "greeting: 421 4.3.2 Service shutting down",
         script=Script(greeting="421 4.3.2 Service shutting down")),
    Case("mail451", None, "temporary", "MAIL FROM: 451 4.3.0 Try again later",
         script=Script(mail="451 4.3.0 Try again later")),
    Case("rcpt550", None, "permanent", "RCPT TO: all recipients refused: 550 5.1.1 User unknown",
         script=Script(rcpt={"ann@example.org": "550 5.1.1 User unknown"})),
    Case("data554", None, "permanent", "DATA: 554 5.7.1 Rejected as spam",
         script=Script(data_end="554 5.7.1 Rejected as spam")),
    Case("data421", None, "temporary", "DATA: 421 4.7.0 Closing, try later",
         script=Script(data_end="421 4.7.0 Closing, try later")),
    Case("garbage-ehlo", None, "temporary", "EHLO…", script=Script(ehlo="hello there, no reply")),
    Case("untrusted", None, "permanent", "STARTTLS…", tls="starttls", tls_mode="starttls",
         script=Script(), untrusted=True),
]  # fmt: skip


@pytest.fixture
def fault_servers() -> Iterator[Callable[..., FaultSmtpServer]]:
    made: list[FaultSmtpServer] = []

    def make(fault: SmtpFault | None, **kwargs: Any) -> FaultSmtpServer:
        server = FaultSmtpServer(fault, **kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def _context(ca: trustme.CA, cert: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if cert == "wrong_host":
        ca.issue_cert("smtp.elsewhere.example").configure_cert(ctx)
    elif cert == "expired":
        now = datetime.datetime.now(datetime.UTC)
        ca.issue_cert(
            "localhost",
            "127.0.0.1",
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        ).configure_cert(ctx)
    else:
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


def _matches(text: str, expected: str) -> bool:
    if "|" in expected:  # alternatives
        return any(_matches(text, one) for one in expected.split("|"))
    if "…" not in expected:
        return text == expected
    head, _, tail = expected.partition("…")
    return text.startswith(head) and text.endswith(tail)


def _message_ids(server: FaultSmtpServer) -> set[str]:
    ids = set()
    for session in server.transactions():
        value = BytesHeaderParser().parsebytes(session.data).get("Message-ID")
        if value:
            ids.add(str(value).strip())
    return ids


def test_every_stage_of_a_broken_smtp_session_ends_right(
    daemon: Daemon,
    fault_servers: Callable[..., FaultSmtpServer],
    smtp_server: Callable[..., SmtpServer],
    smtp_sink: SmtpSink,
    tenant_server: Callable[..., TenantServer],
    smtp_ca: trustme.CA,
    smtp_ca_file: str,
    scale: Scale,
) -> None:
    cases = [c for c in CASES if scale.name == "long" or not c.long_only]
    sync = tenant_server()
    node = daemon.serve(
        env={
            "GMP_MAX_RETRIES": "1",
            "GMP_RETRY_DELAYS": "1",
            "GMP_RETRY_JITTER": "0",
            "GMP_SMTP_TIMEOUT": str(TIMEOUT),
            "GMP_SENDER_PROCESSES": "2",
            "SSL_CERT_FILE": smtp_ca_file,
        }
    )
    answer = node.http(
        "POST", "/tenant", json={"id": "acme", "name": "Acme", "client_base_url": sync.base_url}
    )
    assert answer.status_code == 200, answer.text
    big = base64.b64encode(os.urandom(6 * 1024 * 1024)).decode()
    servers: dict[str, FaultSmtpServer] = {}
    for case in cases:
        port: int
        if case.script is not None:
            port = smtp_server(case.tls, script=case.script, untrusted=case.untrusted).port
        else:
            context = _context(smtp_ca, case.cert) if case.tls != "none" else None
            server = fault_servers(
                case.fault,
                tls=case.tls,
                context=context,
                auth=case.auth,
                rcvbuf=4096 if case.large else None,
            )
            servers[case.name] = server
            port = server.port
        account: dict[str, Any] = {
            "id": case.name,
            "tenant_id": "acme",
            "host": "localhost" if case.tls != "none" else "127.0.0.1",
            "port": port,
            "tls_mode": case.tls_mode,
            "limit_per_minute": 1000,  # so that admissions are counted (reference §9)
        }
        if case.auth:
            account.update(user="mailer@acme.example", password="app-password")
        answer = node.http("POST", "/account", json=account)
        assert answer.status_code == 200, answer.text
        extra: dict[str, Any] = {}
        if case.large:
            extra["attachments"] = [
                {"filename": "big.bin", "storage_path": big, "fetch_mode": "base64"}
            ]
        body = {
            "tenant_id": "acme",
            "messages": [message(case.name, account_id=case.name, **extra)],
        }
        answer = httpx.post(
            node.url + "/commands/add-messages",
            json=body,
            headers={"X-API-Token": ADMIN_TOKEN},
            timeout=60,
        )
        assert answer.status_code == 200 and answer.json()["queued"] == 1, answer.text
    # A healthy account beside the broken ones.
    answer = node.http(
        "POST",
        "/account",
        json={"id": "good", "tenant_id": "acme", "host": "127.0.0.1", "port": smtp_sink.port,
              "tls_mode": "none"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = {"tenant_id": "acme", "messages": [message("good", account_id="good")]}
    assert node.http("POST", "/commands/add-messages", json=body).status_code == 200

    inspector = Inspector(node.env["GMP_DB_PATH"])
    want = {c.name: 2 if c.kind != "permanent" else 1 for c in cases} | {"good": 1}
    expected_items = sum(want.values())

    def settled() -> bool:
        rows = inspector.rows("SELECT status FROM messages")
        done = bool(rows) and all(r["status"] in ("sent", "error") for r in rows)
        counts = Counter(i["id"] for i in sync.reported_items())
        return done and all(counts[name] >= n for name, n in want.items())

    wait_for(settled, 150 + (130 if scale.name == "long" else 0), interval=0.5, what="settled")
    items: dict[str, list[dict[str, Any]]] = {}
    for item in sync.reported_items():
        items.setdefault(item["id"], []).append(item)
    assert [i["event"] for i in items["good"]] == ["sent"]

    problems = []
    for case in cases:
        got = items.get(case.name, [])
        events = [i["event"] for i in got]
        server = servers.get(case.name)
        if case.kind == "permanent":
            want_events, final = ["error"], case.text
        else:
            want_events = ["deferred", "error"]
            final = "Max retries (1) exceeded: " + case.text
        if events != want_events:
            problems.append(f"{case.name}: events {events}, want {want_events}: {got}")
            continue
        last = got[-1]
        if not _matches(str(last["error"]), final):
            problems.append(f"{case.name}: error {last['error']!r}, want {final!r}")
        if case.kind != "permanent":
            deferred = got[0]
            if not _matches(str(deferred["deferred_reason"]), case.text):
                problems.append(f"{case.name}: deferred_reason {deferred['deferred_reason']!r}")
            if deferred.get("retry_count") != 1:
                problems.append(f"{case.name}: retry_count {deferred.get('retry_count')}")
            # The retry happened: a second connection to the broken server.
            if server is not None and server.connections != 2:
                problems.append(f"{case.name}: {server.connections} connections, want 2")
        elif server is not None and server.connections != 1:
            problems.append(f"{case.name}: {server.connections} connections, want 1")
        uncertain = [i.get("outcome_uncertain") for i in got]
        if case.kind == "uncertain":
            if uncertain != [True] * len(got):
                problems.append(f"{case.name}: outcome_uncertain {uncertain}")
            # Both attempts carried the whole message with the same Message-ID.
            assert server is not None
            if len(server.transactions()) != 2 or len(_message_ids(server)) != 1:
                problems.append(f"{case.name}: retries not the same message")
        elif any(uncertain):
            problems.append(f"{case.name}: outcome_uncertain {uncertain} on a certain failure")
    assert problems == [], "\n".join(problems)

    # Slots: kept for the uncertain outcomes, given back when nothing of the data went out.
    slots = {
        r["account_id"]: int(r["n"])
        for r in inspector.rows(
            "SELECT account_id, COUNT(*) AS n FROM rate_slots GROUP BY account_id"
        )
    }
    for case in cases:
        kept = slots.get(case.name, 0)
        # Attempts that transmitted the whole message data, each keeping its slot.
        transmitted = {"garbage-after-dot": 2, "data421": 2, "data554": 1}.get(case.name, 0)
        transmitted = 2 if case.kind == "uncertain" else transmitted
        assert kept == transmitted, (case.name, kept)
    node.signal(signal.SIGTERM)
    assert node.wait_exit(60) == 0
    # Pooled connections hold their session slots while open; after shutdown none is held.
    assert inspector.consistency_problems() == [], inspector.rows("SELECT * FROM session_slots")
    print(f"\nfaults/smtp-stages [{scale.name}]: cases={len(cases)} items={expected_items}")
