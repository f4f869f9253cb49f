"""EC2-through-SSM grants on an IAM role: the record, the inline policy, and the sessions a revoke ends.

One grant = one inline role policy named from the grant (`access-connector-ssm-<key>`), so PutRolePolicy is
idempotent and a revoke deletes exactly that grant. The record is a tag on the role, written before the policy
and removed last:
  access-connector/ssm-grant/<key> = "exp=<epoch|never> ssm=<policy name> region=<region>"
Revoke reads the policy back for the instances it covered, deletes it, ends the role's live sessions on those
instances (and on the instances the revoke names), and only then removes the record: a revoke cut short is
repeated by the expiry loop until it has ended the sessions too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from connector.aws.calls import CallLog
from connector.aws.errors import error_code
from connector.aws.iam_roles import assumed_role_prefix, role_tags
from connector.errors import ConnectorError, ErrorCode
from connector.integrations import ledger
from connector.integrations.ec2_ssm import policy as ssm_policy
from connector.integrations.ec2_ssm.target import Ec2SsmTarget

MAX_ROLE_TAGS = ledger.MAX_TAGS_PER_RESOURCE


def _missing_role(exc: ClientError) -> bool:
    return error_code(exc) == "NoSuchEntity"


def read_policy(iam: Any, role: str, name: str) -> dict[str, Any] | None:
    try:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    except ClientError as exc:
        if _missing_role(exc):
            return None
        raise
    data = json.loads(document) if isinstance(document, str) else document
    return data if isinstance(data, dict) else {}


def other_inline_chars(iam: Any, role: str, exclude: str) -> int:
    total = 0
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role):
        for name in page.get("PolicyNames", []):
            if name != exclude:
                total += ssm_policy.policy_chars(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
    return total


def grant(
    iam: Any, *, grant_id: str, target: Ec2SsmTarget, partition: str, expires_at: datetime | None, dry_run: bool
) -> dict[str, Any]:
    role = target.role_name
    key = ssm_policy.record_key(grant_id)
    name = ssm_policy.policy_name_for(grant_id)
    document = ssm_policy.build_document(
        partition, target.region, target.account_id, target.instances, target.documents
    )
    try:
        tags = role_tags(iam, role)
    except ClientError as exc:
        if _missing_role(exc):
            raise ConnectorError(
                ErrorCode.NOT_FOUND, f"IAM role {role!r} does not exist in account {target.account_id}", retryable=False
            ) from None
        raise
    own, others = ssm_policy.policy_chars(document), other_inline_chars(iam, role, exclude=name)
    if own + others > ssm_policy.ROLE_INLINE_LIMIT:
        raise ConnectorError(
            ErrorCode.GUARDRAIL_DENIED,
            f"role {role} would hold {own + others} characters of inline policy ({own} for this grant, {others} "
            f"already there); AWS allows {ssm_policy.ROLE_INLINE_LIMIT}. Grant fewer instances or wait for other "
            "grants on this role to expire.",
            retryable=False,
        )
    calls = CallLog(iam, dry_run)
    value = ssm_policy.encode_record(expires_at, name, target.region)
    if tags.get(key) != value:
        if key not in tags and len(tags) >= MAX_ROLE_TAGS:
            raise ConnectorError(
                ErrorCode.PRECONDITION_FAILED,
                f"role {role} already carries {len(tags)} tags, the AWS maximum; the connector records each live "
                "grant as one tag on the role. Remove unused tags or wait for live grants to expire.",
                retryable=False,
            )
        calls("tag_role", RoleName=role, Tags=[{"Key": key, "Value": value}])  # the record first
    calls("put_role_policy", RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document, separators=(",", ":")))
    return {
        "account_id": target.account_id,
        "region": target.region,
        "role": role,
        "policy_name": name,
        "instances": list(target.instances),
        "documents": list(target.documents),
        "policy_chars": own,
        "connect": ssm_policy.connect_commands(target.region, target.instances, target.documents),
        "dry_run": dry_run,
        "calls": calls.calls,
    }


def live_sessions(ssm: Any, partition: str, account: str, role: str, instances: Iterable[str]) -> list[str]:
    """Ids of the active sessions this role's sessions (any session name) hold on `instances`."""
    wanted = set(instances)
    owner_prefix = assumed_role_prefix(partition, account, role)
    out = []
    for page in ssm.get_paginator("describe_sessions").paginate(State="Active"):
        for session in page.get("Sessions", []):
            if session.get("Target") in wanted and str(session.get("Owner", "")).startswith(owner_prefix):
                out.append(str(session["SessionId"]))
    return sorted(out)


def revoke(iam: Any, ssm: Any, *, grant_id: str, target: Ec2SsmTarget, partition: str, dry_run: bool) -> dict[str, Any]:
    role = target.role_name
    key = ssm_policy.record_key(grant_id)
    name = ssm_policy.policy_name_for(grant_id)  # from the grant alone, never from the record
    base = {"account_id": target.account_id, "region": target.region, "role": role, "dry_run": dry_run}
    try:
        tags = role_tags(iam, role)
    except ClientError as exc:
        if _missing_role(exc):
            return base | {"already_revoked": True, "role_missing": True, "calls": []}
        raise
    document = read_policy(iam, role, name)
    instances = sorted(set(ssm_policy.granted_instances(document or {})) | set(target.instances))
    iam_calls, ssm_calls = CallLog(iam, dry_run), CallLog(ssm, dry_run)
    if document is not None:
        iam_calls("delete_role_policy", ok_codes=("NoSuchEntity",), RoleName=role, PolicyName=name)
    # After the policy is gone, so no new session can start behind the revoke.
    ended = live_sessions(ssm, partition, target.account_id, role, instances) if instances else []
    for session_id in ended:
        ssm_calls("terminate_session", SessionId=session_id)
    if key in tags:
        iam_calls("untag_role", RoleName=role, TagKeys=[key])
    return base | {
        "policy_name": name,
        "instances": instances,
        "sessions_terminated": ended,
        "already_revoked": document is None and key not in tags and not ended,
        "calls": iam_calls.calls + ssm_calls.calls,
    }


def records(iam: Any, roles: Iterable[str]) -> Iterator[tuple[str, str, ledger.Record]]:
    """(role, record key, record) of every EC2-through-SSM grant record on `roles` (missing roles skipped)."""
    for role in roles:
        try:
            tags = role_tags(iam, role)
        except ClientError as exc:
            if _missing_role(exc):
                continue
            raise
        for key, value in sorted(tags.items()):
            if key.startswith(ssm_policy.RECORD_PREFIX):
                yield role, key, ledger.decode(value)


def all_role_names(iam: Any) -> list[str]:
    return [
        r["RoleName"]
        for page in iam.get_paginator("list_roles").paginate(PaginationConfig={"PageSize": 1000})
        for r in page.get("Roles", [])
    ]


def connector_policies(iam: Any, role: str) -> list[str]:
    """The role's inline policies named like this kind's (whoever made them)."""
    return [
        n
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=role)
        for n in page.get("PolicyNames", [])
        if n.startswith(ssm_policy.POLICY_PREFIX)
    ]
