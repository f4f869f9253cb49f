"""AssumeRole as AWS decides it: the role must exist, its trust policy must admit the caller (principal and
sts:ExternalId condition), and DurationSeconds must fit the role's maximum and the role-chaining cap.

moto grants every AssumeRole; the sandbox's WSGI layer asks `check_assume_role` first and answers with the
returned error instead of passing the call to moto.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from moto.iam.models import iam_backends
from moto.organizations.models import organizations_backends

from connector.sandbox.identity import Caller

_ROLE_ARN = re.compile(r"^arn:(aws[\w-]*):iam::(\d{12}):role/(.+)$")
ROLE_CHAINING_LIMIT = 3600
CHAINING_MESSAGE = "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
MAX_DURATION_MESSAGE = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."


@dataclass(frozen=True)
class StsError:
    code: str
    message: str
    status: int


def _denied(caller: Caller, role_arn: str) -> StsError:
    return StsError(
        "AccessDenied", f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}", 403
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _action_matches(statement: dict[str, Any]) -> bool:
    return any(a in ("sts:AssumeRole", "sts:*", "*") for a in _as_list(statement.get("Action")))


def _principal_matches(statement: dict[str, Any], caller: Caller) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    # Service and Federated principals never match an IAM caller.
    for entry in _as_list(principal.get("AWS")):
        text = str(entry)
        if text == "*" or text == caller.arn or (caller.role_arn is not None and text == caller.role_arn):
            return True
        if text == caller.account or re.fullmatch(rf"arn:aws[\w-]*:iam::{caller.account}:root", text):
            return True
    return False


def _conditions_hold(statement: dict[str, Any], external_id: str | None) -> bool:
    """Only sts:ExternalId is evaluated (StringEquals / StringLike without wildcards); other keys are ignored."""
    for operator, block in (statement.get("Condition") or {}).items():
        if not isinstance(block, dict):
            continue
        for key, expected in block.items():
            if key.lower() != "sts:externalid":
                continue
            if operator not in ("StringEquals", "StringLike"):
                continue
            if external_id is None or external_id not in [str(v) for v in _as_list(expected)]:
                return False
    return True


def trust_admits(policy_document: str, caller: Caller, external_id: str | None) -> bool:
    try:
        policy = json.loads(policy_document)
    except ValueError:
        policy = json.loads(unquote(policy_document))
    allowed = False
    for statement in _as_list(policy.get("Statement")):
        if not isinstance(statement, dict) or not _action_matches(statement):
            continue
        if not _principal_matches(statement, caller) or not _conditions_hold(statement, external_id):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


def _account_suspended(account_id: str) -> bool:
    owner = organizations_backends.master_accounts.get(account_id)
    if owner is None:
        return False
    for account in organizations_backends[owner[0]][owner[1]].accounts:
        if account.id == account_id:
            return str(account.state) == "SUSPENDED"
    return False


def check_assume_role(caller: Caller, params: dict[str, str]) -> StsError | None:
    """None when AWS would grant this AssumeRole, else the error AWS answers with."""
    role_arn = params.get("RoleArn", "")
    found = _ROLE_ARN.match(role_arn)
    if found is None:
        return StsError("ValidationError", f"{role_arn!r} is not a valid role ARN", 400)
    try:
        role = iam_backends[found.group(2)][found.group(1)].get_role_by_arn(role_arn)
    except Exception:  # moto's NotFoundException: the role does not exist in that account
        return _denied(caller, role_arn)
    if not trust_admits(str(role.assume_role_policy_document), caller, params.get("ExternalId")):
        return _denied(caller, role_arn)
    if _account_suspended(found.group(2)):  # a closed account's roles can no longer be assumed
        return _denied(caller, role_arn)
    duration_text = params.get("DurationSeconds")
    if duration_text:
        try:
            duration = int(duration_text)
        except ValueError:
            return StsError("ValidationError", f"DurationSeconds {duration_text!r} is not a number", 400)
        if duration < 900 or duration > 43200:
            return StsError(
                "ValidationError",
                f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy "
                "constraint: Member must have value between 900 and 43200",
                400,
            )
        if caller.is_assumed_role and duration > ROLE_CHAINING_LIMIT:
            return StsError("ValidationError", CHAINING_MESSAGE, 400)
        max_duration = int(role.max_session_duration or 3600)
        if duration > max_duration:
            return StsError("ValidationError", MAX_DURATION_MESSAGE, 400)
    return None
