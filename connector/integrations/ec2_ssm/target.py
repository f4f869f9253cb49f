"""The `target` of an EC2-through-SSM grant or revoke, validated before any call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.aws.iam_roles import ROLE_ARN, role_name_in
from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations import validation

RESOURCE_TYPE = "ec2_ssm_session"
MAX_INSTANCES = 100  # the product's guardrail (seed 001): resources named one by one
INSTANCE_ID = re.compile(r"^i-([0-9a-f]{8}|[0-9a-f]{17})$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
Document = Literal["shell", "ssh", "port_forwarding"]


class Ec2SsmTarget(BaseModel):
    """Who may open Session Manager sessions to which instances. The job's principal is informational (the
    requester); the access goes to `role`, the IAM role the requester works as. A revoke needs account_id,
    region and role (instances, when given, are terminated too)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource_type: Literal["ec2_ssm_session"] = "ec2_ssm_session"
    account_id: str = Field(pattern=r"^\d{12}$")
    region: str
    role: str
    instances: tuple[str, ...] = ()
    documents: tuple[Document, ...] = ("shell",)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not REGION.match(value):
            raise ValueError(f"{value[:40]!r} is not an AWS region name such as eu-west-1")
        return value

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if not (ROLE_NAME.match(value) or ROLE_ARN.match(value)):
            raise ValueError("must be an IAM role name or role ARN (arn:aws:iam::<account>:role/<name>)")
        return value

    @field_validator("instances")
    @classmethod
    def _instances(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for instance in value:
            if not INSTANCE_ID.match(instance):
                raise ValueError(f"{instance[:40]!r} is not an EC2 instance id (i- and 8 or 17 hex digits)")
        return tuple(dict.fromkeys(value))

    @field_validator("documents")
    @classmethod
    def _documents(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one of shell, ssh, port_forwarding")
        return tuple(dict.fromkeys(value))

    @property
    def role_name(self) -> str:
        return role_name_in(self.role, self.account_id)


def parse_target(raw: Mapping[str, Any]) -> Ec2SsmTarget:
    return validation.parse_target(Ec2SsmTarget, raw)


def check_instances(target: Ec2SsmTarget) -> None:
    """Before any call: at least one instance, at most the guardrail's 100."""
    if not target.instances:
        raise InvalidJob("target.instances: name at least one EC2 instance id to grant sessions on")
    if len(target.instances) > MAX_INSTANCES:
        raise ConnectorError(
            ErrorCode.GUARDRAIL_DENIED,
            f"this grant names {len(target.instances)} instances one by one; at most {MAX_INSTANCES} are allowed, "
            "because each becomes an ARN in the role's inline policy (AWS caps a role's inline policies at "
            "10,240 characters). Split the request.",
            retryable=False,
        )


def check_documents(target: Ec2SsmTarget, allowed: tuple[str, ...]) -> None:
    """The session documents the customer allows (setting ssm_session_documents; default shell only)."""
    refused = [d for d in target.documents if d not in allowed]
    if refused:
        raise ConnectorError(
            ErrorCode.GUARDRAIL_DENIED,
            f"target.documents {refused} are not allowed by this integration (setting ssm_session_documents "
            f"allows {list(allowed)}); ask the integration's owner to allow them, or request {list(allowed)}",
            retryable=False,
        )
