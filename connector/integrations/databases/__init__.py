"""Database integration types (postgresql, mysql, redshift) and their kind (`database`): just-in-time
database users inside a marker role, secrets resolved where the connector runs, records in the database.

Modules: settings (the integration settings), secrets (the connector's own login, resolved locally),
identifiers (validation, quoting, user names), engine (what an engine offers) with postgresql, mysql and
redshift, connect (settings -> engine), integration (the types), provisioner (the kind), sync (inventory).
"""

from connector.integrations.capabilities import IntegrationSpec, KindSpec
from connector.integrations.databases.integration import (
    RESOURCE_TYPE,
    DatabaseIntegration,
    MySqlIntegration,
    PostgresIntegration,
    RedshiftIntegration,
)
from connector.integrations.databases.provisioner import DatabaseGrants, DatabaseHandle, StaticDatabase
from connector.integrations.databases.sync import DatabaseSync

SPECS: list[IntegrationSpec | KindSpec] = []
for _cls in (PostgresIntegration, MySqlIntegration, RedshiftIntegration):
    SPECS += [IntegrationSpec(_cls, syncer=DatabaseSync), KindSpec(_cls.type_id, RESOURCE_TYPE, DatabaseGrants)]

__all__ = [
    "RESOURCE_TYPE",
    "SPECS",
    "DatabaseGrants",
    "DatabaseHandle",
    "DatabaseIntegration",
    "DatabaseSync",
    "StaticDatabase",
]
