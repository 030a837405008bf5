"""Large-file downloads (reference §5.8): a signed token and a file name in, the file out."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import trio

from mailproxyd.core import largefile
from mailproxyd.drivers import storage
from mailproxyd.services.attachments.large import link_key
from mailproxyd.store import largefiles


class LinkInvalid(Exception):
    """Bad signature, another file name, or an unknown file: 404."""


class LinkExpired(Exception):
    """Correctly signed, past its expiry: 410."""


@dataclass(frozen=True, slots=True)
class Download:
    filename: str
    size: int
    max_age: int
    url: str

    async def chunks(self) -> AsyncIterator[bytes]:
        reader: Iterator[bytes] = await trio.to_thread.run_sync(storage.read_chunks, self.url)
        sentinel = b""
        while True:
            chunk = await trio.to_thread.run_sync(next, reader, sentinel)
            if not chunk:
                return
            yield chunk


async def open_download(
    db: Any, instance_key: bytes, token: str, filename: str, *, now: float
) -> Download:
    """The file behind a link, or :class:`LinkInvalid` / :class:`LinkExpired`."""
    verdict = largefile.check_token(link_key(instance_key), token, filename, now=now)
    if verdict is largefile.TokenCheck.INVALID:
        raise LinkInvalid
    if verdict is largefile.TokenCheck.EXPIRED:
        raise LinkExpired
    parsed = largefile.parse_token(token)
    assert parsed is not None
    file_id, expires_at, _ = parsed
    entry = await db.run(largefiles.get, file_id=file_id, write=False)
    if entry is None or entry.get("filename") != filename:
        raise LinkInvalid
    url = str(entry["url"])
    try:
        size = await trio.to_thread.run_sync(storage.size, url)
    except storage.StorageError:
        size = None
    if size is None:
        raise LinkInvalid
    return Download(filename, size, max(0, math.floor(expires_at - now)), url)
