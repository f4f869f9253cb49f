"""IAM roles in one account: name, ARN, who may assume them (trust summary), tags, max session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from connector.integrations.base import InventoryItem


def trusted_principals(document: Any) -> list[str]:
    """Flatten a trust policy's Allow statements into "AWS:arn", "Service:eks.amazonaws.com", ... entries."""
    if isinstance(document, str):
        document = json.loads(unquote(document))
    out: list[str] = []
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    for st in statements if isinstance(statements, list) else [statements]:
        if st.get("Effect") != "Allow":
            continue
        principal = st.get("Principal", {})
        if principal == "*":
            out.append("*")
            continue
        for kind, values in principal.items():
            for value in values if isinstance(values, list) else [values]:
                out.append(f"{kind}:{value}")
    return sorted(set(out))


def role_items(iam: Any, account_id: str) -> Iterator[InventoryItem]:
    for page in iam.get_paginator("list_roles").paginate(PaginationConfig={"PageSize": 100}):
        for role in page.get("Roles", []):
            tags = {
                t["Key"]: t["Value"]
                for tpage in iam.get_paginator("list_role_tags").paginate(RoleName=role["RoleName"])
                for t in tpage.get("Tags", [])
            }
            yield InventoryItem(
                type="iam.role",
                id=role["Arn"],
                name=role["RoleName"],
                account_id=account_id,
                attributes={
                    "path": role.get("Path", "/"),
                    "trusted_principals": trusted_principals(role.get("AssumeRolePolicyDocument", {})),
                    "max_session_duration": role.get("MaxSessionDuration", 3600),
                    "tags": tags,
                    "created": str(role.get("CreateDate", "")),
                },
            )
