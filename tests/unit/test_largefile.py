"""Large-file links (reference §11.8, §5.8): tokens, the size rule, the footers."""

from __future__ import annotations

from mailproxyd.core import largefile
from mailproxyd.core.largefile import Link, TokenCheck

KEY = b"k" * 32
FILE_ID = "0123456789abcdef0123456789abcdef"


def test_token_shape_and_checks() -> None:
    token = largefile.make_token(KEY, FILE_ID, "big.bin", 2000)
    file_id, expires, signature = token.split("-")
    assert (file_id, expires, len(signature)) == (FILE_ID, "2000", 64)
    assert largefile.check_token(KEY, token, "big.bin", now=1999) is TokenCheck.VALID
    assert largefile.check_token(KEY, token, "big.bin", now=2000) is TokenCheck.EXPIRED
    # Signature first: another name or a changed expiry is invalid, expired or not.
    assert largefile.check_token(KEY, token, "other.bin", now=1) is TokenCheck.INVALID
    forged = token.replace("-2000-", "-9000-")
    assert largefile.check_token(KEY, forged, "big.bin", now=1) is TokenCheck.INVALID
    assert largefile.check_token(b"x" * 32, token, "big.bin", now=1) is TokenCheck.INVALID
    assert largefile.check_token(KEY, "garbage", "big.bin", now=1) is TokenCheck.INVALID


def test_size_rule_and_reject_text() -> None:
    config = {"max_size_mb": 10}
    assert not largefile.is_large(10 * 1_048_576, config)
    assert largefile.is_large(10 * 1_048_576 + 1, config)
    size = int(12.4 * 1_048_576)
    assert (
        largefile.reject_text("scan.pdf", size, config)
        == "Attachment 'scan.pdf' (12.4 MB) exceeds limit (10.0 MB)"
    )


def test_footers() -> None:
    links = [
        Link("big-report.bin", 104_858, "https://files.acme.example/download/t/big-report.bin")
    ]
    expires = 1769817600  # 2026-01-31 00:00 UTC
    assert largefile.with_footer("Hello", "plain", links, expires) == (
        "Hello\n\n---\nLarge attachments available for download:\n"
        "- big-report.bin (0.1 MB): https://files.acme.example/download/t/big-report.bin\n"
        "Links expire on 2026-01-31 00:00 UTC.\n"
    )
    html = largefile.with_footer(
        "<html><body><p>Hi</p></body></html>",
        "html",
        [Link("a<b>.bin", 104_858, "https://x.example/d/t/a")],
        expires,
    )
    assert html == (
        "<html><body><p>Hi</p><hr><p><strong>Large attachments available for download:"
        '</strong></p><ul><li><a href="https://x.example/d/t/a">a&lt;b&gt;.bin</a> (0.1 MB)'
        "</li></ul><p><em>Links expire on 2026-01-31 00:00 UTC.</em></p></body></html>"
    )
