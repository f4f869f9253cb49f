"""Settings of one database integration (postgresql, mysql, redshift), named as the product documents name
them: region, instance_id, hostname/host, port, database, ssl_mode, auth_type, secret, credential_rotation_days,
user_cleanup_days. Nothing in them is secret: `secret` names where the connector's own database credentials
are (connector.integrations.databases.secrets), it never holds them.

The same settings object serves a standalone integration and a database found by tag discovery (the
organisation sync builds one from the instance's endpoint and tags): `DatabaseSettings.parse(engine, mapping)`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.errors import InvalidSettings
from connector.integrations import validation
from connector.integrations.databases.identifiers import check_identifier

Engine = Literal["postgresql", "mysql", "redshift"]
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
AuthType = Literal["user-password", "iam-auth"]
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "redshift": 5439}
DEFAULT_DATABASES = {"postgresql": "postgres", "mysql": "mysql", "redshift": "dev"}
DEFAULT_MARKER_ROLE = "access_connector_managed"
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")
_RESOURCE_ID = re.compile(r"^(db|cluster)-[A-Z0-9]{1,64}$")
_INSTANCE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,62}$")
_SECRET = re.compile(r"^[A-Za-z0-9/_+=.@:!-]{1,2048}$")


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    engine: Engine = "postgresql"
    integration_name: str = Field(default="", max_length=128)
    host: str = Field(default="", alias="hostname")
    port: int = Field(default=0, ge=0, le=65535)
    database: str = ""
    ssl_mode: SslMode = "require"
    # A CA bundle for verify-ca / verify-full (the RDS global bundle); a path on the connector's machine.
    ssl_ca_file: str = Field(default="", max_length=4096)
    auth_type: AuthType = "user-password"  # how the connector itself logs in
    # How the users made for grants log in; by default as the connector does (iam-auth: IAM tokens).
    user_auth_type: AuthType | None = None
    secret: str = ""  # user-password: Secrets Manager ARN or name, or k8s:<namespace>/<name>
    username: str = ""  # iam-auth: the connector's own database user (made with rds_iam / AWSAuthenticationPlugin)
    region: str = ""
    account_id: str = ""
    instance_id: str = ""
    resource_id: str = ""  # DbiResourceId / DbClusterResourceId: the rds-db:connect ARN names it
    credential_rotation_days: int | None = Field(default=None, ge=1, le=3650)
    user_cleanup_days: int | None = Field(default=None, ge=0, le=3650)
    marker_role: str = DEFAULT_MARKER_ROLE
    max_inventory_items: int = Field(default=100_000, ge=1, le=1_000_000)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if value and not _HOST.match(value):
            raise ValueError("must be a host name or IP address")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value and not _REGION.match(value):
            raise ValueError(f"{value[:40]!r} is not an AWS region name such as eu-west-1")
        return value

    @field_validator("account_id")
    @classmethod
    def _account(cls, value: str) -> str:
        if value and not _ACCOUNT.match(value):
            raise ValueError("must be a 12-digit AWS account id")
        return value

    @field_validator("resource_id")
    @classmethod
    def _resource_id(cls, value: str) -> str:
        if value and not _RESOURCE_ID.match(value):
            raise ValueError("must be the instance's DbiResourceId (db-...) or the cluster's resource id (cluster-...)")
        return value

    @field_validator("instance_id")
    @classmethod
    def _instance(cls, value: str) -> str:
        if value and not _INSTANCE_ID.match(value):
            raise ValueError("must be an RDS instance or cluster identifier")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if value and not _SECRET.match(value):
            raise ValueError("must be a Secrets Manager ARN or name, or k8s:<namespace>/<name>")
        return value

    @property
    def users_iam(self) -> bool:
        return (self.user_auth_type or self.auth_type) == "iam-auth"

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.engine]

    @property
    def effective_database(self) -> str:
        return self.database or DEFAULT_DATABASES[self.engine]

    @property
    def address(self) -> str:
        """host:port as the grant's Effect and the inventory name it (the real endpoint, not a local mapping)."""
        return f"{self.host}:{self.effective_port}"

    @classmethod
    def parse(cls, engine: str, raw: Mapping[str, Any]) -> DatabaseSettings:
        """Settings of an integration of type `engine`; bad ones are INVALID_SETTINGS naming the setting."""
        settings = validation.parse_settings(cls, {**dict(raw), "engine": engine})
        max_bytes = 64 if engine == "mysql" else 63
        if settings.database:
            check_identifier(settings.database, "database", max_bytes=max_bytes, setting=True)
        if settings.username:
            check_identifier(settings.username, "username", max_bytes=max_bytes, setting=True)
        check_identifier(settings.marker_role, "marker_role", max_bytes=32 if engine == "mysql" else 63, setting=True)
        settings._complete()
        return settings

    def _complete(self) -> None:
        if not self.host:
            raise InvalidSettings("host", "the database's host name (hostname) is required")
        if self.auth_type == "user-password" and not self.secret:
            raise InvalidSettings(
                "secret",
                "auth_type user-password needs the secret holding the connector's database user "
                "(a Secrets Manager ARN or name, or k8s:<namespace>/<name>)",
            )
        if self.auth_type == "iam-auth":
            if self.engine == "redshift":
                raise InvalidSettings("auth_type", "iam-auth is not supported for redshift; use user-password")
            if not self.username:
                raise InvalidSettings("username", "auth_type iam-auth needs the connector's database user name")
            if not self.region:
                raise InvalidSettings("region", "auth_type iam-auth signs its token for the instance's region")
        if self.users_iam and self.engine == "redshift":
            raise InvalidSettings("user_auth_type", "redshift users are made with a password (user-password)")
        if self.ssl_mode in ("verify-ca", "verify-full") and not self.ssl_ca_file:
            raise InvalidSettings("ssl_ca_file", f"ssl_mode {self.ssl_mode} needs the CA bundle to verify against")
