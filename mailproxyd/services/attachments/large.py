"""The tenant's large-file policy (reference §11.8): warn, reject, or upload and link.

Applied after every attachment of a message was fetched, so sizes are known. ``rewrite``
uploads each large attachment to ``<storage_url>/<file_id>/<filename>``, records it for the
download route and the expiry sweep, and leaves it out of the e-mail; the links go into a
footer of the body. An upload or signing failure is temporary (the attempt is retried).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import trio

from mailproxyd.core import largefile
from mailproxyd.core.attachment_names import storage_filename
from mailproxyd.core.crypto import derive_key
from mailproxyd.drivers import storage
from mailproxyd.services.attachments.errors import AttachmentFailed
from mailproxyd.store import largefiles

if TYPE_CHECKING:
    from mailproxyd.services.attachments.service import AttachmentService, _Fetched

log = logging.getLogger("mailproxyd.attachments")


def link_key(instance_key: bytes) -> bytes:
    return derive_key(instance_key, largefile.LINK_PURPOSE)


async def apply(
    service: AttachmentService, tenant: Mapping[str, Any], fetched: Sequence[_Fetched]
) -> tuple[list[_Fetched], list[largefile.Link], float]:
    """``(attachments to keep, links to append, link expiry)`` under the tenant's policy."""
    config = tenant.get("large_file_config") or {}
    if not config.get("enabled"):
        return list(fetched), [], 0.0
    action = config.get("action") or "warn"
    kept: list[_Fetched] = []
    links: list[largefile.Link] = []
    now = service.now()
    ttl_days = int(config.get("file_ttl_days") or 30)
    expires_at = int(now) + ttl_days * largefile.DAY
    for item in fetched:
        size = item.content.size
        if not largefile.is_large(size, config):
            kept.append(item)
        elif action == "reject":
            raise AttachmentFailed(largefile.reject_text(item.name, size, config), permanent=True)
        elif action == "rewrite":
            links.append(await _upload(service, tenant, config, item, expires_at))
        else:
            log.warning(
                "tenant %s: attachment %s (%s MB) exceeds the large-file limit (%.1f MB)",
                tenant.get("id"),
                item.name,
                largefile.megabytes(size),
                float(config.get("max_size_mb") or 10),
            )
            kept.append(item)
    return kept, links, float(expires_at)


async def _upload(
    service: AttachmentService,
    tenant: Mapping[str, Any],
    config: Mapping[str, Any],
    item: _Fetched,
    expires_at: int,
) -> largefile.Link:
    file_id = secrets.token_hex(16)
    filename = storage_filename(item.name)
    url = storage.object_url(str(config.get("storage_url")), file_id, filename)
    content = item.content
    try:
        await trio.to_thread.run_sync(
            lambda: storage.upload(url, data=content.data, source=content.path)
        )
        public = config.get("public_base_url")
        if public:
            token = largefile.make_token(
                link_key(service.instance_key), file_id, filename, expires_at
            )
            link = f"{str(public).rstrip('/')}/download/{token}/{quote(filename, safe='')}"
        else:
            seconds = max(1, min(expires_at - int(service.now()), largefile.PRESIGN_MAX_SECONDS))
            link = await trio.to_thread.run_sync(storage.presign, url, seconds)
    except storage.StorageError as exc:
        raise AttachmentFailed(f"large file upload failed: {exc}", permanent=False) from None
    await service.db.run(
        largefiles.record,
        file_id=file_id,
        entry={
            "tenant_id": tenant.get("id"),
            "url": url,
            "filename": filename,
            "size": content.size,
            "expires_at": expires_at,
        },
    )
    return largefile.Link(filename=item.name, size=content.size, url=link)


def payload_with_links(
    payload: Mapping[str, Any], links: Sequence[largefile.Link], expires_at: float
) -> dict[str, Any]:
    kind = (
        "html" if str(payload.get("content_type") or "plain").lower().endswith("html") else "plain"
    )
    body = str(payload.get("body") or "")
    return {**payload, "body": largefile.with_footer(body, kind, links, expires_at)}


async def sweep_expired(db: Any, now: float) -> int:
    """Delete uploaded files whose links expired (the reporter runs this at least hourly)."""
    removed = 0
    while True:
        due = await db.run(largefiles.expired, now=now, limit=200)
        if not due:
            return removed
        before = removed
        for entry in due:
            try:
                await trio.to_thread.run_sync(storage.delete, str(entry["url"]))
            except storage.StorageError as exc:
                log.warning("could not delete expired large file %s: %s", entry["file_id"], exc)
                continue
            await db.run(largefiles.forget, file_id=str(entry["file_id"]))
            removed += 1
        if len(due) < 200 or removed == before:
            return removed  # the rest failed: the next sweep tries again
