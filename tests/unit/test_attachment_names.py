"""File names and cache hints of attachments (reference §11.6, §11.8)."""

from __future__ import annotations

import pytest

from mailproxyd.core.attachment_names import (
    cache_hint,
    clean_filename,
    marker_hint,
    storage_filename,
)

MD5 = "5d41402abc4b2a76b9719d911017c592"


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (f"report_{{MD5:{MD5}}}.pdf", "report.pdf"),
        (f"{{MD5:{MD5}}}.pdf", "attachment.pdf"),
        (f"{{md5:{MD5.upper()}}}_x__y_.txt", "x_y.txt"),
        (f"a_{{MD5:{MD5}}}_b.csv", "a_b.csv"),
        ("__init__.py", "__init__.py"),  # no marker: the name is left alone
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("tab\x85name\u2066.txt", "tabname.txt"),
        ("", "attachment"),
    ],
)
def test_clean_filename(given: str, sent: str) -> None:
    assert clean_filename(given) == sent


def test_a_32_digit_marker_is_the_hint_and_content_md5_wins() -> None:
    assert marker_hint(f"r_{{MD5:{MD5.upper()}}}.pdf") == MD5
    assert marker_hint("r_{MD5:abc}.pdf") is None
    other = "0" * 32
    assert cache_hint({"filename": f"r_{{MD5:{MD5}}}.pdf", "content_md5": other}) == other
    assert cache_hint({"filename": f"r_{{MD5:{MD5}}}.pdf"}) == MD5
    assert cache_hint({"filename": "plain.pdf"}) is None


def test_storage_names_have_no_path_separators() -> None:
    assert storage_filename("a/b\\c.pdf") == "abc.pdf"
    assert storage_filename("..") == "attachment"
