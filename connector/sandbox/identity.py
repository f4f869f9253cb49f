"""Who is behind an access key, resolved through moto's own mappings (the same ones moto uses itself)."""

from __future__ import annotations

from dataclasses import dataclass

from moto.iam.models import get_account_id_from, iam_backends
from moto.sts.models import sts_backends

PARTITION = "aws"


@dataclass(frozen=True)
class Caller:
    account: str
    arn: str  # as AWS prints it in error messages (assumed-role session ARN for role sessions)
    role_arn: str | None = None  # the IAM role behind an assumed-role session

    @property
    def is_assumed_role(self) -> bool:
        return self.role_arn is not None


def account_of(access_key: str) -> str:
    """moto's mapping: temporary keys act as the assumed role's account; unknown keys as the default account."""
    return str(get_account_id_from(access_key))


def resolve_caller(access_key: str) -> Caller:
    account = account_of(access_key)
    assumed = sts_backends[account][PARTITION].get_assumed_role_from_access_key(access_key)
    if assumed is not None:
        return Caller(account=account, arn=str(assumed.arn), role_arn=str(assumed.role_arn))
    user = iam_backends[account][PARTITION].get_user_from_access_key_id(access_key)
    if user is not None:
        return Caller(account=account, arn=str(user.arn))
    # Keys moto never issued (the sandbox's admin keys) act as the account's root user.
    return Caller(account=account, arn=f"arn:aws:iam::{account}:root")
