"""The `target` of an IAM resource-access grant or revoke, validated before any call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connector.aws.iam_roles import ROLE_ARN, role_name_in
from connector.aws.partitions import PARTITION
from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations import validation

MAX_RESOURCES = 100  # the product's guardrail (seed 001): resources named one by one
ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
ARN = re.compile(rf"^arn:({PARTITION}):([a-z0-9-]+):([a-z0-9-]*):(\d{{12}})?:(.+)$")
SERVICES = ("s3", "sns", "sqs", "dynamodb", "rds-db")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
MAX_TAG_KEYS = 50  # Resource Groups Tagging API: TagFilters
MAX_TAG_VALUES = 20  # values per key

Level = Literal["read", "write"]


class IamTarget(BaseModel):
    """The `target` of an IAM resource-access grant or revoke. The job's principal is informational (the
    requester); access goes to `role`. A revoke needs only account_id and role."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource_type: Literal["iam_resource_access"] = "iam_resource_access"
    account_id: str = Field(pattern=r"^\d{12}$")
    role: str
    resources: tuple[str, ...] = ()
    access_level: Level = "read"
    # Resources named by tag, resolved at grant time to ARNs (tag_selection.py): every `service` resource
    # in the account, in `regions` (default: the integration's), carrying each key with one of its values.
    resource_tags: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    service: Literal["s3", "sns", "sqs", "dynamodb"] | None = None
    regions: tuple[str, ...] = ()

    @field_validator("resource_tags", mode="before")
    @classmethod
    def _tag_values(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: (v,) if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("resource_tags")
    @classmethod
    def _tags(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        if len(value) > MAX_TAG_KEYS:
            raise ValueError(f"at most {MAX_TAG_KEYS} tag keys")
        for key, values in value.items():
            if not 1 <= len(key) <= 128:
                raise ValueError(f"tag key {key[:200]!r} must be 1-128 characters")
            if not 1 <= len(values) <= MAX_TAG_VALUES or any(len(v) > 256 for v in values):
                raise ValueError(f"tag {key[:128]!r}: give 1-{MAX_TAG_VALUES} values of at most 256 characters")
        return value

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for region in value:
            if not REGION.match(region):
                raise ValueError(f"{region[:64]!r} is not an AWS region name such as eu-west-1")
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _selection(self) -> IamTarget:
        if self.resource_tags and self.service is None:
            raise ValueError("resource_tags needs `service` (one of s3, sns, sqs, dynamodb): which resources to match")
        if (self.service is not None or self.regions) and not self.resource_tags:
            raise ValueError("`service` and `regions` select resources by tag: give resource_tags too")
        return self

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if not (ROLE_NAME.match(value) or ROLE_ARN.match(value)):
            raise ValueError("must be an IAM role name or role ARN (arn:<partition>:iam::<account>:role/<name>)")
        return value

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arn in value:
            m = ARN.match(arn)
            if m is None:
                raise ValueError(f"{arn[:200]!r} is not an ARN")
            if m.group(2) not in SERVICES:
                raise ValueError(f"{arn[:200]!r}: service {m.group(2)!r} is not supported; supported: {SERVICES}")
        return tuple(dict.fromkeys(value))

    @property
    def role_name(self) -> str:
        return role_name_in(self.role, self.account_id)


def parse_target(raw: Mapping[str, Any]) -> IamTarget:
    return validation.parse_target(IamTarget, raw)


def check_resource_count(target: IamTarget) -> None:
    if len(target.resources) > MAX_RESOURCES:
        raise ConnectorError(
            ErrorCode.GUARDRAIL_DENIED,
            f"this grant names {len(target.resources)} resources one by one; at most {MAX_RESOURCES} are allowed, "
            "because each becomes an ARN in the role's inline policy (AWS caps them at 10,240 characters). "
            "Group the resources: tag them and grant by tag, use a scope with a wildcard ARN "
            "(e.g. arn:<partition>:s3:::team-a-*), or split the request.",
            retryable=False,
        )
    if not target.resources and not target.resource_tags:
        raise InvalidJob("target.resources: name at least one resource ARN (or resource_tags) to grant access to")


def check_partition(target: IamTarget, partition: str) -> None:
    """Every ARN of the grant must be in the account's partition (a GovCloud role cannot name aws ARNs)."""
    for arn in (target.role, *target.resources):
        m = ARN.match(arn) if arn.startswith("arn:") else None
        if m is not None and m.group(1) != partition:
            raise InvalidJob(f"target: {arn[:200]!r} is in partition {m.group(1)}, the account in {partition}")
