"""The requester's side of sealed credentials: make an X25519 key pair, and open what a grant sealed.

The connector seals credentials a grant produces (connector.sealing) to the requester's public key; the
control plane stores only the envelope. Only the requester's private key, which never leaves their machine,
opens it. The reference control plane's CLI offers both steps so the flow can be shown end to end.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from nacl.public import PrivateKey

from connector.sealing import open_sealed
from connector.v1 import admin_pb2


class SealedError(Exception):
    """Something the user can fix: a missing file, a job without credentials, the wrong key."""


def write_keypair(out: Path, force: bool = False) -> str:
    """A new private key (base64, file mode 0600) at `out`; returns the public key (base64) to hand out."""
    key = PrivateKey.generate()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(out, flags, 0o600)
    except FileExistsError:
        raise SealedError(f"{out} already exists (pass --force to overwrite it)") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, base64.b64encode(bytes(key)) + b"\n")
    finally:
        os.close(fd)
    return base64.b64encode(bytes(key.public_key)).decode()


def read_private_key(path: Path) -> bytes:
    try:
        raw = base64.b64decode(path.read_text(encoding="utf-8").strip(), validate=True)
    except (OSError, ValueError) as exc:
        raise SealedError(f"cannot read a base64 X25519 private key from {path}: {exc}") from None
    if len(raw) != 32:
        raise SealedError(f"{path} does not hold a 32-byte X25519 private key")
    return raw


def parse_public_key(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise SealedError("--requester-public-key must be base64 (from `credentials keygen`)") from None
    if len(raw) != 32:
        raise SealedError("--requester-public-key must be a 32-byte X25519 public key in base64")
    return raw


def open_job_credentials(record: admin_pb2.JobRecord, private_key: bytes) -> dict[str, Any]:
    result: Mapping[str, Any] = json_format.MessageToDict(record.result)
    envelope = result.get("credentials")
    if not isinstance(envelope, Mapping):
        raise SealedError(f"job {record.job.id} carries no sealed credentials")
    try:
        return open_sealed(private_key, envelope)
    except ValueError as exc:
        raise SealedError(str(exc)) from None
