"""What a permission set really gives: its name (an ARN in a job resolves to it) and the level of its policies.

Judged from the set's content, not its name: a set called "ReadOnly-x" with AdministratorAccess attached is
admin. The AWS-managed policies the connector knows are judged by name; an inline policy is read statement by
statement (IAM action names are case-insensitive and may hold wildcards: an action counts as the worst thing
it could match). What the connector cannot judge from Identity Center is `unresolved` and counts as admin
unless the customer's permission_sets allow-list names the set: the customer-managed policies a set references
(they live in each account) and AWS-managed policies the connector does not know.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any

from connector.integrations.effect import Level, highest

# AWS-managed policies that amount to administrator level: everything, or the power to grant oneself more.
ADMIN_MANAGED = frozenset(
    {
        "AdministratorAccess",
        "IAMFullAccess",
        "AWSOrganizationsFullAccess",
        "AWSSSOMasterAccountAdministrator",  # Identity Center admin: can assign itself any permission set
        "AWSSSODirectoryAdministrator",  # the directory: can add itself to any group
        "AWSSSOMemberAccountAdministrator",
    }
)
# AWS-managed policies that only read.
READ_MANAGED = frozenset({"ReadOnlyAccess", "ViewOnlyAccess", "SecurityAudit", "AWSSupportAccess", "Billing"})
# Services whose writes can widen access: IAM, the organisation (accounts, SCPs), Identity Center (permission
# sets, assignments) and its directory (group memberships).
ESCALATING_SERVICES = ("iam", "organizations", "sso", "sso-directory", "identitystore")
READ_VERBS = ("get", "list", "describe", "batchget", "view", "search", "lookup", "select", "query", "scan")
_WILDCARDS = ("*", "?")


@dataclass(frozen=True)
class PermissionSetEffect:
    name: str
    level: Level
    reasons: tuple[str, ...]
    unresolved: tuple[str, ...]  # policies whose content is not visible from here (customer-managed, unknown)


def _actions(statement: dict[str, Any]) -> list[str] | None:
    """The statement's actions, or None when it uses NotAction (allow everything but: counted as admin) or
    when its Action is not a string or a list of strings (fail closed)."""
    if "NotAction" in statement:
        return None
    raw = statement.get("Action", [])
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(a, str) for a in raw):
        return list(raw)
    return None


def _literal_prefix(pattern: str) -> str:
    """The part of an IAM wildcard pattern before its first wildcard (all of it when it has none)."""
    cut = min((i for i in (pattern.find(w) for w in _WILDCARDS) if i >= 0), default=len(pattern))
    return pattern[:cut]


def _may_start_with(pattern: str, prefix: str) -> bool:
    """True when the (lower-case) pattern could match a name that begins with `prefix`."""
    literal = _literal_prefix(pattern)
    if literal == pattern:
        return pattern.startswith(prefix)
    return prefix.startswith(literal) or literal.startswith(prefix)


def _reads_only(verb: str) -> bool:
    """True when every action the (lower-case) verb pattern could match is a read."""
    return _literal_prefix(verb).startswith(READ_VERBS)


def action_level(action: str) -> Level:
    """One allowed action's level. IAM matches action names case-insensitively and expands wildcards, so an
    action counts as the worst thing it could match."""
    service, _, verb = action.lower().partition(":")
    if service == "*" or not verb:
        return Level.ADMIN
    escalating = any(fnmatch.fnmatchcase(s, service) for s in ESCALATING_SERVICES)
    if escalating and not _reads_only(verb):
        return Level.ADMIN  # iam:PutRolePolicy, iam:Pass*, sso:CreateAccountAssignment, identitystore:*...
    if fnmatch.fnmatchcase("sts", service) and _may_start_with(verb, "assumerole"):
        return Level.ADMIN  # becomes another role, whose power is not visible from here
    if _reads_only(verb):
        return Level.READ
    return Level.WRITE  # s3:PutObject, s3:* and the like: some of what it allows writes


def inline_level(document: str) -> tuple[Level, list[str]]:
    """The level of an inline policy document; one that cannot be parsed counts as admin (fail closed)."""
    if not document:
        return Level.NONE, []
    try:
        data = json.loads(document)
        statements = data.get("Statement", [])
        statements = [statements] if isinstance(statements, dict) else list(statements)
    except (ValueError, AttributeError, TypeError):
        return Level.ADMIN, ["its inline policy cannot be parsed: counted as admin"]
    levels, reasons = [], []
    for statement in statements:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        actions = _actions(statement)
        if actions is None:
            levels.append(Level.ADMIN)
            reasons.append("its inline policy allows NotAction (everything but a list): counted as admin")
            continue
        for action in actions:
            level = action_level(action)
            if level is Level.ADMIN:
                reasons.append(f"its inline policy allows {action[:80]}")
            levels.append(level)
    return highest(levels), reasons[:3]


def managed_level(name: str) -> Level | None:
    """An AWS-managed policy's level by its name, or None when the connector does not know it."""
    if name in ADMIN_MANAGED:
        return Level.ADMIN
    return Level.READ if name in READ_MANAGED else None


def describe(sso: Any, instance: str, ps_arn: str) -> PermissionSetEffect:
    """Reads the set (DescribePermissionSet, its managed policies, inline policy, customer policy references)."""
    name = str(sso.describe_permission_set(InstanceArn=instance, PermissionSetArn=ps_arn)["PermissionSet"]["Name"])
    levels: list[Level] = []
    reasons: list[str] = []
    unresolved: list[str] = []
    if name in ADMIN_MANAGED:
        levels.append(Level.ADMIN)
        reasons.append(f"permission set {name} is administrator level by name")
    for page in sso.get_paginator("list_managed_policies_in_permission_set").paginate(
        InstanceArn=instance, PermissionSetArn=ps_arn
    ):
        for policy in page.get("AttachedManagedPolicies", []):
            policy_name = str(policy.get("Name") or str(policy.get("Arn", "")).rsplit("/", 1)[-1])
            level = managed_level(policy_name)
            if level is Level.ADMIN:
                reasons.append(f"permission set {name} has the AWS-managed {policy_name} attached")
            elif level is None:
                unresolved.append(f"AWS-managed {policy_name}")
                level = Level.WRITE
            levels.append(level)
    inline = sso.get_inline_policy_for_permission_set(InstanceArn=instance, PermissionSetArn=ps_arn).get(
        "InlinePolicy", ""
    )
    level, why = inline_level(str(inline or ""))
    levels.append(level)
    reasons += [f"permission set {name}: {r}" for r in why]
    unresolved += [
        f"customer-managed {ref.get('Path', '/')}{ref.get('Name', '')}"
        for page in sso.get_paginator("list_customer_managed_policy_references_in_permission_set").paginate(
            InstanceArn=instance, PermissionSetArn=ps_arn
        )
        for ref in page.get("CustomerManagedPolicyReferences", [])
    ]
    if unresolved:
        shown = ", ".join(unresolved[:3]) + (f" and {len(unresolved) - 3} more" if len(unresolved) > 3 else "")
        reasons.append(f"permission set {name} holds policies the connector cannot judge: {shown}")
    return PermissionSetEffect(name, highest(levels), tuple(reasons), tuple(unresolved))
