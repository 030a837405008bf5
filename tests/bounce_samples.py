"""Bounce messages as real mail systems write them, for the parser and the mailbox tests.

Each builder returns the raw bytes of one message for the bounce mailbox. ``original`` is the
returned message (or only its headers), normally the bytes the SMTP server received from
mail-proxy; :func:`original_message` makes a small one when a test has none.
"""

from __future__ import annotations

ANN = "ann@example.org"


def original_message(
    message_id: str = "<5f1e0c8e9d2a4b7c8e1f00aa11bb22cc@acme.example>",
    mail_id: str | None = "MSG-001",
    to: str = ANN,
) -> bytes:
    lines = [
        "From: Shop <orders@acme.example>",
        f"To: {to}",
        "Subject: Your order",
        "Date: Thu, 01 Jan 2026 00:00:05 +0000",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: 7bit",
    ]
    if mail_id is not None:
        lines.append(f"X-Genro-Mail-ID: {mail_id}")
    return ("\r\n".join(lines) + "\r\n\r\nThank you for your order.\r\n").encode()


def _headers_only(original: bytes) -> bytes:
    return original.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0] + b"\r\n"


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def postfix_dsn(
    original: bytes,
    recipient: str = ANN,
    *,
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <ann@example.org>: Recipient address rejected",
    bounce_id: str = "4B3F5C0A12",
) -> bytes:
    """Postfix's ``Undelivered Mail Returned to Sender`` (RFC 3464, the original attached)."""
    boundary = f"{bounce_id}.1767229200/mx.acme.example"
    head = f"""Return-Path: <>
Received: by mx.acme.example (Postfix) id {bounce_id}; Thu,  1 Jan 2026 01:00:00 +0000 (UTC)
Date: Thu,  1 Jan 2026 01:00:00 +0000 (UTC)
From: MAILER-DAEMON@mx.acme.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@acme.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: <20260101010000.{bounce_id}@mx.acme.example>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.acme.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

                   The mail system

<{recipient}>: host mx.example.org[203.0.113.5] said: 550 5.1.1
    <{recipient}>: Recipient address rejected (in reply to RCPT TO command)

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.acme.example
X-Postfix-Queue-ID: {bounce_id}
X-Postfix-Sender: rfc822; bounces@acme.example
Arrival-Date: Thu,  1 Jan 2026 00:00:05 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: {status}
Remote-MTA: dns; mx.example.org
Diagnostic-Code: {diagnostic}

--{boundary}
Content-Description: Undelivered Message
Content-Type: message/rfc822
Content-Transfer-Encoding: 8bit

"""
    return (
        _crlf(head)
        + original.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        + _crlf(f"\n--{boundary}--\n")
    )


def postfix_delayed(original: bytes, recipient: str = ANN) -> bytes:
    """Postfix's ``Delayed Mail (still being retried)``: Action delayed, headers only."""
    boundary = "7C1D2E3F4A.1767240000/mx.acme.example"
    text = f"""Return-Path: <>
Date: Thu,  1 Jan 2026 04:00:00 +0000 (UTC)
From: MAILER-DAEMON@mx.acme.example (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: bounces@acme.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Message-Id: <20260101040000.7C1D2E3F4A@mx.acme.example>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.acme.example.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than 4 hour(s).
It will be retried until it is 5 day(s) old.

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.acme.example
X-Postfix-Queue-ID: 7C1D2E3F4A
Arrival-Date: Thu,  1 Jan 2026 00:00:05 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.org[203.0.113.5]:25: Connection
    timed out
Will-Retry-Until: Tue,  6 Jan 2026 00:00:05 +0000 (UTC)

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

"""
    return _crlf(text) + _headers_only(original) + _crlf(f"\n--{boundary}--\n")


def exchange_dsn(original: bytes, recipient: str = "nobody@example.org") -> bytes:
    """Exchange Online's ``Undeliverable:`` report: HTML and text, status, returned headers."""
    boundary = "_000_AM0PR01MB12345A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5Deurprd01pro_"
    alt = "_002_AM0PR01MB12345A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5Deurprd01pro_"
    text = f"""From: Microsoft Outlook
\t<MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@acme.example>
To: <bounces@acme.example>
Date: Thu, 1 Jan 2026 01:00:00 +0000
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Message-ID: <9e1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>
In-Reply-To: <5f1e0c8e9d2a4b7c8e1f00aa11bb22cc@acme.example>
Subject: Undeliverable: Your order
Auto-Submitted: auto-replied
X-MS-Exchange-Message-Is-Ndr:
MIME-Version: 1.0

--{boundary}
Content-Type: multipart/alternative; differences=Content-Type;
\tboundary="{alt}"

--{alt}
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Your message to {recipient} couldn't be delivered.
{recipient.split("@")[0]} wasn't found at {recipient.split("@")[1]}.
Office 365

--{alt}
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

<html><body><p>Your message to {recipient} couldn't be delivered.</p></body></html>

--{alt}--

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com
Received-From-MTA: dns;mx.acme.example
Arrival-Date: Thu, 1 Jan 2026 00:00:05 +0000

Final-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not
 found by SMTP address lookup
Remote-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com
X-Display-Name: {recipient}

--{boundary}
Content-Type: text/rfc822-headers

"""
    return _crlf(text) + _headers_only(original) + _crlf(f"\n--{boundary}--\n")


def text_bounce(original: bytes, recipient: str = "bob@example.org") -> bytes:
    """A plain-text ``Undelivered Mail Returned to Sender`` quoting the original."""
    text = f"""Return-Path: <>
Date: Thu, 1 Jan 2026 01:00:00 +0000
From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>
To: bounces@acme.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <bounce-77@relay.example.net>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hi. This is the qmail-send program at relay.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{recipient}>:
203.0.113.9 does not like recipient.
Remote host said: 552 5.2.2 Mailbox full
Giving up on 203.0.113.9.

--- Below this line is a copy of the message.

"""
    return _crlf(text) + original.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def not_a_bounce() -> bytes:
    return _crlf(
        """From: Ann <ann@example.org>
To: bounces@acme.example
Subject: Re: Your order
Date: Thu, 1 Jan 2026 02:00:00 +0000
Message-ID: <reply-1@example.org>
In-Reply-To: <5f1e0c8e9d2a4b7c8e1f00aa11bb22cc@acme.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Thanks, but I wanted the blue one. Error 550 happens to be my favourite number.
"""
    )


def malformed_bounce() -> bytes:
    """A DSN whose multipart body never shows its boundary."""
    return _crlf(
        """From: MAILER-DAEMON@mx.acme.example (Mail Delivery System)
To: bounces@acme.example
Subject: Undelivered Mail Returned to Sender
Date: Thu, 1 Jan 2026 03:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="never-used"

This body has no MIME parts at all, although the header announces them.
Final-Recipient: rfc822; ann@example.org
Action: failed
"""
    )
