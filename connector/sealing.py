"""Seal credentials to the requester's X25519 public key so only the requester can read them.

Credentials a grant produces for a person (generated passwords, create/reset-credentials secrets,
kubeconfigs) never leave the connector in the clear: they are encrypted with a libsodium SealedBox
(ephemeral X25519 + XSalsa20-Poly1305) to the public key the requester registered. The control plane
relays the envelope but cannot open it. `open_sealed` is for the requester's CLI and for tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from connector.errors import ConnectorError, ErrorCode

ALG = "x25519-sealedbox"
KEY_LENGTH = 32


class SealingError(ConnectorError):
    """No usable requester key: the credentials are not produced at all (never sent in the clear)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_JOB, message, retryable=False)


def key_id(public_key: bytes) -> str:
    """A short, stable fingerprint of a public key, so the requester knows which private key opens it."""
    return "sha256:" + hashlib.sha256(public_key).hexdigest()[:32]


def _public_key(raw: bytes) -> PublicKey:
    if not raw:
        raise SealingError(
            "this grant produces credentials but the job carries no requester_public_key: "
            "register an X25519 public key for the requester so the credentials can be sealed to it"
        )
    if len(raw) != KEY_LENGTH:
        raise SealingError(f"requester_public_key must be a raw {KEY_LENGTH}-byte X25519 key, got {len(raw)} bytes")
    return PublicKey(raw)


def require_public_key(raw: bytes) -> None:
    """Fail before any change is made when credentials could not be sealed afterwards."""
    _public_key(raw)


def seal(public_key: bytes, payload: Mapping[str, Any]) -> dict[str, str]:
    """Encrypt a JSON-able payload to `public_key`; the envelope is safe to log, store and relay."""
    box = SealedBox(_public_key(public_key))
    plaintext = json.dumps(dict(payload), separators=(",", ":"), sort_keys=True).encode()
    ciphertext = box.encrypt(plaintext)
    return {"alg": ALG, "ciphertext": base64.b64encode(ciphertext).decode(), "key_id": key_id(public_key)}


def open_sealed(private_key: bytes, envelope: Mapping[str, Any]) -> dict[str, Any]:
    """Decrypt an envelope made by `seal` with the requester's raw 32-byte X25519 private key."""
    if envelope.get("alg") != ALG:
        raise ValueError(f"unsupported envelope alg {envelope.get('alg')!r}, expected {ALG!r}")
    key = PrivateKey(private_key)
    if envelope.get("key_id") != key_id(bytes(key.public_key)):
        raise ValueError("the envelope was sealed to a different key (key_id does not match this private key)")
    try:
        ciphertext = base64.b64decode(str(envelope.get("ciphertext", "")), validate=True)
        plaintext = SealedBox(key).decrypt(ciphertext)
    except (binascii.Error, CryptoError) as exc:
        raise ValueError("the envelope cannot be opened: ciphertext is corrupt or not for this key") from exc
    value = json.loads(plaintext)
    if not isinstance(value, dict):
        raise ValueError("the sealed payload is not a JSON object")
    return value
