"""`connector doctor --database FILE`: can the connector reach this database, log in with its secret, and
do what grants and revokes need? One result per step, each with the fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.errors import ConnectorError
from connector.integrations.base import Services
from connector.integrations.databases.integration import DatabaseIntegration, MySqlIntegration, PostgresIntegration
from connector.integrations.databases.integration import RedshiftIntegration as _Redshift

TYPES: dict[str, type[DatabaseIntegration]] = {
    "postgresql": PostgresIntegration,
    "mysql": MySqlIntegration,
    "redshift": _Redshift,
}
Result = tuple[str, str, str, str]  # (check id, pass|warn|fail, message, fix)

PG_NEEDS = (
    ("createrole", "fail", "it cannot make or drop users", "ALTER USER <connector user> WITH CREATEROLE"),
    (
        "signal_backend",
        "warn",
        "a revoke cannot end the user's live sessions",
        "GRANT pg_signal_backend (or rds_superuser on RDS) TO <connector user>",
    ),
)
MY_NEEDS = (
    ("create_user", "fail", "it cannot make or drop users", "GRANT CREATE USER ON *.* TO <connector user>"),
    ("grant_option", "fail", "it cannot hand out privileges", "grant it the privileges it hands out WITH GRANT OPTION"),
    ("process", "warn", "it cannot see the user's sessions", "GRANT PROCESS ON *.* TO <connector user>"),
    (
        "end_sessions",
        "warn",
        "it cannot end the user's sessions (RDS MySQL: it uses mysql.rds_kill instead)",
        "GRANT CONNECTION_ADMIN (MySQL 8) / CONNECTION ADMIN (MariaDB) ON *.* TO <connector user>",
    ),
    (
        "role_admin",
        "warn",
        "it cannot hand out existing roles",
        "GRANT ROLE_ADMIN ON *.* TO <connector user> (MySQL 8)",
    ),
)


def database_checks(type_id: str, settings: Mapping[str, Any], services: Services) -> list[Result]:
    check_id = f"database:{type_id}"
    integration_cls = TYPES.get(type_id)
    if integration_cls is None:
        return [(check_id, "fail", f"unknown database type {type_id!r}", f"use one of {sorted(TYPES)}")]
    try:
        integration = integration_cls("doctor", settings, services)
    except ConnectorError as exc:
        return [(check_id, "fail", exc.message, "correct that setting")]
    where = f"{check_id}:{integration.db.address}"
    try:
        facts = integration.engine().check()
    except ConnectorError as exc:
        return [(where, "fail", exc.message, "see the message: secret, tag, network or the user's privileges")]
    results: list[Result] = [(where, "pass", f"logged in as {facts.get('user')}", "")]
    if facts.get("superuser"):
        return results
    needs = PG_NEEDS if type_id == "postgresql" else MY_NEEDS if type_id == "mysql" else ()
    for fact, status, consequence, fix in needs:
        if not facts.get(fact):
            results.append((f"{where}:{fact}", status, f"the connector's user lacks {fact}: {consequence}", fix))
    return results
