"""What is inside a database the organisation sync found and whose tags and secret checked out: its databases,
schemas, tables and roles, listed by the engine layer (streamed, bounded by `max_inventory_items`).

The engine's settings are made from what AWS says about the database (endpoint, engine, resource id) and its
tags (auth_type, apono-secret), never from a job; the connection opens where the connector's endpoint map
leads, while TLS and IAM tokens keep the name AWS reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from connector.errors import ConnectorError
from connector.integrations.aws_organization.database_discovery import DiscoveredDatabase
from connector.integrations.aws_organization.database_scope import DatabaseUnusable, ReadyDatabase
from connector.integrations.aws_organization.integration import AwsOrganizationIntegration
from connector.integrations.base import InventoryItem
from connector.integrations.databases.connect import credentials_source, engine_for
from connector.integrations.databases.secrets import DbCredentials, SecretResolver
from connector.integrations.databases.settings import DatabaseSettings


def settings_of(db: DiscoveredDatabase, integration: AwsOrganizationIntegration) -> DatabaseSettings:
    """The engine's settings for a discovered database (raises InvalidSettings naming what does not fit)."""
    return DatabaseSettings.parse(db.family, raw_settings(db, integration))


def raw_settings(db: DiscoveredDatabase, integration: AwsOrganizationIntegration) -> dict[str, Any]:
    """What AWS says about the database and its tags, as the database integration's settings."""
    config = integration.config
    raw: dict[str, Any] = {
        "integration_name": f"{db.kind}:{db.identifier}",
        "host": db.address,
        "port": db.port,
        "database": db.db_name,
        "ssl_mode": config.database_ssl_mode,
        "ssl_ca_file": config.database_ssl_ca_file,
        "auth_type": db.auth_type,
        "region": db.region,
        "account_id": db.account_id,
        "instance_id": db.identifier,
        "resource_id": db.resource_id,
    }
    if db.auth_type == "iam-auth":
        raw["username"] = config.database_iam_user
    else:
        raw["secret"] = db.secret_arn
    return raw


class DatabaseContents:
    """`OrgSync.database_contents` for one integration."""

    def __init__(self, integration: AwsOrganizationIntegration) -> None:
        self.integration = integration
        self.resolver = SecretResolver()  # only for IAM tokens' settings; the secret was read by the scope

    def __call__(self, db: DiscoveredDatabase, ready: ReadyDatabase) -> Iterator[InventoryItem]:
        try:
            settings = settings_of(db, self.integration)
            if db.auth_type == "iam-auth":
                session = self.integration.member(db.account_id)
                credentials = credentials_source(
                    settings, self.resolver, None, lambda region: self.integration.aws.client(session, "rds", region)
                )
            else:
                login = DbCredentials(ready.username, ready.password())

                def credentials() -> DbCredentials:
                    return login

            engine = engine_for(settings, credentials, ready.connect_to)
            for item in engine.inventory(lambda: None, settings.max_inventory_items):
                yield _placed(item, db)
        except ConnectorError as exc:
            raise DatabaseUnusable(str(exc.code), exc.message, _hint(exc)) from None


def _placed(item: InventoryItem, db: DiscoveredDatabase) -> InventoryItem:
    """The engine's item, in the database's account and region, under the database's own item."""
    return InventoryItem(
        type=item.type,
        id=item.id,
        name=item.name,
        account_id=db.account_id,
        region=db.region,
        parent_id=item.parent_id or db.arn,
        attributes=item.attributes,
    )


def _hint(exc: ConnectorError) -> str:
    code = str(exc.code)
    if code == "UNAVAILABLE":
        return (
            "let the connector's network reach the database (security group, VPC, PrivateLink), or map its endpoint "
            "with CONNECTOR_DATABASE_ENDPOINTS"
        )
    if code in ("ACCESS_DENIED", "UNAUTHENTICATED"):
        return "check the connector's database user: its password in the secret, and the privileges the docs list"
    return "see the message; the next sync retries it"
