"""The two cache tiers (reference §11.7): LRU by size and lifetime; disk eviction and expiry."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mailproxyd.services.attachments.cache import DiskTier, MemoryTier
from mailproxyd.services.attachments.content import in_memory


def test_memory_tier_is_lru_by_size_with_a_lifetime() -> None:
    tier = MemoryTier(max_bytes=10, ttl=5)
    tier.put(("t", "a"), b"aaaa", now=0)
    tier.put(("t", "b"), b"bbbb", now=0)
    assert tier.get(("t", "a"), now=1) == b"aaaa"  # a is now the most recent
    tier.put(("t", "c"), b"cccc", now=1)  # over 10 bytes: b, the least recent, goes
    assert tier.get(("t", "b"), now=1) is None
    assert tier.get(("t", "a"), now=1) == b"aaaa"
    assert tier.get(("u", "a"), now=1) is None  # another tenant: another key
    assert tier.get(("t", "c"), now=6) is None  # expired
    assert tier.size == 4


def test_disk_tier_keeps_tenants_apart_evicts_oldest_and_expires(tmp_path: Path) -> None:
    tier = DiskTier(str(tmp_path), max_bytes=25, ttl=100)
    tier.put(("acme", "m1"), in_memory(b"x" * 10))
    tier.put(("beta", "m1"), in_memory(b"y" * 10))
    acme = tier.get(("acme", "m1"), time.time())
    beta = tier.get(("beta", "m1"), time.time())
    assert acme is not None and beta is not None and acme != beta
    assert Path(acme).read_bytes() == b"x" * 10
    old = time.time() - 50
    os.utime(acme, (old, old))
    tier.put(("acme", "m2"), in_memory(b"z" * 10))  # 30 bytes > 25: the oldest goes
    assert tier.get(("acme", "m1"), time.time()) is None
    assert tier.get(("beta", "m1"), time.time()) is not None
    assert tier.expire(time.time() + 101) == 2
    assert tier.get(("acme", "m2"), time.time()) is None
