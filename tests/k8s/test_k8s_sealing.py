"""Credentials sealed to the requester: round trip, and nothing readable by the control plane or in logs."""

from __future__ import annotations

import base64
import io
import json

import pytest
from nacl.public import PrivateKey

from connector.errors import ErrorCode
from connector.logging import configure_logging, get_logger
from connector.sealing import ALG, SealingError, key_id, open_sealed, require_public_key, seal

pytestmark = pytest.mark.timeout(60)

PLANTED = "pl4nted-Secret-Value-7f3a9c"


def test_round_trip_and_the_envelope_reveals_nothing() -> None:
    requester = PrivateKey.generate()
    payload = {"username": "alice", "password": PLANTED, "nested": {"kubeconfig": f"token: {PLANTED}"}}
    envelope = seal(bytes(requester.public_key), payload)
    assert set(envelope) == {"alg", "ciphertext", "key_id"}
    assert envelope["alg"] == ALG == "x25519-sealedbox"
    assert envelope["key_id"] == key_id(bytes(requester.public_key))
    text = json.dumps(envelope)
    assert PLANTED not in text and "alice" not in text
    assert PLANTED.encode() not in base64.b64decode(envelope["ciphertext"])
    assert open_sealed(bytes(requester), envelope) == payload
    # each seal uses a fresh ephemeral key: same payload, different ciphertext
    assert seal(bytes(requester.public_key), payload)["ciphertext"] != envelope["ciphertext"]


def test_the_control_plane_cannot_open_it() -> None:
    requester = PrivateKey.generate()
    control_plane = PrivateKey.generate()
    envelope = seal(bytes(requester.public_key), {"secret": PLANTED})
    with pytest.raises(ValueError, match="different key"):
        open_sealed(bytes(control_plane), envelope)
    forged = dict(envelope, key_id=key_id(bytes(control_plane.public_key)))
    with pytest.raises(ValueError, match="cannot be opened"):
        open_sealed(bytes(control_plane), forged)
    tampered = dict(envelope, ciphertext=base64.b64encode(b"\x00" * 80).decode())
    with pytest.raises(ValueError, match="cannot be opened"):
        open_sealed(bytes(requester), tampered)


def test_no_requester_key_means_no_credentials() -> None:
    for raw, fragment in ((b"", "no requester_public_key"), (b"short", "32-byte X25519 key")):
        with pytest.raises(SealingError) as info:
            require_public_key(raw)
        assert fragment in info.value.message
        assert info.value.code == ErrorCode.INVALID_JOB and info.value.retryable is False
        with pytest.raises(SealingError):
            seal(raw, {"secret": PLANTED})


def test_logging_an_envelope_leaks_nothing() -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    requester = PrivateKey.generate()
    envelope = seal(bytes(requester.public_key), {"secret": PLANTED})
    get_logger("test").info("credentials_sealed", result={"credentials": envelope}, envelope=envelope)
    output = stream.getvalue()
    assert "credentials_sealed" in output
    assert PLANTED not in output
