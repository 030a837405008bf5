"""The attachment cache (reference §11.7): a memory LRU per process, a disk tier per node.

Keys are ``(tenant_id, md5)``: a tenant never sees another tenant's content. The memory tier
holds only items smaller than the disk threshold; the disk tier (when ``GMP_CACHE_DISK_DIR``
is set) holds every cached item, one file per key under a directory per tenant (named by a
digest of the tenant id, so no id can escape the cache directory). Files are written to a
temporary name and renamed, so the sender processes sharing the directory never read a
half-written entry. The modification time is the entry's age: expiry and eviction (oldest
first) go by it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass

import trio

from mailproxyd.services.attachments.content import Content, in_memory

Key = tuple[str, str]
MB = 1_048_576


class MemoryTier:
    """LRU by total bytes, with a lifetime per entry."""

    def __init__(self, max_bytes: int, ttl: float) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._items: OrderedDict[Key, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0

    def get(self, key: Key, now: float) -> bytes | None:
        found = self._items.get(key)
        if found is None:
            return None
        data, expires = found
        if expires <= now:
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return data

    def put(self, key: Key, data: bytes, now: float) -> None:
        if len(data) > self.max_bytes:
            return
        self._drop(key)
        self._items[key] = (data, now + self.ttl)
        self._bytes += len(data)
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._items))
            self._drop(oldest)

    def _drop(self, key: Key) -> None:
        found = self._items.pop(key, None)
        if found is not None:
            self._bytes -= len(found[0])

    def expire(self, now: float) -> int:
        stale = [k for k, (_, expires) in self._items.items() if expires <= now]
        for key in stale:
            self._drop(key)
        return len(stale)

    @property
    def size(self) -> int:
        return self._bytes


class DiskTier:
    """Files under ``root``; blocking methods, called through ``trio.to_thread``."""

    def __init__(self, root: str, max_bytes: int, ttl: float) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.ttl = ttl

    def path(self, key: Key) -> str:
        tenant_dir = hashlib.sha256(key[0].encode("utf-8")).hexdigest()[:32]
        return os.path.join(self.root, tenant_dir, key[1])

    def get(self, key: Key, now: float) -> str | None:
        """The path of a live entry, else ``None`` (an expired one is removed)."""
        path = self.path(key)
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return None
        if mtime + self.ttl <= now:
            _unlink(path)
            return None
        return path

    def put(self, key: Key, content: Content) -> None:
        path = self.path(key)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                if content.data is not None:
                    out.write(content.data)
                else:
                    assert content.path is not None
                    with open(content.path, "rb") as src:
                        while chunk := src.read(MB):
                            out.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise
        self.evict()

    def _entries(self) -> list[tuple[float, int, str]]:
        found: list[tuple[float, int, str]] = []
        try:
            tenants = os.listdir(self.root)
        except OSError:
            return found
        for tenant_dir in tenants:
            base = os.path.join(self.root, tenant_dir)
            try:
                names = os.listdir(base)
            except OSError:
                continue
            for name in names:
                path = os.path.join(base, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                found.append((st.st_mtime, st.st_size, path))
        return found

    def evict(self) -> int:
        """Remove the oldest entries until the tier fits its size."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            _unlink(path)
            total -= size
            removed += 1
        return removed

    def expire(self, now: float) -> int:
        removed = 0
        for mtime, _, path in self._entries():
            # Temporary files of a crashed writer age out like entries.
            if mtime + self.ttl <= now:
                _unlink(path)
                removed += 1
        return removed


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@dataclass
class TieredCache:
    """Both tiers behind one lookup/store (reference §11.7)."""

    memory: MemoryTier | None
    disk: DiskTier | None
    threshold: int  # bytes: items at least this large go to the disk tier only

    @classmethod
    def from_settings(cls, settings: object) -> TieredCache:
        s = settings
        threshold = int(getattr(s, "cache_disk_threshold_kb", 100)) * 1024
        memory_mb = int(getattr(s, "cache_memory_max_mb", 50))
        memory = (
            MemoryTier(memory_mb * MB, float(getattr(s, "cache_memory_ttl_seconds", 300)))
            if memory_mb > 0
            else None
        )
        root = getattr(s, "cache_disk_dir", None)
        disk = (
            DiskTier(
                str(root),
                int(getattr(s, "cache_disk_max_mb", 500)) * MB,
                float(getattr(s, "cache_disk_ttl_seconds", 3600)),
            )
            if root
            else None
        )
        return cls(memory=memory, disk=disk, threshold=threshold)

    async def get(self, key: Key) -> Content | None:
        now = time.time()
        if self.memory is not None:
            data = self.memory.get(key, now)
            if data is not None:
                return in_memory(data)
        if self.disk is not None:
            path = await trio.to_thread.run_sync(self.disk.get, key, now)
            if path is not None:
                try:
                    size = await trio.to_thread.run_sync(os.path.getsize, path)
                except OSError:
                    return None
                if size < self.threshold:
                    data = await trio.to_thread.run_sync(_read, path)
                    if self.memory is not None:
                        self.memory.put(key, data, now)
                    return in_memory(data)
                # Large entries are copied out, so eviction cannot pull the file away mid-send.
                return await trio.to_thread.run_sync(_copy_out, path, size, key[1])
        return None

    async def put(self, key: Key, content: Content) -> None:
        now = time.time()
        small = content.size < self.threshold
        if small and self.memory is not None:
            self.memory.put(key, content.read(), now)
        if self.disk is not None:
            await trio.to_thread.run_sync(self.disk.put, key, content)

    async def expire(self) -> int:
        now = time.time()
        removed = self.memory.expire(now) if self.memory is not None else 0
        if self.disk is not None:
            removed += await trio.to_thread.run_sync(self.disk.expire, now)
        return removed


def _read(path: str) -> bytes:
    with open(path, "rb") as src:
        return src.read()


def _copy_out(path: str, size: int, md5: str) -> Content | None:
    fd, tmp = tempfile.mkstemp(prefix="mail-proxy-att-")
    try:
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            while chunk := src.read(MB):
                out.write(chunk)
    except OSError:
        _unlink(tmp)
        return None
    return Content(size, md5, path=tmp)
