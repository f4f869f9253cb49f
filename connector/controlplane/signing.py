"""The control plane's job-signing key: load it, create it, sign jobs with it (Ed25519, PyNaCl).

The key file holds either the raw 32-byte seed or a PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----", what
`openssl genpkey -algorithm ed25519` writes). `connector controlplane signing-key create` writes PEM with
mode 0600 and prints the public key in base64: the value to pin in the connector's
CONNECTOR_JOB_SIGNING_KEYS. The signed bytes are defined once, in connector.jobs.signing.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from nacl.signing import SigningKey

from connector.jobs.signing import canonical_bytes, key_id
from connector.v1 import connector_pb2

SEED_BYTES = 32
# DER prefix of a PKCS#8 Ed25519 private key (RFC 8410): SEQUENCE, version 0, AlgorithmIdentifier
# 1.3.101.112, OCTET STRING { OCTET STRING (32 bytes) }. The 32-byte seed follows it.
_PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN = b"-----BEGIN PRIVATE KEY-----"
_PEM_END = b"-----END PRIVATE KEY-----"


class SigningKeyError(ValueError):
    """The signing key file is unusable; the message names the flag and says what to fix (never the key)."""


class JobSigner:
    def __init__(self, seed: bytes) -> None:
        self._key = SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)
        self.key_id = key_id(self.public_key)

    def __repr__(self) -> str:  # never the seed
        return f"JobSigner(key_id={self.key_id!r})"

    def sign(self, job: connector_pb2.Job) -> None:
        """Sets job.signature and job.signature_key_id over the job's canonical bytes."""
        job.signature = self._key.sign(canonical_bytes(job)).signature
        job.signature_key_id = self.key_id

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode()


def seed_from_bytes(data: bytes, flag: str = "--job-signing-key") -> bytes:
    if len(data) == SEED_BYTES and _PEM_BEGIN not in data:
        return data
    text = data.strip()
    if text.startswith(_PEM_BEGIN) and text.endswith(_PEM_END):
        body = text[len(_PEM_BEGIN) : -len(_PEM_END)]
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            raise SigningKeyError(f"{flag}: the PEM body is not valid base64") from None
        if len(der) == len(_PKCS8_ED25519_PREFIX) + SEED_BYTES and der.startswith(_PKCS8_ED25519_PREFIX):
            return der[len(_PKCS8_ED25519_PREFIX) :]
        raise SigningKeyError(f"{flag}: the PEM key is not an Ed25519 private key (PKCS#8)")
    raise SigningKeyError(
        f"{flag}: expected a raw 32-byte Ed25519 seed or a PKCS#8 PEM private key "
        f"(got {len(data)} bytes); create one with `connector controlplane signing-key create`"
    )


def load_signer(path: str | Path, flag: str = "--job-signing-key") -> JobSigner:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{flag}: cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    return JobSigner(seed_from_bytes(data, flag))


def pem_from_seed(seed: bytes) -> bytes:
    body = base64.b64encode(_PKCS8_ED25519_PREFIX + seed)
    return _PEM_BEGIN + b"\n" + body + b"\n" + _PEM_END + b"\n"


def create_key_file(out: Path, public_out: Path | None = None, *, force: bool = False) -> JobSigner:
    """Writes a new key as PEM to `out` (mode 0600, refusing to overwrite unless force), and the base64
    public key to `public_out`. Returns the signer (its public key is what connectors pin)."""
    seed = bytes(SigningKey.generate())
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(out, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when force reused a file with wider permissions
        os.write(fd, pem_from_seed(seed))
    finally:
        os.close(fd)
    signer = JobSigner(seed)
    if public_out is not None:
        public_out.write_text(signer.public_key_b64 + "\n", encoding="utf-8")
    return signer
