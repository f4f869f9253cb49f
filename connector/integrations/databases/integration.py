"""The postgresql, mysql and redshift integration types: one database server each, its validated settings
(settings.py) and the engine that reaches it with the connector's own login (connect.py).

The connector's login comes from the secret named in the settings, resolved here in the connector by the
process-wide SecretResolver (cached briefly, never sent or stored), or from an IAM token made with the
connector's identity. A login the database refuses drops the cached secret, so a rotated secret is read again
on the next job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from connector.aws.sessions import AwsSessions
from connector.errors import ConnectorError, ErrorCode
from connector.integrations.base import Services
from connector.integrations.capabilities import Integration
from connector.integrations.databases.connect import EndpointMap, open_engine
from connector.integrations.databases.engine import Engine
from connector.integrations.databases.secrets import SecretResolver
from connector.integrations.databases.settings import DatabaseSettings

RESOURCE_TYPE = "database"
RESOLVER_KEY = "database_secrets"


def shared_resolver(services: Services) -> SecretResolver:
    """The process's one SecretResolver (so its short cache is shared by every database integration)."""
    resolver = services.extra.get(RESOLVER_KEY)
    if not isinstance(resolver, SecretResolver):
        resolver = services.extra.setdefault(RESOLVER_KEY, SecretResolver())
    assert isinstance(resolver, SecretResolver)
    return resolver


class DatabaseIntegration(Integration):
    engine_name: ClassVar[str]
    default_resource_type = RESOURCE_TYPE

    def __init__(self, integration_id: str, settings: Mapping[str, Any], services: Services) -> None:
        super().__init__(integration_id, settings, services)
        self.db = DatabaseSettings.parse(self.engine_name, settings)
        self._engine: Engine | None = None

    def aws(self) -> AwsSessions:
        if self.services.aws is None:
            self.services.aws = AwsSessions(self.services.connector_id)
        aws: AwsSessions = self.services.aws
        return aws

    def _client(self, service: str) -> Any:
        def make(region: str) -> Any:
            aws = self.aws()
            return aws.client(aws.identity(), service, region)

        return make

    def engine(self) -> Engine:
        if self._engine is None:
            endpoints = getattr(self.services, "database_endpoints", None) or self.services.extra.get(
                "database_endpoints"
            )
            self._engine = open_engine(
                self.db,
                resolver=shared_resolver(self.services),
                secretsmanager=self._client("secretsmanager"),
                rds=self._client("rds"),
                endpoints=endpoints if _is_endpoint_map(endpoints) else None,
            )
        return self._engine

    def login_refused(self, exc: ConnectorError) -> None:
        """The database refused our login: forget the cached secret (it may have been rotated)."""
        if exc.code is ErrorCode.ACCESS_DENIED and self.db.secret:
            shared_resolver(self.services).forget(self.db.secret)


def _is_endpoint_map(value: Any) -> bool:
    return value is not None and callable(getattr(value, "resolve", None))


class PostgresIntegration(DatabaseIntegration):
    type_id = "postgresql"
    engine_name = "postgresql"


class MySqlIntegration(DatabaseIntegration):
    type_id = "mysql"
    engine_name = "mysql"


class RedshiftIntegration(DatabaseIntegration):
    type_id = "redshift"
    engine_name = "redshift"


__all__ = [
    "RESOURCE_TYPE",
    "DatabaseIntegration",
    "EndpointMap",
    "MySqlIntegration",
    "PostgresIntegration",
    "RedshiftIntegration",
]
