"""Message construction speed: ``mailproxyd.core.mime`` against the standard ``EmailMessage``.

Builds the same messages both ways in one run: messages per CPU second. ``python -m bench mime``
(a record per case, ``--quick``: 0.3 s per case) or ``python -m bench.mime [--seconds S]``
(a printed table).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from functools import partial
from typing import Any

from bench.harness import Record, Run
from mailproxyd.core.mime import Part, build_message, format_date

NOW = 1767225605.0

SIMPLE: dict[str, Any] = {
    "id": "MSG-001",
    "from": "Shop <orders@acme.example>",
    "to": ["b@example.org"],
    "subject": "Your order has shipped",
    "body": "Hello,\n\nyour order 1234 is on its way.\n\nRegards,\nShop\n",
    "content_type": "plain",
    "headers": {},
    "message_id": "<9f1c2b7e4d3a4e5f8a6b0c1d2e3f4a5b@acme.example>",
}

FULL: dict[str, Any] = {
    **SIMPLE,
    "from": "Jürgen Müller <jm@acme.example>",
    "to": ["b@example.org", "Ann Smith <c@example.org>"],
    "cc": ["d@example.org"],
    "bcc": ["e@example.org"],
    "reply_to": ["replies@acme.example"],
    "subject": "Grüße — Ihre Bestellung ist unterwegs",
    "body": "<p>Grüße</p>\n" * 40,
    "content_type": "html",
    "headers": {"X-Campaign": "spring", "List-Unsubscribe": "<mailto:u@acme.example>"},
}
ATTACHMENTS = [Part("invoice.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 40)]


def stdlib(payload: dict[str, Any], parts: list[Part]) -> bytes:
    """The straightforward construction with the standard library, for comparison."""
    msg = EmailMessage()
    msg["From"] = payload["from"]
    msg["To"] = ", ".join(payload["to"])
    if payload.get("cc"):
        msg["Cc"] = ", ".join(payload["cc"])
    if payload.get("reply_to"):
        msg["Reply-To"] = ", ".join(payload["reply_to"])
    msg["Subject"] = payload["subject"]
    msg["Date"] = format_date(NOW)
    msg["Message-ID"] = payload["message_id"]
    for name, value in payload["headers"].items():
        msg[name] = value
    msg["X-Genro-Mail-ID"] = payload["id"]
    msg.set_content(payload["body"], subtype=payload["content_type"])
    for part in parts:
        msg.add_attachment(
            part.content, maintype="application", subtype="pdf", filename=part.filename
        )
    return msg.as_bytes(policy=SMTP)


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per CPU second of ``fn``, measured for at least ``seconds`` of CPU time.

    Process CPU time rather than wall time, so that other load on a shared machine does not
    distort the comparison (both builders are pure CPU work).
    """
    n = 0
    start = now = time.process_time()
    while now - start < seconds:
        for _ in range(20):
            fn()
        n += 20
        now = time.process_time()
    return n / (now - start)


CASES = [
    ("simple text", SIMPLE, []),
    ("full html, non-ASCII", FULL, []),
    ("full + 10 KB attachment", FULL, ATTACHMENTS),
]


def run(ctx: Run) -> None:
    """One record per case: both builders' rates per CPU second and the speed-up."""
    seconds = 0.3 if ctx.options.quick else 1.0
    for name, payload, parts in CASES:
        ours = rate(partial(build_message, payload, now=NOW, attachments=parts), seconds)
        theirs = rate(partial(stdlib, payload, parts), seconds)
        figures = {
            "built_per_cpu_s": round(ours),
            "stdlib_per_cpu_s": round(theirs),
            "us_per_msg": round(1e6 / ours, 1),
            "ratio_stdlib": round(ours / theirs, 2),
        }
        ctx.emit(Record("mime", name, figures))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.mime", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per case and builder")
    seconds = parser.parse_args(argv).seconds
    cases = CASES
    print("messages built per CPU second (µs/msg: mailproxyd)")
    print(f"{'case':<26} {'mailproxyd':>12} {'EmailMessage':>13} {'speed-up':>9}  µs/msg")
    for name, payload, parts in cases:
        ours = rate(partial(build_message, payload, now=NOW, attachments=parts), seconds)
        theirs = rate(partial(stdlib, payload, parts), seconds)
        print(
            f"{name:<26} {ours:>10.0f}/s {theirs:>11.0f}/s {ours / theirs:>8.1f}x  {1e6 / ours:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
