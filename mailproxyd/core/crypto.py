"""Secrets at rest (reference §2.5): instance key, AES-256-GCM, key digests.

Pure computation over bytes; no files. The instance key is 32 random bytes,
written as 43 URL-safe base64 characters. Every purpose gets its own key,
derived from the instance key with HKDF-SHA256, so a leaked derived key
(say, the large-file link key) reveals nothing about the others.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_ENC_PREFIX = "v1:"
_NONCE_BYTES = 12


def new_token() -> str:
    """A fresh secret: 32 random bytes as 43 URL-safe base64 characters."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def parse_key(text: str) -> bytes:
    """Decode an instance key (43 URL-safe base64 characters) or raise ``ValueError``."""
    text = text.strip()
    if len(text) != 43:
        raise ValueError("must be 43 URL-safe base64 characters (32 bytes)")
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except (ValueError, TypeError) as exc:
        raise ValueError("must be 43 URL-safe base64 characters (32 bytes)") from exc
    if len(raw) != 32:
        raise ValueError("must be 43 URL-safe base64 characters (32 bytes)")
    return raw


def derive_key(instance_key: bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` (e.g. ``"secrets"``, ``"download-links"``)."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"mail-proxy/{purpose}".encode()
    )
    return hkdf.derive(instance_key)


def fingerprint(instance_key: bytes) -> str:
    """The fingerprint recorded in the database: hex SHA-256 of a derived key, 16 digits."""
    return hashlib.sha256(derive_key(instance_key, "fingerprint")).hexdigest()[:16]


def digest_api_key(api_key: str) -> str:
    """Tenant API keys are stored only as this SHA-256 hex digest."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two tokens."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class SecretBox:
    """Encrypts and decrypts short secrets with AES-256-GCM.

    Ciphertexts are ``v1:`` + URL-safe base64 of nonce ‖ ciphertext ‖ tag. The
    optional ``context`` is bound as associated data, so a ciphertext copied from
    one column or row into another fails to decrypt.
    """

    def __init__(self, instance_key: bytes) -> None:
        self._aead = AESGCM(derive_key(instance_key, "secrets"))

    def encrypt(self, plaintext: str, context: str = "") -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return _ENC_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, token: str, context: str = "") -> str:
        if not token.startswith(_ENC_PREFIX):
            raise ValueError("not an encrypted value")
        raw = base64.urlsafe_b64decode(token[len(_ENC_PREFIX) :])
        plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8"))
        return plain.decode("utf-8")
