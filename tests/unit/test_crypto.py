"""Secrets at rest: AES-256-GCM with HKDF-derived keys, fingerprints, key digests (reference §2.5)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidTag

from mailproxyd.core import crypto


def test_new_token_shape() -> None:
    token = crypto.new_token()
    assert len(token) == 43
    assert len(crypto.parse_key(token)) == 32
    assert crypto.new_token() != token


@pytest.mark.parametrize("bad", ["", "abc", "A" * 44, "!" * 43])
def test_parse_key_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        crypto.parse_key(bad)


def test_round_trip_and_no_plaintext() -> None:
    box = crypto.SecretBox(crypto.parse_key(crypto.new_token()))
    sealed = box.encrypt("app-password", "account:acme/smtp1")
    assert "app-password" not in sealed
    assert box.decrypt(sealed, "account:acme/smtp1") == "app-password"
    assert box.encrypt("app-password") != box.encrypt("app-password")  # fresh nonce


def test_wrong_key_or_context_fails() -> None:
    key = crypto.parse_key(crypto.new_token())
    sealed = crypto.SecretBox(key).encrypt("s3cret", "ctx-a")
    with pytest.raises(InvalidTag):
        crypto.SecretBox(key).decrypt(sealed, "ctx-b")
    with pytest.raises(InvalidTag):
        crypto.SecretBox(crypto.parse_key(crypto.new_token())).decrypt(sealed, "ctx-a")


def test_fingerprint_and_digest() -> None:
    key = crypto.parse_key(crypto.new_token())
    assert crypto.fingerprint(key) == crypto.fingerprint(key)
    assert len(crypto.fingerprint(key)) == 16
    assert crypto.fingerprint(key) != crypto.fingerprint(crypto.parse_key(crypto.new_token()))
    assert crypto.digest_api_key("k") == hashlib.sha256(b"k").hexdigest()
    assert crypto.tokens_equal("abc", "abc") and not crypto.tokens_equal("abc", "abd")
    assert crypto.derive_key(key, "a") != crypto.derive_key(key, "b")
