"""Attachment file names and cache hints (reference §11.6, §11.8).

``{MD5:<hex>}`` markers are removed from the name sent in the e-mail; a marker of exactly 32
hex digits becomes the cache hint (``content_md5`` wins). Names also lose C0 and C1 control
characters and the bidirectional controls that make ``invoice‮fdp.exe`` read as a PDF.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

_MARKER: Final = re.compile(r"\{md5:([^{}]*)\}", re.IGNORECASE)
_HEX32: Final = re.compile(r"[0-9a-fA-F]{32}")
_UNDERSCORES: Final = re.compile(r"_{2,}")
# C0, DEL, C1, and the bidi marks, embeddings, overrides and isolates.
_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
DEFAULT_NAME: Final = "attachment"


def marker_hint(filename: str) -> str | None:
    """The lower-cased MD5 of the first 32-hex-digit marker in ``filename``, else ``None``."""
    for match in _MARKER.finditer(filename):
        if _HEX32.fullmatch(match.group(1)):
            return match.group(1).lower()
    return None


def cache_hint(item: Mapping[str, Any]) -> str | None:
    """The cache key hint of a stored attachment: ``content_md5``, else its name's marker."""
    md5 = item.get("content_md5")
    if isinstance(md5, str) and _HEX32.fullmatch(md5):
        return md5.lower()
    name = item.get("filename")
    return marker_hint(name) if isinstance(name, str) else None


def clean_filename(filename: str) -> str:
    """The name sent in the e-mail (reference §11.6): markers out, ``_`` tidied, unsafe characters out."""
    name = _UNSAFE.sub("", filename)
    if _MARKER.search(name):
        name = _UNDERSCORES.sub("_", _MARKER.sub("", name))
        stem, dot, ext = name.rpartition(".")
        if dot:
            name = f"{stem.rstrip('_')}.{ext.lstrip('_')}"
        name = _UNDERSCORES.sub("_", name).strip("_")
    stem, dot, ext = name.rpartition(".")
    if dot and not stem:
        return f"{DEFAULT_NAME}.{ext}" if ext else DEFAULT_NAME
    return name or DEFAULT_NAME


def storage_filename(filename: str) -> str:
    """The name of an uploaded large file (reference §11.8): cleaned, without path separators."""
    name = clean_filename(filename).replace("/", "").replace("\\", "")
    return clean_filename(name) if name not in ("", ".", "..") else DEFAULT_NAME
