"""The attachment service (reference §11): what message construction gets for its attachments.

:meth:`AttachmentService.prepare` fetches every attachment of one message concurrently, each
capped in size and time, through the cache, applies the tenant's large-file policy (reference §11.8) and
returns the MIME parts plus the payload to build (with the download-link footer when files
were uploaded). A failure comes back as :class:`AttachmentFailed` with the reference §11.5 text; when
several attachments fail, a permanent failure wins, then the first in order.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from mailproxyd.core.attachment_names import cache_hint, clean_filename
from mailproxyd.core.attachment_rules import MIB, infer_fetch_mode
from mailproxyd.core.mime import Part
from mailproxyd.core.netpolicy import Policy
from mailproxyd.drivers.connect import Resolver, checked_transport
from mailproxyd.services.attachments import large
from mailproxyd.services.attachments.cache import TieredCache
from mailproxyd.services.attachments.content import Content
from mailproxyd.services.attachments.errors import AttachmentFailed, fetch_failed
from mailproxyd.services.attachments.fetch import (
    Failure,
    Limits,
    authorization,
    base64_content,
    endpoint_call,
    filesystem,
    http_fetch,
    timed_out_reason,
)
from mailproxyd.store import tenants as store_tenants

log = logging.getLogger("mailproxyd.attachments")

# Tenant definitions are re-read this often: a changed client_base_url applies within it.
_TENANT_TTL = 5.0
# Expired cache entries are removed at least this often (reference §11.7: at least every 10 minutes).
CACHE_EXPIRY_INTERVAL = 300.0
# Which client_base_url values a tenant key set (the http_url rule applies, reference §11.3).
UNTRUSTED_URL_KEY = store_tenants.UNTRUSTED_URL_KEY


@dataclass
class Prepared:
    """What the build needs: the attached parts and the payload (footer added if any).

    Large parts are temporary files (``Part.path``) owned by this object until ``close``,
    which the attempt calls once the message was sent or given up.
    """

    parts: list[Part]
    payload: Mapping[str, Any]

    def close(self) -> None:
        for part in self.parts:
            if part.path is not None:
                try:
                    os.unlink(part.path)
                except OSError:
                    pass


@dataclass
class _Fetched:
    name: str
    content: Content
    mime_type: str | None


@dataclass
class AttachmentService:
    """One per sender process; ``async with`` closes its HTTP clients."""

    settings: Callable[[], Any]
    db: Any
    instance_key: bytes
    resolver: Resolver | None = None
    now: Callable[[], float] = time.time
    fetches: int = 0  # fetches that went to the source (not the cache), for logs and tests
    _clients: dict[Policy, httpx.AsyncClient] = field(default_factory=dict)
    _tenants: dict[str, tuple[float, dict[str, Any] | None]] = field(default_factory=dict)
    _cache: TieredCache | None = None
    _cache_settings: Any = None

    async def __aenter__(self) -> AttachmentService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            for client in self._clients.values():
                await client.aclose()
        self._clients.clear()

    # ------------------------------------------------------------------ parts

    @property
    def cache(self) -> TieredCache:
        settings = self.settings()
        if self._cache is None or self._cache_settings is not settings:
            # A reload replaces the settings object: the tiers follow the new sizes.
            self._cache = TieredCache.from_settings(settings)
            self._cache_settings = settings
        return self._cache

    def client(self, policy: Policy) -> httpx.AsyncClient:
        found = self._clients.get(policy)
        if found is None:
            timeout = float(self.settings().attachment_timeout)
            found = httpx.AsyncClient(
                transport=checked_transport(policy, resolver=self.resolver),
                # Longer than the whole-fetch deadline, which therefore decides (reference §11.5 text).
                timeout=httpx.Timeout(timeout + 5),
                follow_redirects=False,
                trust_env=False,
            )
            self._clients[policy] = found
        return found

    def limits(self) -> Limits:
        s = self.settings()
        return Limits(
            max_bytes=int(s.attachment_max_mb) * MIB,
            threshold=int(s.cache_disk_threshold_kb) * 1024,
        )

    async def tenant(self, tenant_id: str) -> dict[str, Any] | None:
        now = trio.current_time()
        found = self._tenants.get(tenant_id)
        if found is not None and found[0] > now:
            return found[1]
        tenant = await self.db.run(store_tenants.get_for_sync, tenant_id=tenant_id)
        self._tenants[tenant_id] = (now + _TENANT_TTL, tenant)
        return tenant

    async def prepare(self, row: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> Prepared:
        """Parts for ``items`` of the message ``row`` (reference §11), or :class:`AttachmentFailed`."""
        payload: Mapping[str, Any] = row["payload"]
        tenant_id = str(row["tenant_id"])
        tenant = await self.tenant(tenant_id) or {"id": tenant_id}
        results: list[_Fetched | AttachmentFailed | None] = [None] * len(items)

        async def one(index: int, item: Mapping[str, Any]) -> None:
            try:
                results[index] = await self._one(tenant, item)
            except AttachmentFailed as exc:
                results[index] = exc
            except Exception:
                # A defect must not take the sender down: the message waits for a retry.
                name = clean_filename(str(item.get("filename") or "attachment"))
                log.exception("attachment %s of tenant %s failed unexpectedly", name, tenant_id)
                results[index] = fetch_failed(name, "internal error", permanent=False)

        try:
            async with trio.open_nursery() as nursery:
                for index, item in enumerate(items):
                    nursery.start_soon(one, index, item)
            failures = [r for r in results if isinstance(r, AttachmentFailed)]
            if failures:
                raise next((f for f in failures if f.permanent), failures[0])
            fetched = [r for r in results if isinstance(r, _Fetched)]
            kept, links, expires_at = await large.apply(self, tenant, fetched)
            if links:
                payload = large.payload_with_links(payload, links, expires_at)
            prepared = Prepared(parts=[_part(f) for f in kept], payload=payload)
        except BaseException:
            for r in results:
                if isinstance(r, _Fetched):
                    r.content.discard()
            raise
        # The kept files now belong to ``prepared``; uploaded ones are not attached.
        kept_ids = {id(f) for f in kept}
        for r in results:
            if isinstance(r, _Fetched) and id(r) not in kept_ids:
                r.content.discard()
        return prepared

    async def _one(self, tenant: Mapping[str, Any], item: Mapping[str, Any]) -> _Fetched:
        raw_name = str(item.get("filename") or "attachment")
        name = clean_filename(raw_name)
        mime_type = item.get("mime_type") or None
        if mime_type is None:
            guessed, _ = mimetypes.guess_type(name, strict=False)
            mime_type = guessed
        mode = str(item.get("fetch_mode") or "")
        path = str(item.get("storage_path") or "")
        if not mode:
            mode, path = infer_fetch_mode(path)
        limits = self.limits()
        if mode == "base64":
            try:
                return _Fetched(name, base64_content(path, limits), mime_type)
            except Failure as exc:
                raise fetch_failed(name, exc.reason, permanent=exc.permanent) from None
        tenant_id = str(tenant["id"])
        hint = cache_hint(item)
        if hint is not None:
            cached = await self.cache.get((tenant_id, hint))
            if cached is not None:
                return _Fetched(name, cached, mime_type)
        timeout = float(self.settings().attachment_timeout)
        content: Content | None = None
        with trio.move_on_after(timeout):
            try:
                content = await self._fetch(tenant, mode, path, item, limits)
            except Failure as exc:
                raise fetch_failed(name, exc.reason, permanent=exc.permanent) from None
        if content is None:
            raise fetch_failed(name, timed_out_reason(timeout), permanent=False)
        self.fetches += 1
        if hint is not None and hint != content.md5:
            log.warning(
                "attachment %s of tenant %s: content_md5 hint %s does not match the content (%s)",
                name,
                tenant_id,
                hint,
                content.md5,
            )
        try:
            await self.cache.put((tenant_id, content.md5), content)
        except OSError as exc:
            log.warning("attachment cache write failed: %s", exc)
        return _Fetched(name, content, mime_type)

    async def _fetch(
        self,
        tenant: Mapping[str, Any],
        mode: str,
        path: str,
        item: Mapping[str, Any],
        limits: Limits,
    ) -> Content:
        settings = self.settings()
        allow_private = bool(settings.allow_private_networks)
        auth = item.get("auth") or None
        if mode == "http_url":
            headers: dict[str, str] = {}
            value = authorization(auth)
            if value is not None:
                headers["Authorization"] = value
            client = self.client(Policy(trusted=False, allow_private=allow_private))
            return await http_fetch(client, "GET", path, limits, headers=headers)
        if mode == "endpoint":
            if not tenant.get("client_base_url"):
                raise Failure("the tenant has no client_base_url", permanent=True)
            call = endpoint_call(tenant, path, auth, self.now())
            trusted = not call.override and not tenant.get(UNTRUSTED_URL_KEY)
            client = self.client(Policy(trusted=trusted, allow_private=allow_private))
            elsewhere = self.client(Policy(trusted=False, allow_private=allow_private))
            return await http_fetch(
                client,
                "POST",
                call.url,
                limits,
                headers=call.headers,
                body=call.body,
                redirect_client=elsewhere if trusted else None,
            )
        if mode == "filesystem":
            return await filesystem(path, tuple(settings.attachment_fs_roots), limits)
        raise Failure(f"unknown fetch mode {mode}", permanent=True)

    async def expire_cache(self) -> int:
        return await self.cache.expire()


def _part(fetched: _Fetched) -> Part:
    content = fetched.content
    if content.path is not None:
        return Part(
            filename=fetched.name,
            content=b"",
            mime_type=fetched.mime_type,
            path=content.path,
            size=content.size,
        )
    return Part(filename=fetched.name, content=content.read(), mime_type=fetched.mime_type)


__all__ = ["AttachmentFailed", "AttachmentService", "Prepared"]
