"""Just-in-time access to AWS resources through an inline policy on an IAM role.

One grant = one inline role policy named from the grant key (`access-connector-<key>`), so PutRolePolicy is
naturally idempotent and revoke (DeleteRolePolicy) removes exactly that grant. An inline policy cannot carry
tags, so the record of the live grant is a tag on the role, written before the policy is put and removed
after it is deleted:
  access-connector/grant/<grant key> = "exp=<epoch|never> policy=<policy name>"
The expiry sweeper reads these tags.

Access levels map to fixed action lists per service (ACTIONS below). An S3 bucket encrypted with a
customer-managed KMS key also gets kms:Decrypt (read) and kms:GenerateDataKey (write) on that key, found with
GetBucketEncryption. Limits are enforced in code because moto does not: at most 100 resources named one by
one (the product's guardrail; wildcard ARNs count as one), and 10,240 non-whitespace characters for all
the role's inline policies together. The first check and the size of the new policy itself are checked
before any AWS call; the aggregate is checked after reading the role's other inline policies, before
anything is written.

Dry run: the reads that decide the plan still happen (the role's tags and inline policies,
GetBucketEncryption / GetBucketLocation / DescribeKey for S3 buckets); the writes (TagRole, PutRolePolicy,
DeleteRolePolicy, UntagRole) are only listed in the result's `calls`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.aws.errors import error_code
from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations import validation
from connector.integrations.eks_access import GRANT_PREFIX, CallLog, grant_tag_key

MAX_RESOURCES = 100  # the product's guardrail (seed 001): resources named one by one
ROLE_INLINE_LIMIT = 10_240  # AWS: all inline policies of a role together, whitespace not counted
MAX_ROLE_TAGS = 50
POLICY_PREFIX = "access-connector-"
ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
ROLE_ARN = re.compile(r"^arn:(aws|aws-us-gov|aws-cn):iam::(\d{12}):role/(?:[\w+=,.@/-]*/)?([\w+=,.@-]{1,64})$")
_POLICY_NAME_OK = re.compile(r"^[\w+=,.@-]{1,100}$")
ARN = re.compile(r"^arn:(aws|aws-us-gov|aws-cn):([a-z0-9-]+):([a-z0-9-]*):(\d{12})?:(.+)$")
AWS_MANAGED_S3_KEY = "alias/aws/s3"

Level = Literal["read", "write"]

# Fixed action lists: what "read" and "write" mean per service. Each list is the least that makes the
# level useful; "write" includes "read". Keys: (service, part); part "bucket"/"object" for S3.
ACTIONS: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("s3", "bucket"): {
        "read": ("s3:GetBucketLocation", "s3:ListBucket"),  # find and list the bucket
        "write": ("s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"),
    },
    ("s3", "object"): {
        "read": ("s3:GetObject", "s3:GetObjectVersion"),  # download objects
        "write": (
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:PutObject",  # upload
            "s3:DeleteObject",  # remove
            "s3:AbortMultipartUpload",  # clean up failed multipart uploads
        ),
    },
    ("sns", ""): {
        "read": ("sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic"),  # inspect the topic
        "write": ("sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic", "sns:Publish"),  # + publish
    },
    ("sqs", ""): {
        "read": ("sqs:GetQueueAttributes", "sqs:GetQueueUrl"),  # inspect the queue
        "write": (
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
            "sqs:SendMessage",  # produce
            "sqs:ReceiveMessage",  # consume
            "sqs:DeleteMessage",  # acknowledge
            "sqs:ChangeMessageVisibility",  # extend processing time
        ),
    },
    ("dynamodb", ""): {
        "read": ("dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"),
        "write": (
            "dynamodb:DescribeTable",
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:Query",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
        ),
    },
    ("kms", ""): {
        "read": ("kms:Decrypt",),  # read objects encrypted with the bucket's key
        "write": ("kms:Decrypt", "kms:GenerateDataKey"),  # + write objects encrypted with it
    },
}
SERVICES = ("s3", "sns", "sqs", "dynamodb")


class IamTarget(BaseModel):
    """The `target` of an IAM resource-access grant or revoke. The job's principal is informational (the
    requester); access goes to `role`. A revoke needs only account_id and role."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource_type: Literal["iam_resource_access"] = "iam_resource_access"
    account_id: str = Field(pattern=r"^\d{12}$")
    role: str
    resources: tuple[str, ...] = ()
    access_level: Level = "read"

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if not (ROLE_NAME.match(value) or ROLE_ARN.match(value)):
            raise ValueError("must be an IAM role name or role ARN (arn:aws:iam::<account>:role/<name>)")
        return value

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arn in value:
            m = ARN.match(arn)
            if m is None:
                raise ValueError(f"{arn[:200]!r} is not an ARN")
            if m.group(2) not in SERVICES:
                raise ValueError(f"{arn[:200]!r}: service {m.group(2)!r} is not supported; supported: {SERVICES}")
        return tuple(dict.fromkeys(value))

    @property
    def role_name(self) -> str:
        m = ROLE_ARN.match(self.role)
        if m is None:
            return self.role
        if m.group(2) != self.account_id:
            raise InvalidJob(f"target.role {self.role} is in account {m.group(2)}, not target.account_id")
        return m.group(3)


def parse_target(raw: Mapping[str, Any]) -> IamTarget:
    return validation.parse_target(IamTarget, raw)


def policy_name_for(grant_key: str) -> str:
    """Inline policy name from the grant tag key (deterministic, so a re-delivery overwrites, never adds)."""
    suffix = grant_key.removeprefix(GRANT_PREFIX)
    if not _POLICY_NAME_OK.match(suffix):
        suffix = "h-" + hashlib.sha256(suffix.encode()).hexdigest()[:40]
    return POLICY_PREFIX + suffix


def policy_chars(document: Any) -> int:
    """Size as IAM counts it: characters of the JSON document, whitespace not counted."""
    text = document if isinstance(document, str) else json.dumps(document, separators=(",", ":"))
    return sum(1 for ch in text if not ch.isspace())


def check_resource_count(target: IamTarget) -> None:
    if len(target.resources) > MAX_RESOURCES:
        raise ConnectorError(
            ErrorCode.GUARDRAIL_DENIED,
            f"this grant names {len(target.resources)} resources one by one; at most {MAX_RESOURCES} are allowed, "
            "because each becomes an ARN in the role's inline policy (AWS caps them at 10,240 characters). "
            "Group the resources: tag them and grant by tag, use a scope with a wildcard ARN "
            "(e.g. arn:aws:s3:::team-a-*), or split the request.",
            retryable=False,
        )
    if not target.resources:
        raise InvalidJob("target.resources: name at least one resource ARN to grant access to")


def _part(arn: str) -> tuple[str, str]:
    m = ARN.match(arn)
    assert m is not None
    service = m.group(2)
    if service != "s3":
        return service, ""
    return service, "object" if "/" in m.group(5) else "bucket"


def build_document(target: IamTarget, kms_keys: Iterable[str] = ()) -> dict[str, Any]:
    """The inline policy: one statement per (service, part), fixed actions, the named resources."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for arn in target.resources:
        service, part = _part(arn)
        if service == "s3" and part == "bucket":
            grouped.setdefault(("s3", "bucket"), set()).add(arn)
            grouped.setdefault(("s3", "object"), set()).add(arn + "/*")
        else:
            grouped.setdefault((service, part), set()).add(arn)
    keys = sorted(set(kms_keys))
    if keys:
        grouped[("kms", "")] = set(keys)
    statements = []
    for (service, part), arns in sorted(grouped.items()):
        sid = re.sub(r"[^A-Za-z0-9]", "", f"{service.title()}{part.title()}{target.access_level.title()}")
        statements.append(
            {
                "Sid": sid,
                "Effect": "Allow",
                "Action": list(ACTIONS[(service, part)][target.access_level]),
                "Resource": sorted(arns),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def check_size(document: Mapping[str, Any], others: int, role: str) -> None:
    own = policy_chars(document)
    if own + others > ROLE_INLINE_LIMIT:
        raise ConnectorError(
            ErrorCode.GUARDRAIL_DENIED,
            f"role {role} would hold {own + others} characters of inline policy ({own} for this grant, {others} "
            f"already there); AWS allows {ROLE_INLINE_LIMIT} (whitespace not counted). Grant fewer resources, "
            "group them with a wildcard ARN or tags, or wait for other grants on this role to expire.",
            retryable=False,
        )


# -- reads -------------------------------------------------------------------------------------------------
def role_tags(iam: Any, role: str) -> dict[str, str]:
    return {
        t["Key"]: t["Value"]
        for page in iam.get_paginator("list_role_tags").paginate(RoleName=role)
        for t in page.get("Tags", [])
    }


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


@dataclass(frozen=True)
class RoleRecord:
    expires_epoch: int | None
    policy: str


def decode_record(value: str) -> RoleRecord:
    fields = dict(part.partition("=")[::2] for part in value.split())
    exp = fields.get("exp", "")
    return RoleRecord(int(exp) if exp.isdigit() else None, fields.get("policy", ""))


def encode_record(expires_at: datetime | None, policy: str) -> str:
    return f"exp={int(expires_at.timestamp()) if expires_at else 'never'} policy={policy}"


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
    gkey = grant_tag_key(grant_id)
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
        if _part(arn) == ("s3", "bucket") and "*" not in arn and "?" not in arn:
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
    gkey = grant_tag_key(grant_id)
    calls = CallLog(iam, dry_run)
    base = {"account_id": target.account_id, "role": role, "dry_run": dry_run}
    try:
        tags = role_tags(iam, role)
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            return base | {"already_revoked": True, "role_missing": True, "calls": []}
        raise
    policy = decode_record(tags[gkey]).policy if gkey in tags else ""
    policy = policy if policy.startswith(POLICY_PREFIX) else policy_name_for(gkey)
    # Delete even without a record: the policy name is ours by construction, and deleting is idempotent.
    calls("delete_role_policy", ok_codes=("NoSuchEntity",), RoleName=role, PolicyName=policy)
    if gkey in tags:
        calls("untag_role", RoleName=role, TagKeys=[gkey])
    already = gkey not in tags and bool(calls.calls) and calls.calls[0].get("outcome") == "NoSuchEntity"
    return base | {"policy_name": policy, "already_revoked": already, "calls": calls.calls}


def expired_role_records(iam: Any, roles: Iterable[str], now_epoch: int) -> list[tuple[str, str, RoleRecord]]:
    """(role, grant key, record) of expired grants on `roles` (missing roles are skipped)."""
    out: list[tuple[str, str, RoleRecord]] = []
    for role in roles:
        try:
            tags = role_tags(iam, role)
        except ClientError as exc:
            if error_code(exc) == "NoSuchEntity":
                continue
            raise
        for key, value in tags.items():
            if key.startswith(GRANT_PREFIX):
                record = decode_record(value)
                if record.expires_epoch is not None and record.expires_epoch <= now_epoch:
                    out.append((role, key, record))
    return out


def all_role_names(iam: Any) -> list[str]:
    return [
        r["RoleName"]
        for page in iam.get_paginator("list_roles").paginate(PaginationConfig={"PageSize": 1000})
        for r in page.get("Roles", [])
    ]
