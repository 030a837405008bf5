"""Enqueue-time attachment rules (reference §6.3, §11.1, §11.4)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailproxyd.core.attachment_rules import (
    MIB,
    AttachmentPolicy,
    AttachmentProblem,
    base64_size,
    check_attachment,
    decode_base64,
    infer_fetch_mode,
    normalise_roots,
    path_allowed,
)

POLICY = AttachmentPolicy(
    max_bytes=MIB, filesystem_roots=normalise_roots(["/srv/mail/"]), has_client_base_url=True
)


def problem(raw: Any, policy: AttachmentPolicy = POLICY) -> str:
    with pytest.raises(AttachmentProblem) as failed:
        check_attachment(raw, policy)
    return str(failed.value.args[0])


@pytest.mark.parametrize(
    ("path", "mode", "rest"),
    [
        ("base64:aGk=", "base64", "aGk="),
        ("http://x.example/a", "http_url", "http://x.example/a"),
        ("https://x.example/a", "http_url", "https://x.example/a"),
        ("/srv/mail/a", "filesystem", "/srv/mail/a"),
        ("doc_id=42&v=2", "endpoint", "doc_id=42&v=2"),
        ("aGk=", "endpoint", "aGk="),  # raw base64 needs an explicit fetch_mode
        ("[https://other.example/p]rest", "endpoint", "[https://other.example/p]rest"),
    ],
)
def test_inference(path: str, mode: str, rest: str) -> None:
    assert infer_fetch_mode(path) == (mode, rest)


@given(st.binary(max_size=300), st.booleans(), st.booleans())
def test_base64_size_matches_decoding(data: bytes, strip_padding: bool, wrap: bool) -> None:
    text = base64.b64encode(data).decode()
    if strip_padding:
        text = text.rstrip("=")
    if wrap:
        text = "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert base64_size(text) == len(data)
    assert decode_base64(text) == data
    assert decode_base64("base64:" + text) == data


@pytest.mark.parametrize("text", ["a", "abcde", "ab$d", "é", "ab=c"])
def test_invalid_base64(text: str) -> None:
    assert base64_size(text) is None
    with pytest.raises(ValueError):
        decode_base64(text)


def test_paths() -> None:
    roots = normalise_roots(["/srv/mail/", "relative/ignored", "/data"])
    assert roots == ("/srv/mail", "/data")
    assert path_allowed("/srv/mail/a.pdf", roots)
    assert path_allowed("/srv/mail//x/./y.pdf", roots)
    assert path_allowed("/data/x", roots)
    assert not path_allowed("/srv/mailbox/a.pdf", roots)
    assert not path_allowed("/srv/mail/../etc/passwd", roots)
    assert not path_allowed("srv/mail/a", roots)
    assert not path_allowed("/etc/passwd", roots)
    assert path_allowed("/anything", normalise_roots(["/"]))


def test_stored_form() -> None:
    assert check_attachment(
        {
            "filename": "r_{MD5:5D41402ABC4B2A76B9719D911017C592}.pdf",
            "storage_path": "base64:aGVsbG8=",
            "mime_type": "application/pdf",
            "content_md5": "5D41402ABC4B2A76B9719D911017C592",
            "auth": None,
        },
        POLICY,
    ) == {
        "filename": "r_{MD5:5D41402ABC4B2A76B9719D911017C592}.pdf",
        "storage_path": "aGVsbG8=",
        "fetch_mode": "base64",
        "mime_type": "application/pdf",
        "content_md5": "5d41402abc4b2a76b9719d911017c592",
        "size": 5,
    }
    assert check_attachment(
        {
            "filename": "f",
            "storage_path": "https://x.example/f",
            "auth": {"method": "basic", "user": "u", "password": "p"},
        },
        POLICY,
    )["auth"] == {"method": "basic", "user": "u", "password": "p"}
    assert (
        check_attachment(
            {"filename": "f", "storage_path": "base64:aGk", "fetch_mode": "base64"}, POLICY
        )["storage_path"]
        == "aGk"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("x", "must be an object"),
        ({"filename": "a", "storage_path": "x", "content": "x"}, "unknown field content"),
        ({"storage_path": "x"}, "missing filename"),
        ({"filename": "", "storage_path": "x"}, "missing filename"),
        ({"filename": "a/b", "storage_path": "x"}, "invalid filename: a/b"),
        ({"filename": "a\\b", "storage_path": "x"}, "invalid filename: a\\b"),
        ({"filename": "a\nb", "storage_path": "x"}, "invalid filename: a\\nb"),
        ({"filename": "x" * 256, "storage_path": "x"}, "invalid filename: " + "x" * 200),
        ({"filename": "a"}, "missing storage_path"),
        ({"filename": "a", "storage_path": 5}, "invalid storage_path: 5"),
        ({"filename": "a", "storage_path": "x", "fetch_mode": "ftp"}, "invalid fetch_mode: ftp"),
        ({"filename": "a", "storage_path": "x", "mime_type": "pdf"}, "invalid mime_type: pdf"),
        ({"filename": "a", "storage_path": "x", "content_md5": "abc"}, "invalid content_md5: abc"),
        ({"filename": "a", "storage_path": "x", "auth": "tok"}, "invalid auth: must be an object"),
        (
            {"filename": "a", "storage_path": "x", "auth": {"method": "digest"}},
            "invalid auth: method digest",
        ),
        (
            {"filename": "a", "storage_path": "x", "auth": {"method": "bearer"}},
            "invalid auth: bearer needs token",
        ),
        (
            {"filename": "a", "storage_path": "x", "auth": {"method": "basic", "user": "u"}},
            "invalid auth: basic needs user and password",
        ),
        (
            {"filename": "a", "storage_path": "x", "auth": {"method": "bearer", "token": 5}},
            "invalid auth: token must be a string",
        ),
        (
            {"filename": "a", "storage_path": "x", "auth": {"scheme": "x"}},
            "invalid auth: unknown field scheme",
        ),
        ({"filename": "a", "storage_path": "base64:@@@"}, "invalid base64 data"),
        ({"filename": "a", "storage_path": "aGk$", "fetch_mode": "base64"}, "invalid base64 data"),
        (
            {"filename": "a", "storage_path": "base64:" + "A" * (4 * (MIB // 3 + 1))},
            "larger than 1 MB",
        ),
        ({"filename": "a", "storage_path": "/etc/passwd"}, "path not allowed: /etc/passwd"),
        ({"filename": "a", "storage_path": "/srv/mail/../x"}, "path not allowed: /srv/mail/../x"),
        (
            {"filename": "a", "storage_path": "relative", "fetch_mode": "filesystem"},
            "path not allowed: relative",
        ),
        (
            {"filename": "a", "storage_path": "ftp://x/y", "fetch_mode": "http_url"},
            "not an http or https URL: ftp://x/y",
        ),
        (
            {"filename": "a", "storage_path": "https://", "fetch_mode": "http_url"},
            "not an http or https URL: https://",
        ),
    ],
)
def test_problems(raw: Any, expected: str) -> None:
    assert problem(raw) == expected


def test_policy_switches() -> None:
    disabled = AttachmentPolicy(max_bytes=MIB)
    assert (
        problem({"filename": "a", "storage_path": "/srv/mail/a"}, disabled)
        == "filesystem attachments are disabled"
    )
    assert (
        problem({"filename": "a", "storage_path": "doc=1"}, disabled)
        == "endpoint attachments need the tenant's client_base_url"
    )
    exact = "A" * (4 * (MIB // 3)) + "AA=="  # exactly 1 MiB
    assert base64_size(exact) == MIB
    assert (
        check_attachment({"filename": "a", "storage_path": "base64:" + exact}, POLICY)["size"]
        == MIB
    )
