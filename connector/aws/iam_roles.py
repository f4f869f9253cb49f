"""IAM role helpers shared by the kinds that put access on a customer's role (iam_access, ec2_ssm): kinds never
import one another, so what they share about roles lives here."""

from __future__ import annotations

import re
from typing import Any

from connector.aws.partitions import PARTITION
from connector.errors import InvalidJob

# A role ARN (any path) with its partition, account and name.
ROLE_ARN = re.compile(rf"^arn:({PARTITION}):iam::(\d{{12}}):role/(?:[\w+=,.@/-]*/)?([\w+=,.@-]{{1,64}})$")


def role_name_in(role: str, account_id: str) -> str:
    """The role's name from a name or an ARN; an ARN of another account than the target's is refused, so a
    job cannot name one account and land in another."""
    m = ROLE_ARN.match(role)
    if m is None:
        return role
    if m.group(2) != account_id:
        raise InvalidJob(f"target.role {role} is in account {m.group(2)}, not target.account_id")
    return m.group(3)


def assumed_role_prefix(partition: str, account_id: str, role_name: str) -> str:
    """How STS names every session of the role (whatever its session name): the Owner of its SSM sessions, the
    caller ARN in its logs. A role's path is not part of it."""
    return f"arn:{partition}:sts::{account_id}:assumed-role/{role_name}/"


def role_tags(iam: Any, role: str) -> dict[str, str]:
    """Every tag of the role (paginated)."""
    return {
        t["Key"]: t["Value"]
        for page in iam.get_paginator("list_role_tags").paginate(RoleName=role)
        for t in page.get("Tags", [])
    }
