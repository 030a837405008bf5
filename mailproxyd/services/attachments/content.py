"""Fetched content: in memory when small, in a temporary file above the disk threshold."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import trio


@dataclass
class Content:
    """The bytes of one attachment, with their size and MD5, wherever they are kept."""

    size: int
    md5: str
    data: bytes | None = None
    path: str | None = None  # a temporary file owned by this object (see ``discard``)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        with open(self.path, "rb") as src:
            return src.read()

    def discard(self) -> None:
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.path = None


@dataclass
class Sink:
    """Collects a fetch chunk by chunk; spills to a temporary file past ``threshold`` bytes.

    ``add`` returns False once ``cap`` is passed, so the caller cuts the transfer at once.
    """

    cap: int
    threshold: int
    tmp_dir: str | None = None
    size: int = 0
    _chunks: list[bytes] = field(default_factory=list)
    _md5: Any = field(default_factory=hashlib.md5)
    _file: BinaryIO | None = None
    _path: str | None = None

    async def add(self, chunk: bytes) -> bool:
        self.size += len(chunk)
        if self.size > self.cap:
            return False
        self._md5.update(chunk)
        if self._file is None and self.size > self.threshold:
            fd, self._path = tempfile.mkstemp(prefix="mail-proxy-att-", dir=self.tmp_dir)
            self._file = os.fdopen(fd, "wb")
            pending, self._chunks = self._chunks, []
            await trio.to_thread.run_sync(self._file.writelines, pending)
        if self._file is not None:
            await trio.to_thread.run_sync(self._file.write, chunk)
        else:
            self._chunks.append(chunk)
        return True

    def close(self) -> Content:
        if self._file is not None:
            self._file.close()
            return Content(self.size, self._md5.hexdigest(), path=self._path)
        return Content(self.size, self._md5.hexdigest(), data=b"".join(self._chunks))

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._path is not None:
            try:
                os.unlink(self._path)
            except OSError:
                pass
        self._chunks = []


def in_memory(data: bytes) -> Content:
    return Content(len(data), hashlib.md5(data).hexdigest(), data=data)
