"""Settings of the AWS Organization integration (names follow the product docs, seeds 000 and 002).

They arrive with every job from the control plane; nothing in them is secret. Invalid settings become a
non-retryable INVALID_SETTINGS result that names the setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.aws.partitions import partition_of, partition_of_arn
from connector.aws.sessions import ROLE_ARN
from connector.errors import InvalidSettings
from connector.integrations import validation

# Database discovery (rds_instance, rds_cluster, redshift_cluster) is opt-in: it must be named in the
# integration's resource_types or the sync job's, and it is not in the default set.
DB_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# What a sync covers when neither the job nor the settings say: the opt-in types (databases, EC2 through SSM,
# the drift report; S3 / SNS / SQS unless Resource Explorer serves them) cost calls in every account and
# region, so a customer asks for them.
DEFAULT_RESOURCE_TYPES = ("organization", "eks_cluster", "identity_center", "iam_role")
RESOURCE_TYPES = (
    *DEFAULT_RESOURCE_TYPES,
    "rds_instance",
    "rds_cluster",
    "redshift_cluster",
    "ec2_instance",
    "drift",
    "s3_bucket",
    "sns_topic",
    "sqs_queue",
)
# Session Manager documents a grant may allow (setting ssm_session_documents): an interactive shell, SSH over
# Session Manager, port forwarding to a port of the instance itself.
SSM_DOCUMENTS = ("shell", "ssh", "port_forwarding")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
OU_ID = re.compile(r"^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$")
ACCOUNT_ID = re.compile(r"^\d{12}$")
ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")


def _split(value: Any) -> Any:
    """The docs' settings are comma-separated strings ("ou-aaa1-1111, ou-bbb2-2222"); accept lists too."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class OrgSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    integration_name: str = Field(default="", max_length=128)
    region: str = "us-east-1"
    sso_region: str | None = None
    sso_portal_url: str | None = None
    management_account_role_arn: str | None = None
    external_id: str | None = Field(default=None, min_length=2, max_length=1224)
    organizational_unit_id: str | None = None
    excluded_ou_ids: tuple[str, ...] = ()
    excluded_account_ids: tuple[str, ...] = ()
    session_duration_hours: float | None = Field(default=None, gt=0, le=12)
    enable_audit: bool = False
    member_role_name: str = "ConnectorMemberRole"
    regions: tuple[str, ...] | Literal["enabled"] = ()
    resource_types: tuple[str, ...] = DEFAULT_RESOURCE_TYPES
    # The connector's database user on discovered databases tagged auth_type = iam-auth (seed 001's
    # `apono_connector`, granted rds_iam / AWSAuthenticationPlugin; the connector role's rds-db:connect names it).
    database_iam_user: str = "apono_connector"
    # TLS toward discovered databases (the product's SSL Mode; verify-ca / verify-full need the CA bundle, e.g.
    # the RDS global bundle, as a file on the connector's machine).
    database_ssl_mode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "require"
    database_ssl_ca_file: str = Field(default="", max_length=4096)
    ssm_session_documents: tuple[Literal["shell", "ssh", "port_forwarding"], ...] = ("shell",)
    max_parallelism: int = Field(default=8, ge=1, le=64)
    # S3 / SNS / SQS through the organisation's Resource Explorer view when it is usable (auto), or never.
    resource_explorer: Literal["auto", "off"] = "auto"
    resource_explorer_account_id: str | None = Field(default=None, pattern=r"^\d{12}$")  # delegated admin

    @field_validator(
        "excluded_ou_ids", "excluded_account_ids", "resource_types", "ssm_session_documents", mode="before"
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("regions", mode="before")
    @classmethod
    def _regions_list(cls, value: Any) -> Any:
        return value if value == "enabled" else _split(value)

    @field_validator("region", "sso_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not REGION.fullmatch(value):
            raise ValueError(f"{value!r} is not an AWS region name such as us-east-1")
        return value

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: Any) -> Any:
        if value != "enabled":
            for region in value:
                if not REGION.fullmatch(region):
                    raise ValueError(f"{region!r} is not an AWS region name such as eu-west-1")
        return value

    @field_validator("management_account_role_arn")
    @classmethod
    def _role_arn(cls, value: str | None) -> str | None:
        if value is not None and not ROLE_ARN.fullmatch(value):
            raise ValueError("must be an IAM role ARN: arn:<partition>:iam::<12-digit account>:role/<name>")
        return value

    @field_validator("organizational_unit_id")
    @classmethod
    def _ou(cls, value: str | None) -> str | None:
        if value is not None and not (OU_ID.fullmatch(value) or re.fullmatch(r"^r-[0-9a-z]{4,32}$", value)):
            raise ValueError("must be an OU id (ou-xxxx-xxxxxxxx) or a root id (r-xxxx)")
        return value

    @field_validator("excluded_ou_ids")
    @classmethod
    def _ous(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ou in value:
            if not OU_ID.fullmatch(ou):
                raise ValueError(f"{ou!r} is not an OU id such as ou-aaa1-11111111")
        return value

    @field_validator("excluded_account_ids")
    @classmethod
    def _accounts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for account in value:
            if not ACCOUNT_ID.fullmatch(account):
                raise ValueError(f"{account!r} is not a 12-digit account id")
        return value

    @field_validator("member_role_name")
    @classmethod
    def _member_role(cls, value: str) -> str:
        if not ROLE_NAME.fullmatch(value):
            raise ValueError("must be an IAM role name (1-64 of letters, digits and +=,.@_-)")
        return value

    @field_validator("resource_types")
    @classmethod
    def _types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(RESOURCE_TYPES))
        if unknown:
            raise ValueError(f"unknown resource types {unknown}; choose from {list(RESOURCE_TYPES)}")
        return value

    @field_validator("database_iam_user")
    @classmethod
    def _db_user(cls, value: str) -> str:
        if not DB_USER.fullmatch(value):
            raise ValueError("must be a database user name: a letter or _, then up to 62 letters, digits or _")
        return value

    @field_validator("sso_portal_url")
    @classmethod
    def _portal(cls, value: str | None) -> str | None:
        """The AWS access portal's URL (https://d-xxxxxxxxxx.awsapps.com/start or a custom one), handed to
        requesters as their sign-in link: https, a host, nothing that could carry a credential or a redirect."""
        if value is None:
            return None
        parts = urlsplit(value)
        if (
            parts.scheme != "https"
            or not parts.hostname
            or parts.username is not None
            or parts.password is not None
            or parts.query
            or parts.fragment
            or any(ch.isspace() or ord(ch) < 32 for ch in value)
            or len(value) > 512
        ):
            raise ValueError(
                "must be the https:// URL of the AWS access portal (e.g. https://d-1234567890.awsapps.com/start), "
                "without user, query or fragment"
            )
        return value


def partition_of_settings(settings: OrgSettings) -> str:
    """The organisation's partition: the management role's, else its home region's."""
    return partition_of_arn(settings.management_account_role_arn or "") or partition_of(settings.region)


def _check_partitions(settings: OrgSettings) -> None:
    """Every region named must be in the organisation's partition: its roles cannot act in another one."""
    try:
        partition = partition_of_settings(settings)
    except ValueError as exc:
        raise InvalidSettings("region", str(exc)) from None
    named = [("region", settings.region), ("sso_region", settings.sso_region)]
    named += [("regions", r) for r in (settings.regions if settings.regions != "enabled" else ())]
    for setting, region in named:
        if region is None:
            continue
        try:
            other = partition_of(region)
        except ValueError as exc:
            raise InvalidSettings(setting, str(exc)) from None
        if other != partition:
            raise InvalidSettings(
                setting,
                f"{region} is in partition {other}, but the organisation is in {partition} (from "
                f"{'management_account_role_arn' if settings.management_account_role_arn else 'region'}); "
                "one integration cannot span partitions",
            )


def parse_settings(raw: Mapping[str, Any]) -> OrgSettings:
    settings = validation.parse_settings(OrgSettings, raw)
    _check_partitions(settings)
    return settings
