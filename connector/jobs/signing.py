"""Job signatures: the canonical bytes both sides sign / verify, key ids, and the connector's verifier.

The control plane signs each job with Ed25519 when it is enqueued. The signed bytes are the Job message
with `signature`, `signature_key_id` and `attempt` cleared (attempt changes on every delivery), serialised
with `SerializeToString(deterministic=True)`. The connector trusts only the public keys pinned in its own
config (CONNECTOR_JOB_SIGNING_KEYS); pinning two keys lets the control plane rotate without downtime.
A key id is the hex of the first 8 bytes of the raw public key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from connector.config import ConfigError
from connector.errors import ConnectorError, ErrorCode
from connector.logging import get_logger
from connector.v1 import connector_pb2

log = get_logger("connector.jobs")

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_BYTES = 8
ENV_VAR = "CONNECTOR_JOB_SIGNING_KEYS"


def canonical_bytes(job: connector_pb2.Job) -> bytes:
    """The bytes a job's signature covers: the job without its signature, key id and attempt."""
    copy = connector_pb2.Job()
    copy.CopyFrom(job)
    copy.ClearField("signature")
    copy.ClearField("signature_key_id")
    copy.ClearField("attempt")
    return copy.SerializeToString(deterministic=True)


def key_id(public_key: bytes) -> str:
    return public_key[:KEY_ID_BYTES].hex()


def parse_public_keys(text: str) -> dict[str, VerifyKey]:
    """CONNECTOR_JOB_SIGNING_KEYS ("KEY1,KEY2": base64 raw 32-byte Ed25519 keys) -> {key id: key}.
    Raises ConfigError naming the variable for anything that is not such a key."""
    keys: dict[str, VerifyKey] = {}
    for position, part in enumerate((p.strip() for p in text.split(",")), start=1):
        if not part:
            continue
        try:
            raw = base64.b64decode(part, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{ENV_VAR}: key {position} is not valid base64") from None
        if len(raw) != PUBLIC_KEY_BYTES:
            raise ConfigError(
                f"{ENV_VAR}: key {position} decodes to {len(raw)} bytes; expected a raw {PUBLIC_KEY_BYTES}-byte "
                "Ed25519 public key (what `connector controlplane signing-key create` prints)"
            )
        keys[key_id(raw)] = VerifyKey(raw)
    return keys


class JobVerifier:
    """The Dispatcher's `verify` hook: refuses unsigned, unknown-key and altered jobs (non-retryable)."""

    def __init__(self, keys: Mapping[str, VerifyKey]) -> None:
        if not keys:
            raise ValueError("JobVerifier needs at least one pinned key")
        self.keys = dict(keys)

    def __call__(self, job: connector_pb2.Job) -> None:
        if not job.signature:
            raise _refused(
                f"the job is unsigned, and this connector accepts only jobs signed by a key pinned in {ENV_VAR}; "
                "start the control plane with --job-signing-key"
            )
        kid = job.signature_key_id
        key = self.keys.get(kid)
        if key is None:
            raise _refused(
                f"the job is signed by key id {kid[:32]!r}, which is not pinned in {ENV_VAR} "
                f"(pinned: {', '.join(sorted(self.keys))}); pin the control plane's current public key"
            )
        if len(job.signature) != SIGNATURE_BYTES:
            raise _refused(f"the job's signature is {len(job.signature)} bytes; an Ed25519 signature is 64")
        try:
            key.verify(canonical_bytes(job), job.signature)
        except BadSignatureError:
            raise _refused(
                f"the job's signature (key id {kid}) does not match its content: the job was altered after the "
                "control plane signed it"
            ) from None


def _refused(message: str) -> ConnectorError:
    return ConnectorError(ErrorCode.SIGNATURE_INVALID, message, retryable=False)


def build_verifier(text: str) -> JobVerifier | None:
    """From the config value: a verifier, or None (with one warning) when no key is pinned."""
    keys = parse_public_keys(text)
    if not keys:
        log.warning(
            "job_signing_off",
            message=f"{ENV_VAR} is empty: jobs are accepted unsigned. Pin the control plane's job-signing "
            "public key so that a tampered or injected job is refused.",
        )
        return None
    log.info("job_signing_on", pinned_key_ids=sorted(keys))
    return JobVerifier(keys)
