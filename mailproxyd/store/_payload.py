"""Stored message payloads: attachment credentials encrypted at rest (reference §2.5, §5.3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailproxyd.core.attachment_rules import without_data
from mailproxyd.core.crypto import SecretBox

from ._codec import dumps, loads, seal, unseal

ATTACHMENT_SECRETS = ("token", "password")


def _context(tenant_id: str, message_id: str, index: int, key: str) -> str:
    return f"message:{tenant_id}:{message_id}:attachment{index}.{key}"


def _attachments(payload: Mapping[str, Any]) -> list[Any]:
    attachments = payload.get("attachments")
    return attachments if isinstance(attachments, list) else []


def seal_payload(box: SecretBox, tenant_id: str, payload: Mapping[str, Any]) -> str:
    """JSON text of ``payload`` with every ``attachments[i].auth`` token/password encrypted."""
    attachments = _attachments(payload)
    if not attachments:  # nothing to seal (most messages): encoded as it is, no copy
        return dumps(payload if type(payload) is dict else dict(payload))
    doc = dict(payload)
    message_id = str(doc.get("id"))
    sealed = []
    for index, attachment in enumerate(attachments):
        auth = attachment.get("auth") if isinstance(attachment, Mapping) else None
        if isinstance(auth, Mapping):
            auth = {
                key: seal(box, str(value), _context(tenant_id, message_id, index, key))
                if key in ATTACHMENT_SECRETS and value is not None
                else value
                for key, value in auth.items()
            }
            attachment = {**attachment, "auth": auth}
        sealed.append(attachment)
    doc["attachments"] = sealed
    return dumps(doc)


def _map_auth(box: SecretBox, tenant_id: str, text: str, *, reveal: bool) -> dict[str, Any]:
    doc = dict(loads(text, {}))
    message_id = str(doc.get("id"))
    attachments = _attachments(doc)
    if attachments:
        mapped = []
        for index, attachment in enumerate(attachments):
            auth = attachment.get("auth") if isinstance(attachment, Mapping) else None
            if isinstance(auth, Mapping):
                shown: dict[str, Any] = {}
                for key, value in auth.items():
                    if key not in ATTACHMENT_SECRETS or value is None:
                        shown[key] = value
                    elif reveal:
                        shown[key] = unseal(box, value, _context(tenant_id, message_id, index, key))
                    else:
                        shown[f"{key}_set"] = True
                attachment = {**attachment, "auth": shown}
            mapped.append(attachment if reveal else without_data(attachment))
        doc["attachments"] = mapped
    return doc


def open_payload(box: SecretBox, tenant_id: str, text: str) -> dict[str, Any]:
    """The payload with attachment credentials decrypted (for delivery)."""
    return _map_auth(box, tenant_id, text, reveal=True)


def present_payload(box: SecretBox, tenant_id: str, text: str) -> dict[str, Any]:
    """The payload for the API: credentials replaced by ``token_set``/``password_set``, base64
    content replaced by its ``size`` (reference §5.3)."""
    return _map_auth(box, tenant_id, text, reveal=False)
