"""EC2 instances in one account and region, joined with Systems Manager's view of them.

Each instance (state, platform, type, tags, instance profile) says whether Session Manager can reach it and,
when it cannot, why, in the order a person would check (seed 001: the instance's role needs
AmazonSSMManagedInstanceCore, the agent must run and reach SSM): the instance is not running; it has no
instance profile; the profile's role lacks AmazonSSMManagedInstanceCore; the agent has not registered; the
agent registered but lost its connection (PingStatus ConnectionLost / Inactive).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from connector.aws.errors import error_code
from connector.integrations.base import InventoryItem

CORE_POLICY = "AmazonSSMManagedInstanceCore"
SSM_PAGE = {"PageSize": 50}  # DescribeInstanceInformation's maximum


def managed_instances(ssm: Any) -> dict[str, dict[str, Any]]:
    return {
        info["InstanceId"]: info
        for page in ssm.get_paginator("describe_instance_information").paginate(PaginationConfig=SSM_PAGE)
        for info in page.get("InstanceInformationList", [])
    }


class _Roles:
    """Instance profile -> role -> has AmazonSSMManagedInstanceCore, each read once per (account, region)."""

    def __init__(self, iam: Any) -> None:
        self.iam = iam
        self._profiles: dict[str, str | None] = {}
        self._core: dict[str, bool] = {}

    def role_of(self, profile_arn: str) -> str | None:
        if profile_arn not in self._profiles:
            name = profile_arn.rsplit("/", 1)[-1]
            try:
                roles = self.iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"].get("Roles", [])
            except ClientError as exc:
                if error_code(exc) != "NoSuchEntity":
                    raise
                roles = []
            self._profiles[profile_arn] = str(roles[0]["RoleName"]) if roles else None
        return self._profiles[profile_arn]

    def has_core(self, role: str) -> bool:
        if role not in self._core:
            attached = [
                p["PolicyArn"]
                for page in self.iam.get_paginator("list_attached_role_policies").paginate(RoleName=role)
                for p in page.get("AttachedPolicies", [])
            ]
            self._core[role] = any(arn.endswith("/" + CORE_POLICY) for arn in attached)
        return self._core[role]


def _unreachable_reason(instance: dict[str, Any], info: dict[str, Any] | None, roles: _Roles) -> str:
    state = instance.get("State", {}).get("Name", "")
    if state != "running":
        return f"the instance is {state}: start it to connect"
    if info is not None:
        if info.get("PingStatus") == "Online":
            return ""
        return (
            f"the SSM agent is offline (PingStatus {info.get('PingStatus')}, last ping "
            f"{info.get('LastPingDateTime', 'unknown')}): check that the agent runs and the instance can reach the "
            "ssm, ssmmessages and ec2messages endpoints"
        )
    profile = str(instance.get("IamInstanceProfile", {}).get("Arn", ""))
    if not profile:
        return f"no instance profile: attach a role with the {CORE_POLICY} managed policy (e.g. ec2-ssm)"
    role = roles.role_of(profile)
    if role is None:
        return f"instance profile {profile.rsplit('/', 1)[-1]} has no role: add one with {CORE_POLICY}"
    if not roles.has_core(role):
        return f"role {role} of the instance profile lacks the {CORE_POLICY} managed policy: attach it"
    return (
        "the SSM agent has not registered: install or start it, and let the instance reach the ssm, ssmmessages "
        "and ec2messages endpoints"
    )


def instance_items(
    ec2: Any, ssm: Any, iam: Any, account_id: str, region: str, partition: str
) -> Iterator[InventoryItem]:
    managed = managed_instances(ssm)
    roles = _Roles(iam)
    for page in ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 1000}):
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                state = instance.get("State", {}).get("Name", "")
                if state == "terminated":
                    continue
                instance_id = str(instance["InstanceId"])
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                info = managed.get(instance_id)
                reason = _unreachable_reason(instance, info, roles)
                ssm_view: dict[str, Any] = {"managed": info is not None}
                if info is not None:
                    ssm_view |= {
                        "ping_status": info.get("PingStatus", ""),
                        "agent_version": info.get("AgentVersion", ""),
                        "platform_type": info.get("PlatformType", ""),
                        "platform_name": info.get("PlatformName", ""),
                        "last_ping": str(info.get("LastPingDateTime", "")),
                    }
                yield InventoryItem(
                    type="ec2.instance",
                    id=f"arn:{partition}:ec2:{region}:{account_id}:instance/{instance_id}",
                    name=tags.get("Name", instance_id),
                    account_id=account_id,
                    region=region,
                    attributes={
                        "instance_id": instance_id,
                        "state": state,
                        "platform": instance.get("PlatformDetails") or instance.get("Platform") or "Linux/UNIX",
                        "instance_type": instance.get("InstanceType", ""),
                        "instance_profile_arn": str(instance.get("IamInstanceProfile", {}).get("Arn", "")),
                        "tags": tags,
                        "ssm": ssm_view,
                        "reachable": not reason,
                        "unreachable_reason": reason,
                    },
                )
