"""Who is behind an access key, resolved through moto's own mappings (the same ones moto uses itself)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import moto.iam.models
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.iam.models import iam_backends
from moto.sts.models import sts_backends

PARTITION = "aws"  # the default; a sandbox seeded in another partition names it (SeedSpec.partition)

# access key -> (account, partition) of the IAM backend holding it, or None for a key no account holds.
_KEY_OWNERS: dict[str, tuple[str, str] | None] = {}
_KEY_OWNERS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Caller:
    account: str
    arn: str  # as AWS prints it in error messages (assumed-role session ARN for role sessions)
    role_arn: str | None = None  # the IAM role behind an assumed-role session

    @property
    def is_assumed_role(self) -> bool:
        return self.role_arn is not None


def account_of(access_key: str) -> str:
    """moto's mapping: temporary keys act as the assumed role's account; unknown keys as the default account.

    moto's own lookup (moto.iam.models.get_account_id_from) asks every account for every partition on every
    request, creating an IAM backend (with all AWS managed policies) for each partition it has not seen: with
    1,000 accounts that is 6,000 lookups per request and thousands of needless backends, the emulator's
    largest cost in a large sync. This one remembers each key's owner, re-checked on every use (a deleted key
    is looked up again), and looks only at backends that exist. An unknown key is remembered as unknown: moto
    generates every key ID it issues, so a key no account held when first seen never becomes one it holds.
    """
    owner = _KEY_OWNERS.get(access_key, ())
    if owner is None:
        return DEFAULT_ACCOUNT_ID
    if owner:
        account, partition = owner
        backend = dict.get(dict.get(iam_backends, account) or {}, partition)
        if backend is not None and access_key in backend.access_keys:
            return account
    with _KEY_OWNERS_LOCK:
        found = _find_owner(access_key)
        _KEY_OWNERS[access_key] = found
    return found[0] if found else DEFAULT_ACCOUNT_ID


def _find_owner(access_key: str) -> tuple[str, str] | None:
    # dict's own items(): moto's mappings create a backend on lookup; only backends that exist can hold a key.
    for account, per_account in list(dict.items(iam_backends)):
        for partition, backend in list(dict.items(per_account)):
            if access_key in backend.access_keys:
                return str(account), str(partition)
    return None


def install() -> None:
    """Make moto resolve request accounts through account_of (moto imports the function per request), and
    forget what was learnt before moto's state was reset."""
    with _KEY_OWNERS_LOCK:
        _KEY_OWNERS.clear()
    moto.iam.models.get_account_id_from = account_of


def _existing(backends: Any, account: str) -> list[Any]:
    """The account's backends that exist, in every partition (dict's own methods: moto's mappings create a
    backend on lookup)."""
    return list(dict.values(dict.get(backends, account) or {}))


def resolve_caller(access_key: str, partition: str = PARTITION) -> Caller:
    """Who holds `access_key`, in whichever partition issued it; `partition` (the request's) names the root
    user of keys moto never issued."""
    account = account_of(access_key)
    for sts in _existing(sts_backends, account):
        assumed = sts.get_assumed_role_from_access_key(access_key)
        if assumed is not None:
            return Caller(account=account, arn=str(assumed.arn), role_arn=str(assumed.role_arn))
    for iam in _existing(iam_backends, account):
        user = iam.get_user_from_access_key_id(access_key)
        if user is not None:
            return Caller(account=account, arn=str(user.arn))
    # Keys moto never issued (the sandbox's admin keys) act as the account's root user.
    return Caller(account=account, arn=f"arn:{partition}:iam::{account}:root")
