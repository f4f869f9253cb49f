"""The inline policy of an IAM grant: fixed action lists per service and level, and IAM's size rules.

Access levels map to fixed action lists per service (ACTIONS below). An S3 bucket encrypted with a
customer-managed KMS key also gets kms:Decrypt (read) and kms:GenerateDataKey (write) on that key. Limits
are enforced in code because moto does not: 10,240 non-whitespace characters for all the role's inline
policies together.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from connector.errors import ConnectorError, ErrorCode
from connector.integrations import ledger
from connector.integrations.iam_access.target import ARN, IamTarget

ROLE_INLINE_LIMIT = 10_240  # AWS: all inline policies of a role together, whitespace not counted
POLICY_PREFIX = "access-connector-"
_POLICY_NAME_OK = re.compile(r"^[\w+=,.@-]{1,100}$")

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
    # IAM database authentication: log in as exactly the database user the database kind made for a grant
    # (arn:aws:rds-db:<region>:<account>:dbuser:<DbiResourceId>/<user>, from that grant's result).
    ("rds-db", ""): {"read": ("rds-db:connect",), "write": ("rds-db:connect",)},
    ("kms", ""): {
        "read": ("kms:Decrypt",),  # read objects encrypted with the bucket's key
        "write": ("kms:Decrypt", "kms:GenerateDataKey"),  # + write objects encrypted with it
    },
}


def policy_name_for(grant_key: str) -> str:
    """Inline policy name from the grant tag key (deterministic, so a re-delivery overwrites, never adds)."""
    suffix = ledger.key_suffix(grant_key)
    if not _POLICY_NAME_OK.match(suffix):
        suffix = "h-" + hashlib.sha256(suffix.encode()).hexdigest()[:40]
    return POLICY_PREFIX + suffix


def policy_chars(document: Any) -> int:
    """Size as IAM counts it: characters of the JSON document, whitespace not counted."""
    text = document if isinstance(document, str) else json.dumps(document, separators=(",", ":"))
    return sum(1 for ch in text if not ch.isspace())


def part_of(arn: str) -> tuple[str, str]:
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
        service, part = part_of(arn)
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
