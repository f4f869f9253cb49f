"""Where each Identity Center permission set is provisioned, served as AWS does.

moto gets this wrong (AWS_FACTS.md): ListPermissionSetsProvisionedToAccount ignores AccountId,
ListAccountsForProvisionedPermissionSet returns only the caller's account, neither paginates, and
CreateAccountAssignment / ProvisionPermissionSet provision nothing. Here: a permission set is provisioned to an
account by a successful CreateAccountAssignment there or ProvisionPermissionSet(TargetType=AWS_ACCOUNT) (as in
AWS, it stays provisioned when the assignment is deleted); both List calls read that record, filtered by
account or set, paginated (MaxResults 1-100, NextToken). ProvisioningStatus LATEST_PERMISSION_SET_PROVISIONED
and LATEST_PERMISSION_SET_NOT_PROVISIONED: every provisioned set here is at its latest version, so the latter
lists nothing. Process-global, like moto's backends.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from moto.ssoadmin.models import ssoadmin_backends

from connector.sandbox import protocol

READS = frozenset({"ListAccountsForProvisionedPermissionSet", "ListPermissionSetsProvisionedToAccount"})
WRITES = frozenset({"CreateAccountAssignment", "ProvisionPermissionSet"})
_DEFAULT_PAGE = 100
_CONTENT_TYPE = [("Content-Type", "application/x-amz-json-1.1")]

_lock = threading.Lock()
# (management account, region, instance ARN) -> permission set ARN -> accounts it is provisioned to
_provisioned: dict[tuple[str, str, str], dict[str, set[str]]] = {}


def provision(account: str, region: str, instance_arn: str, permission_set_arn: str, accounts: list[str]) -> None:
    """Record `permission_set_arn` as provisioned to `accounts` (the seed uses this directly)."""
    with _lock:
        sets = _provisioned.setdefault((account, region, instance_arn), {})
        sets.setdefault(permission_set_arn, set()).update(accounts)


def record_write(account: str, region: str, operation: str, body: bytes) -> None:
    """After moto accepted a CreateAccountAssignment / ProvisionPermissionSet: provision where AWS would."""
    params = json.loads(body or b"{}")
    target_type = params.get("TargetType")
    if target_type == "AWS_ACCOUNT" and params.get("TargetId"):
        provision(account, region, params["InstanceArn"], params["PermissionSetArn"], [str(params["TargetId"])])


def _known_sets(account: str, region: str, instance_arn: str) -> set[str]:
    backend = ssoadmin_backends[account][region]
    return {ps.permission_set_arn for ps in backend.permission_sets if ps.instance_arn == instance_arn}


def _page(items: list[str], params: dict[str, Any]) -> tuple[list[str], str | None]:
    try:
        start = int(params.get("NextToken") or 0)
    except ValueError:
        raise _BadToken() from None
    size = int(params.get("MaxResults") or _DEFAULT_PAGE)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


class _BadToken(Exception):
    pass


def read(account: str, region: str, operation: str, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of one of READS."""
    params = json.loads(body or b"{}")
    instance = str(params.get("InstanceArn", ""))
    with _lock:
        sets = {ps: set(accounts) for ps, accounts in _provisioned.get((account, region, instance), {}).items()}
    not_provisioned = params.get("ProvisioningStatus") == "LATEST_PERMISSION_SET_NOT_PROVISIONED"
    try:
        if operation == "ListAccountsForProvisionedPermissionSet":
            ps_arn = str(params.get("PermissionSetArn", ""))
            if ps_arn not in _known_sets(account, region, instance):
                return protocol.error_response(
                    "sso-admin", "ResourceNotFoundException", "Could not find PermissionSet", 400
                )
            accounts = [] if not_provisioned else sorted(sets.get(ps_arn, set()))
            page, token = _page(accounts, params)
            answer: dict[str, Any] = {"AccountIds": page}
        else:
            wanted = str(params.get("AccountId", ""))
            found = [] if not_provisioned else sorted(ps for ps, accounts in sets.items() if wanted in accounts)
            page, token = _page(found, params)
            answer = {"PermissionSets": page}
    except _BadToken:
        return protocol.error_response("sso-admin", "ValidationException", "Invalid NextToken", 400)
    if token is not None:
        answer["NextToken"] = token
    return 200, list(_CONTENT_TYPE), json.dumps(answer).encode()
