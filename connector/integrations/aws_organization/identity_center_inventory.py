"""IAM Identity Center: instance, permission sets (managed / inline policies), users, groups, and the
account assignments per account. Read through the management account, in the SSO region."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from connector.aws.errors import error_code
from connector.integrations.base import InventoryItem


@dataclass
class IdentityCenter:
    instance_arn: str
    identity_store_id: str
    permission_sets: list[str] = field(default_factory=list)


def discover(sso: Any) -> IdentityCenter | None:
    for page in sso.get_paginator("list_instances").paginate():
        for instance in page.get("Instances", []):
            return IdentityCenter(instance["InstanceArn"], instance["IdentityStoreId"])
    return None


def directory_items(sso: Any, store: Any, ic: IdentityCenter) -> Iterator[InventoryItem]:
    yield InventoryItem(
        type="sso.instance",
        id=ic.instance_arn,
        name=ic.identity_store_id,
        attributes={"identity_store_id": ic.identity_store_id},
    )
    for page in sso.get_paginator("list_permission_sets").paginate(InstanceArn=ic.instance_arn):
        for ps_arn in page.get("PermissionSets", []):
            ic.permission_sets.append(ps_arn)
            yield _permission_set(sso, ic.instance_arn, ps_arn)
    for page in store.get_paginator("list_users").paginate(IdentityStoreId=ic.identity_store_id):
        for user in page.get("Users", []):
            yield InventoryItem(
                type="sso.user",
                id=user["UserId"],
                name=user.get("UserName", ""),
                attributes={
                    "display_name": user.get("DisplayName", ""),
                    "emails": [e.get("Value", "") for e in user.get("Emails", []) if e.get("Primary", True)],
                },
            )
    for page in store.get_paginator("list_groups").paginate(IdentityStoreId=ic.identity_store_id):
        for group in page.get("Groups", []):
            yield InventoryItem(
                type="sso.group",
                id=group["GroupId"],
                name=group.get("DisplayName", ""),
                attributes={"description": group.get("Description", "")},
            )


def _permission_set(sso: Any, instance_arn: str, ps_arn: str) -> InventoryItem:
    ps = sso.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=ps_arn)["PermissionSet"]
    managed = [
        p.get("Name", p.get("Arn", ""))
        for page in sso.get_paginator("list_managed_policies_in_permission_set").paginate(
            InstanceArn=instance_arn, PermissionSetArn=ps_arn
        )
        for p in page.get("AttachedManagedPolicies", [])
    ]
    try:
        inline = sso.get_inline_policy_for_permission_set(InstanceArn=instance_arn, PermissionSetArn=ps_arn)
        has_inline = bool(inline.get("InlinePolicy"))
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        has_inline = False
    return InventoryItem(
        type="sso.permission_set",
        id=ps_arn,
        name=ps.get("Name", ""),
        attributes={
            "description": ps.get("Description", ""),
            "session_duration": ps.get("SessionDuration", ""),
            "managed_policies": managed,
            "has_inline_policy": has_inline,
        },
    )


def load_permission_sets(sso: Any, ic: IdentityCenter) -> None:
    """Permission set ARNs only (an account-scoped sync lists assignments without the directory)."""
    for page in sso.get_paginator("list_permission_sets").paginate(InstanceArn=ic.instance_arn):
        ic.permission_sets.extend(page.get("PermissionSets", []))


def assignment_items(sso: Any, ic: IdentityCenter, account_id: str) -> Iterator[InventoryItem]:
    """Existing assignments in one account: who already holds which permission set there."""
    for ps_arn in ic.permission_sets:
        paginator = sso.get_paginator("list_account_assignments")
        for page in paginator.paginate(InstanceArn=ic.instance_arn, AccountId=account_id, PermissionSetArn=ps_arn):
            for a in page.get("AccountAssignments", []):
                yield InventoryItem(
                    type="sso.assignment",
                    id=f"{account_id}/{ps_arn.rsplit('/', 1)[-1]}/{a['PrincipalType']}/{a['PrincipalId']}",
                    account_id=account_id,
                    parent_id=ps_arn,
                    attributes={
                        "permission_set_arn": ps_arn,
                        "principal_type": a["PrincipalType"],
                        "principal_id": a["PrincipalId"],
                    },
                )
