"""Enqueue-time rules for message attachments (reference §6.3, §11.1, §11.4).

Only what can be decided without I/O is checked here: field syntax, fetch-mode inference,
that base64 data decodes and fits the size cap, that a ``filesystem`` path lies lexically
under an allowed root, that ``endpoint`` mode has a tenant endpoint to go to, and that
``http_url`` is an http(s) URL. Reachability, fetched sizes and symlinks are the attachment
service's business at send time.
"""

from __future__ import annotations

import binascii
import posixpath
import re
from collections.abc import Iterable
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

from mailproxyd.core.reasons import show_value

MIB: Final = 1_048_576
FETCH_MODES: Final = frozenset({"endpoint", "http_url", "base64", "filesystem"})
AUTH_METHODS: Final = frozenset({"none", "bearer", "basic"})
_FIELDS: Final = frozenset(
    {"filename", "storage_path", "fetch_mode", "mime_type", "content_md5", "auth"}
)
_AUTH_FIELDS: Final = frozenset({"method", "token", "user", "password"})

FILENAME_PATTERN = re.compile(r"[^/\\\x00-\x1f\x7f]{1,255}")
MIME_TYPE_PATTERN = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+\-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+\-]*"
)
MD5_PATTERN = re.compile(r"[0-9a-fA-F]{32}")
_BASE64_BODY = re.compile(rb"[A-Za-z0-9+/]*")
_WHITESPACE = re.compile(rb"[ \t\r\n]+")


class AttachmentProblem(ValueError):
    """One attachment breaks a rule; ``args[0]`` is the problem text of reference §6.4 rule 26."""


class AttachmentPolicy(NamedTuple):
    """What the enqueue checks need to know about the instance and the tenant."""

    max_bytes: int = 25 * MIB
    #: Allowed roots of ``filesystem`` attachments, normalised (see :func:`normalise_roots`).
    filesystem_roots: tuple[str, ...] = ()
    #: Whether the tenant has a ``client_base_url`` (needed by ``endpoint`` mode).
    has_client_base_url: bool = False


def normalise_roots(roots: Iterable[str]) -> tuple[str, ...]:
    """Roots as compared by :func:`path_allowed`: absolute, normalised, no trailing ``/``."""
    return tuple(posixpath.normpath(root) for root in roots if root.startswith("/"))


def infer_fetch_mode(storage_path: str) -> tuple[str, str]:
    """``(fetch_mode, storage_path)`` for an attachment without ``fetch_mode`` (reference §11.1)."""
    if storage_path.startswith("base64:"):
        return "base64", storage_path[7:]
    if storage_path.startswith(("http://", "https://")):
        return "http_url", storage_path
    if storage_path.startswith("/"):
        return "filesystem", storage_path
    return "endpoint", storage_path


def _base64_core(data: str) -> bytes | None:
    """The base64 characters of ``data`` without blanks and padding, ``None`` if not base64."""
    try:
        raw = data.encode("ascii")
    except UnicodeEncodeError:
        return None
    if b" " in raw or b"\n" in raw or b"\r" in raw or b"\t" in raw:
        raw = _WHITESPACE.sub(b"", raw)
    raw = raw.rstrip(b"=")
    # Length 1 mod 4 leaves 6 stray bits: not a whole byte, so not base64 at all.
    if len(raw) % 4 == 1 or _BASE64_BODY.fullmatch(raw) is None:
        return None
    return raw


def base64_size(data: str) -> int | None:
    """Decoded size of base64 ``data`` (padding optional), ``None`` when it does not decode.

    Computed from the length: validating the alphabet is all decoding would add, and it
    keeps a 25 MB attachment from being materialised twice at enqueue.
    """
    core = _base64_core(data)
    return None if core is None else len(core) * 3 // 4


def decode_base64(data: str) -> bytes:
    """Decode base64 as accepted at enqueue (blanks and missing padding tolerated)."""
    if data.startswith("base64:"):
        data = data[7:]
    core = _base64_core(data)
    if core is None:
        raise ValueError("invalid base64 data")
    return binascii.a2b_base64(core + b"=" * (-len(core) % 4))


def path_allowed(path: str, roots: tuple[str, ...]) -> bool:
    """Lexical check of reference §11.4: absolute, no ``..`` segment, under one of ``roots``."""
    if not path.startswith("/") or ".." in path.split("/"):
        return False
    normal = posixpath.normpath(path)
    for root in roots:
        if root == "/" or normal == root or normal.startswith(root + "/"):
            return True
    return False


def check_attachment(raw: Any, policy: AttachmentPolicy) -> dict[str, Any]:
    """Validate one attachment and return its stored form, or raise :class:`AttachmentProblem`.

    The stored form always carries ``fetch_mode`` (inferred when absent, reference §11.1); base64
    attachments also carry ``size`` (decoded bytes) and lose the ``base64:`` prefix.
    """
    if type(raw) is not dict:
        raise AttachmentProblem("must be an object")
    for key in raw:
        if key not in _FIELDS:
            raise AttachmentProblem(f"unknown field {show_value(key)}")
    filename = raw.get("filename")
    if filename is None or filename == "":
        raise AttachmentProblem("missing filename")
    if type(filename) is not str or FILENAME_PATTERN.fullmatch(filename) is None:
        raise AttachmentProblem(f"invalid filename: {show_value(filename)}")
    storage_path = raw.get("storage_path")
    if storage_path is None or storage_path == "":
        raise AttachmentProblem("missing storage_path")
    if type(storage_path) is not str:
        raise AttachmentProblem(f"invalid storage_path: {show_value(storage_path)}")
    fetch_mode = raw.get("fetch_mode")
    if fetch_mode is None:
        fetch_mode, storage_path = infer_fetch_mode(storage_path)
    elif type(fetch_mode) is not str or fetch_mode not in FETCH_MODES:
        raise AttachmentProblem(f"invalid fetch_mode: {show_value(fetch_mode)}")
    elif fetch_mode == "base64" and storage_path.startswith("base64:"):
        storage_path = storage_path[7:]
    stored: dict[str, Any] = {
        "filename": filename,
        "storage_path": storage_path,
        "fetch_mode": fetch_mode,
    }
    mime_type = raw.get("mime_type")
    if mime_type is not None:
        if type(mime_type) is not str or MIME_TYPE_PATTERN.fullmatch(mime_type) is None:
            raise AttachmentProblem(f"invalid mime_type: {show_value(mime_type)}")
        stored["mime_type"] = mime_type
    content_md5 = raw.get("content_md5")
    if content_md5 is not None:
        if type(content_md5) is not str or MD5_PATTERN.fullmatch(content_md5) is None:
            raise AttachmentProblem(f"invalid content_md5: {show_value(content_md5)}")
        stored["content_md5"] = content_md5.lower()
    auth = raw.get("auth")
    if auth is not None:
        stored["auth"] = _check_auth(auth)
    _check_source(stored, policy)
    return stored


def _check_auth(auth: Any) -> dict[str, str]:
    if type(auth) is not dict:
        raise AttachmentProblem("invalid auth: must be an object")
    for key in auth:
        if key not in _AUTH_FIELDS:
            raise AttachmentProblem(f"invalid auth: unknown field {show_value(key)}")
    method = auth.get("method", "none")
    if method is None:
        method = "none"
    if type(method) is not str or method not in AUTH_METHODS:
        raise AttachmentProblem(f"invalid auth: method {show_value(method)}")
    stored = {"method": method}
    for key in ("token", "user", "password"):
        value = auth.get(key)
        if value is None:
            continue
        if type(value) is not str:
            raise AttachmentProblem(f"invalid auth: {key} must be a string")
        stored[key] = value
    if method == "bearer" and not stored.get("token"):
        raise AttachmentProblem("invalid auth: bearer needs token")
    if method == "basic" and ("user" not in stored or "password" not in stored):
        raise AttachmentProblem("invalid auth: basic needs user and password")
    return stored


def _check_source(stored: dict[str, Any], policy: AttachmentPolicy) -> None:
    mode = stored["fetch_mode"]
    path = stored["storage_path"]
    if mode == "base64":
        size = base64_size(path)
        if size is None:
            raise AttachmentProblem("invalid base64 data")
        if size > policy.max_bytes:
            raise AttachmentProblem(f"larger than {policy.max_bytes // MIB} MB")
        stored["size"] = size
    elif mode == "filesystem":
        if not policy.filesystem_roots:
            raise AttachmentProblem("filesystem attachments are disabled")
        if not path_allowed(path, policy.filesystem_roots):
            raise AttachmentProblem(f"path not allowed: {show_value(path)}")
    elif mode == "endpoint":
        if not policy.has_client_base_url:
            raise AttachmentProblem("endpoint attachments need the tenant's client_base_url")
    else:  # http_url
        try:
            parts = urlsplit(path)
            valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            raise AttachmentProblem(f"not an http or https URL: {show_value(path)}")


def without_data(item: Any) -> Any:
    """An attachment as a record shows it (reference §5.3): a base64 one without ``storage_path`` (its
    content) but with ``size``, the decoded bytes. Other attachments are returned as they are.
    """
    if type(item) is not dict:
        return item
    data = item.get("storage_path")
    mode = item.get("fetch_mode")
    if type(data) is not str or not (
        mode == "base64" or (mode is None and data.startswith("base64:"))
    ):
        return item
    shown = {key: value for key, value in item.items() if key != "storage_path"}
    if type(shown.get("size")) is not int:
        body = data[7:] if data.startswith("base64:") else data
        size = base64_size(body)
        shown["size"] = size if size is not None else len(body)
    return shown
