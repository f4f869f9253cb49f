"""Just-in-time access to AWS resources through an inline policy on an IAM role.

One grant = one inline role policy named from the grant key (`access-connector-<key>`), so PutRolePolicy is
naturally idempotent and revoke (DeleteRolePolicy) removes exactly that grant. An inline policy cannot carry
tags, so the record of the live grant is a tag on the role (the ledger's compact form), written before the
policy is put and removed after it is deleted:
  access-connector/grant/<grant key> = "exp=<epoch|never> policy=<policy name>"
The expiry loop reads these tags.

The first checks (at most 100 resources named one by one, the size of the new policy itself) are made before
any AWS call; the aggregate inline size after reading the role's other inline policies, before anything is
written. Dry run: the reads that decide the plan still happen (the role's tags and inline policies,
GetBucketEncryption / GetBucketLocation / DescribeKey for S3 buckets); the writes (TagRole, PutRolePolicy,
DeleteRolePolicy, UntagRole) are only listed in the result's `calls`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from connector.aws.calls import CallLog
from connector.aws.errors import error_code
from connector.aws.iam_roles import role_tags
from connector.errors import ConnectorError, ErrorCode
from connector.integrations import ledger
from connector.integrations.iam_access.policy import (
    build_document,
    check_size,
    part_of,
    policy_chars,
    policy_name_for,
)
from connector.integrations.iam_access.target import IamTarget, check_resource_count

AWS_MANAGED_S3_KEY = "alias/aws/s3"
MAX_ROLE_TAGS = ledger.MAX_TAGS_PER_RESOURCE


# -- reads -------------------------------------------------------------------------------------------------


def other_inline_chars(iam: Any, role: str, exclude: str) -> int:
    total = 0
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role):
        for name in page.get("PolicyNames", []):
            if name != exclude:
                total += policy_chars(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
    return total


def bucket_kms_key(s3: Any, kms_for: Callable[[str], Any], bucket: str) -> str | None:
    """ARN of the customer-managed KMS key encrypting `bucket` by default, or None."""
    try:
        config = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    except ClientError as exc:
        code = error_code(exc)
        if code == "ServerSideEncryptionConfigurationNotFoundError":
            return None
        if code == "NoSuchBucket":
            raise ConnectorError(
                ErrorCode.NOT_FOUND, f"S3 bucket {bucket!r} does not exist (or is not visible)", retryable=False
            ) from None
        raise
    for rule in config.get("Rules", []):
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        if not str(default.get("SSEAlgorithm", "")).startswith("aws:kms"):
            continue
        key = str(default.get("KMSMasterKeyID") or "")
        if not key or key.endswith(AWS_MANAGED_S3_KEY):
            return None  # the AWS-managed key: its key policy already admits the account's principals
        if re.match(r"^arn:[^:]+:kms:[^:]+:\d{12}:key/", key):
            return key
        region = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
        meta = kms_for(region).describe_key(KeyId=key)["KeyMetadata"]
        return None if meta.get("KeyManager") == "AWS" else str(meta["Arn"])
    return None


def encode_record(expires_at: datetime | None, policy: str) -> str:
    return ledger.encode(expires_at, [("policy", policy)], what="this grant's record on the role (one tag)")


# -- grant / revoke ----------------------------------------------------------------------------------------
def grant(
    iam: Any,
    s3: Any,
    kms_for: Callable[[str], Any],
    *,
    grant_id: str,
    target: IamTarget,
    expires_at: datetime | None,
    dry_run: bool,
) -> dict[str, Any]:
    # Checks that need no AWS call come first: a refused grant never touches the account.
    check_resource_count(target)
    role = target.role_name
    gkey = ledger.grant_key(grant_id)
    policy = policy_name_for(gkey)
    check_size(build_document(target), 0, role)
    try:
        tags = role_tags(iam, role)
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            raise ConnectorError(
                ErrorCode.NOT_FOUND, f"IAM role {role!r} does not exist in account {target.account_id}", retryable=False
            ) from None
        raise
    kms_keys: list[str] = []
    for arn in target.resources:
        if part_of(arn) == ("s3", "bucket") and "*" not in arn and "?" not in arn:
            key = bucket_kms_key(s3, kms_for, arn.rsplit(":", 1)[-1])
            if key is not None:
                kms_keys.append(key)
    document = build_document(target, kms_keys)
    check_size(document, other_inline_chars(iam, role, exclude=policy), role)
    calls = CallLog(iam, dry_run)
    value = encode_record(expires_at, policy)
    if tags.get(gkey) != value:
        if gkey not in tags and len(tags) >= MAX_ROLE_TAGS:
            raise ConnectorError(
                ErrorCode.PRECONDITION_FAILED,
                f"role {role} already carries {len(tags)} tags, the AWS maximum; the connector records each live "
                "grant as one tag on the role. Remove unused tags or wait for live grants to expire.",
                retryable=False,
            )
        # Record first: a crash after it leaves a record that revoke and the sweeper act on.
        calls("tag_role", RoleName=role, Tags=[{"Key": gkey, "Value": value}])
    calls(
        "put_role_policy",
        RoleName=role,
        PolicyName=policy,
        PolicyDocument=json.dumps(document, separators=(",", ":")),
    )
    return {
        "account_id": target.account_id,
        "role": role,
        "policy_name": policy,
        "access_level": target.access_level,
        "resources": len(target.resources),
        "kms_keys": sorted(set(kms_keys)),
        "policy_chars": policy_chars(document),
        "dry_run": dry_run,
        "calls": calls.calls,
    }


def revoke(iam: Any, *, grant_id: str, target: IamTarget, dry_run: bool) -> dict[str, Any]:
    role = target.role_name
    gkey = ledger.grant_key(grant_id)
    calls = CallLog(iam, dry_run)
    base = {"account_id": target.account_id, "role": role, "dry_run": dry_run}
    try:
        tags = role_tags(iam, role)
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            return base | {"already_revoked": True, "role_missing": True, "calls": []}
        raise
    # The name follows from the grant alone (never from the record, which anyone who can tag the role could
    # change); delete even without a record: deleting is idempotent.
    policy = policy_name_for(gkey)
    calls("delete_role_policy", ok_codes=("NoSuchEntity",), RoleName=role, PolicyName=policy)
    if gkey in tags:
        calls("untag_role", RoleName=role, TagKeys=[gkey])
    already = gkey not in tags and bool(calls.calls) and calls.calls[0].get("outcome") == "NoSuchEntity"
    return base | {"policy_name": policy, "already_revoked": already, "calls": calls.calls}


def expired_role_records(iam: Any, roles: Iterable[str], now_epoch: int) -> Iterator[tuple[str, str, ledger.Record]]:
    """(role, grant key, record) of expired (or undecodable) grants on `roles` (missing roles are skipped)."""
    for role in roles:
        try:
            tags = role_tags(iam, role)
        except ClientError as exc:
            if error_code(exc) == "NoSuchEntity":
                continue
            raise
        for key, value in tags.items():
            if key.startswith(ledger.GRANT_PREFIX) and (record := ledger.decode(value)).expired(now_epoch):
                yield role, key, record


def all_role_names(iam: Any) -> list[str]:
    return [
        r["RoleName"]
        for page in iam.get_paginator("list_roles").paginate(PaginationConfig={"PageSize": 1000})
        for r in page.get("Roles", [])
    ]
