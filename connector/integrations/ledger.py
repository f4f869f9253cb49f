"""The grant ledger: one record codec, its limits and its rules, used by every target kind.

Each live grant has one durable record, written where its effect lives (or right beside it) BEFORE the effect
is made, so a crash between the two leaves a record that a revoke or the expiry loop can act on, and every
replica sees it after any restart:

  EKS access entry    tag   access-connector/grant/<key> = "exp=<epoch> <Policy>=<scope> ..."
  IAM role            tag   access-connector/grant/<key> = "exp=<epoch> policy=<inline policy name>"
  Identity Center     tag on the permission set: "exp=<epoch> acct=<id> USER|GROUP=<id> own=0|1"
  Kubernetes binding  annotation access-connector/grant = "exp=<epoch>" on each RoleBinding it made
  aws-auth mapping    annotation grants.access-connector/<grant label> on the aws-auth ConfigMap (JSON form)
  Lambda custom       SSM parameter /access-connector/<connector>/lambda/... beside the function (JSON form)

Two wire forms, one meaning: the compact form (space-separated `key=value` words, for 256-character AWS tag
values) and the JSON form (for annotations and SSM parameters, which can hold lists and free text). Both
carry `exp`: the expiry as whole seconds since 1970, or `never` where the customer's policy lets a grant
last for ever.

Strict on both ends:
- at grant time an expiry that is not a sane future time (already past, before 1970, past year 9999) is
  refused before any call (`check_expiry`);
- a record that cannot be decoded (no `exp`, a sign, garbage) is treated as EXPIRED, never as "never": the
  connector fails closed and removes access it cannot account for (`Record.expired`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.errors import InvalidJob

GRANT_PREFIX = "access-connector/grant/"
NEVER = "never"
TAG_VALUE_MAX = 256  # an AWS tag value
TAG_KEY_MAX = 128  # an AWS tag key
MAX_TAGS_PER_RESOURCE = 50  # AWS: tags per resource (access entry, role, permission set, function)
MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z, the end of protobuf's Timestamp range
_WORD = re.compile(r"^[^\s=]+$")
_SAFE_KEY = re.compile(r"[^A-Za-z0-9_.:/=+@-]")
_KEY_SUFFIX_MAX = 96


def grant_key(grant_id: str) -> str:
    """The record's key for a grant id (an AWS tag key: 128 chars of letters, digits, space and _.:/=+-@).
    Deterministic, so a re-delivery finds its own record; hashed when the id does not fit unchanged."""
    safe = _SAFE_KEY.sub("-", grant_id)
    if safe != grant_id or len(grant_id) > _KEY_SUFFIX_MAX:
        safe = "h-" + hashlib.sha256(grant_id.encode()).hexdigest()[:40]
    return GRANT_PREFIX + safe


def key_suffix(key: str) -> str:
    """The part of a record key after the prefix: the grant id itself unless it had to be hashed. A revoke
    with this suffix as its grant id addresses exactly the same record (`grant_key(suffix) == key`)."""
    return key.removeprefix(GRANT_PREFIX)


def epoch_of(expires_at: datetime | None) -> int | None:
    return None if expires_at is None else int(expires_at.timestamp())


def check_expiry(expires_at: datetime | None, now: datetime) -> None:
    """Refuse, before anything is changed, an expiry that is not a sane future time."""
    if expires_at is None:
        return  # whether a grant may last for ever is the customer's policy's call (max_duration)
    epoch = expires_at.timestamp()
    if epoch < 0:
        raise InvalidJob(f"grant.expires_at {expires_at.isoformat()} is before 1970; send a time in the future")
    if epoch > MAX_EPOCH:
        raise InvalidJob("grant.expires_at is past the year 9999; send a time in the future")
    if expires_at <= now:
        raise InvalidJob(
            f"grant.expires_at {expires_at.isoformat()} is not in the future (now {now.isoformat()}): "
            "a grant that has already expired is never applied"
        )


@dataclass(frozen=True)
class Record:
    """A decoded record. `problem` set = it could not be decoded (and counts as expired)."""

    expires_epoch: int | None  # None: never expires (only with `problem` empty)
    fields: Mapping[str, Any] = field(default_factory=dict)
    problem: str = ""

    def expired(self, now: int) -> bool:
        if self.problem:
            return True  # fail closed: access the connector cannot account for is removed
        return self.expires_epoch is not None and self.expires_epoch <= now


def _exp_text(expires_at: datetime | None) -> str:
    epoch = epoch_of(expires_at)
    return NEVER if epoch is None else str(epoch)


def _parse_exp(raw: Any) -> tuple[int | None, str]:
    if raw == NEVER:
        return None, ""
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and int(raw) <= MAX_EPOCH:
        return int(raw), ""
    if raw is None:
        return None, "the record has no expiry"
    return None, f"the record's expiry {str(raw)[:40]!r} is not whole seconds since 1970 or 'never'"


def encode(
    expires_at: datetime | None,
    fields: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    *,
    limit: int = TAG_VALUE_MAX,
    what: str = "the grant's record",
) -> str:
    """The compact form: `exp=<epoch|never> key=value ...`. Keys and values are single words."""
    pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    words = [f"exp={_exp_text(expires_at)}"]
    for key, value in pairs:
        if not _WORD.match(key) or not value or any(ch.isspace() for ch in value):
            raise ValueError(f"ledger field {key!r}={value!r} is not a single word")  # a bug, not an input
        words.append(f"{key}={value}")
    text = " ".join(words)
    if len(text) > limit:
        raise InvalidJob(
            f"{what} would take {len(text)} characters where {limit} fit; grant fewer things at once "
            "(split it into several grants)"
        )
    return text


def decode(text: str) -> Record:
    """The compact form back. Unknown words are kept in `fields`; a missing or bad `exp` is a problem."""
    fields: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep:
            fields[key] = value
    epoch, problem = _parse_exp(fields.pop("exp", None))
    return Record(epoch, fields, problem)


def encode_json(expires_at: datetime | None, fields: Mapping[str, Any], *, limit: int, what: str) -> str:
    """The JSON form: {"exp": "<epoch|never>", ...fields}, for stores that hold lists and free text."""
    text = json.dumps({"exp": _exp_text(expires_at), **fields}, sort_keys=True, separators=(",", ":"))
    if len(text.encode()) > limit:
        raise InvalidJob(
            f"{what} would take {len(text.encode())} bytes where {limit} fit; name fewer resources in this grant "
            "(split it into several grants)"
        )
    return text


def decode_json(text: str) -> Record:
    try:
        data = json.loads(text)
    except ValueError:
        return Record(None, {}, "the record is not JSON")
    if not isinstance(data, dict):
        return Record(None, {}, "the record is not a JSON object")
    epoch, problem = _parse_exp(data.pop("exp", None))
    return Record(epoch, data, problem)
