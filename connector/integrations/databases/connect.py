"""From settings to a working engine: the connector's own login (a resolved secret, or an IAM token), the
address to dial (a local mapping of the endpoint, when the agent has one), and the engine of the right kind.

Callable with plain values, so the organisation sync can inventory a database it discovered by tags:

    engine = open_engine(settings, resolver=SecretResolver(), secretsmanager=lambda region: client, endpoints=m)
    for item in engine.inventory(check, settings.max_inventory_items): ...

The drivers (psycopg, PyMySQL) are imported only here, when a database is first used: a build without the
`databases` extra still runs every other integration, and a database job there fails UNSUPPORTED naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from connector.errors import ConnectorError, ErrorCode
from connector.integrations.databases.engine import Engine
from connector.integrations.databases.secrets import DbCredentials, SecretResolver, SecretsManagerClient
from connector.integrations.databases.settings import DatabaseSettings

RdsClient = Callable[[str], Any]  # region -> an rds client (generate_db_auth_token: a local presign, no call)


class EndpointMap(Protocol):
    def resolve(self, host: str, port: int) -> tuple[str, int]: ...


def credentials_source(
    settings: DatabaseSettings,
    resolver: SecretResolver,
    secretsmanager: SecretsManagerClient | None,
    rds: RdsClient | None = None,
) -> Callable[[], DbCredentials]:
    """A function giving the login to use now: the secret (cached by the resolver), or a fresh IAM token
    (valid 15 minutes, signed for the real endpoint address, never for a local mapping)."""
    if settings.auth_type == "iam-auth":

        def token() -> DbCredentials:
            if rds is None:
                raise ConnectorError(ErrorCode.INVALID_SETTINGS, "auth_type iam-auth needs AWS access", retryable=False)
            password = rds(settings.region).generate_db_auth_token(
                DBHostname=settings.host,
                Port=settings.effective_port,
                DBUsername=settings.username,
                Region=settings.region,
            )
            from connector.logging import register_secret

            register_secret(password)
            return DbCredentials(settings.username, password)

        return token

    def secret() -> DbCredentials:
        return resolver.resolve(
            settings.secret, region=settings.region, secretsmanager=secretsmanager, host=settings.host
        )

    return secret


def engine_for(
    settings: DatabaseSettings, credentials: Callable[[], DbCredentials], endpoint: tuple[str, int] | None = None
) -> Engine:
    try:
        if settings.engine == "mysql":
            from connector.integrations.databases.mysql import MySqlEngine

            return MySqlEngine(settings, credentials, endpoint)
        if settings.engine == "redshift":
            from connector.integrations.databases.redshift import RedshiftEngine

            return RedshiftEngine(settings, credentials, endpoint)
        from connector.integrations.databases.postgresql import PostgresEngine

        return PostgresEngine(settings, credentials, endpoint)
    except ImportError as exc:
        raise ConnectorError(
            ErrorCode.UNSUPPORTED,
            f"this build has no {settings.engine} driver ({exc.name}): install access-connector[databases]",
            retryable=False,
        ) from None


def open_engine(
    settings: DatabaseSettings,
    *,
    resolver: SecretResolver,
    secretsmanager: SecretsManagerClient | None,
    rds: RdsClient | None = None,
    endpoints: EndpointMap | None = None,
) -> Engine:
    """The engine for `settings`, dialling the mapped address when `endpoints` maps this endpoint."""
    endpoint = (settings.host, settings.effective_port)
    if endpoints is not None:
        endpoint = endpoints.resolve(*endpoint)
    return engine_for(settings, credentials_source(settings, resolver, secretsmanager, rds), endpoint)
