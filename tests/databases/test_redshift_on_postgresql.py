"""Redshift grants run on PostgreSQL where the SQL is shared (Redshift speaks the PostgreSQL protocol).

What this proves: the Redshift engine's user statements (CREATE USER ... PASSWORD 'md5...' VALID UNTIL, groups
as the marker, the connector's own record table, GRANT ... ON ALL TABLES IN SCHEMA, REVOKE, DROP USER) are
accepted by a PostgreSQL parser and have the effect the tests check, through the same Dispatcher path.
What it does NOT prove: that Redshift accepts them (Redshift forked from PostgreSQL 8.0 and differs: e.g. no
GRANT ... ON ALL SEQUENCES, datashares, RBAC roles), Redshift's session catalogue (stv_sessions; here the engine
falls back to pg_stat_activity), its md5 login check, or its object ownership rules."""

from __future__ import annotations

import psycopg
import pytest

from connector.sandbox import Sandbox
from tests.databases.conftest import dispatcher, grant_job, pg_login, pg_settings, requester, revoke_job, run
from tests.databases.servers import PostgresServer


def test_redshift_user_grant_and_revoke(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    with pg_server.admin("dev") as admin:
        admin.execute(
            "SET ROLE connector; CREATE TABLE IF NOT EXISTS public.events(id int); CREATE TABLE IF NOT EXISTS public.hidden(id int)"
        )
    d, who = dispatcher(), requester()
    settings = pg_settings(pg_server, database="dev")
    target = {"database": "dev", "schema": "public", "table": "events", "level": "read-only"}
    outcome = run(d, grant_job("redshift", settings, "r-1", target, key=who.public))
    login = who.login(outcome)
    assert login["engine"] == "redshift"
    session = pg_login(login, pg_server)
    assert session.execute("SELECT count(*) FROM public.events").fetchone() == (0,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        session.execute("SELECT * FROM public.hidden")
    with pg_server.admin("dev") as admin:
        assert admin.execute("SELECT count(*) FROM access_connector.grants").fetchone() == (1,)
    revoked = run(d, revoke_job("redshift", settings, "r-1", target))
    assert revoked.result["dropped"] and revoked.result["sessions_ended"] == 1, revoked
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        pg_login(login, pg_server)
    assert run(d, revoke_job("redshift", settings, "r-1", target)).result["existed"] is False


def test_redshift_inventory_check_and_no_role_grants(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    from connector.integrations.base import JobContext, Services
    from connector.integrations.databases import DatabaseSync
    from connector.integrations.databases.integration import RedshiftIntegration

    settings = pg_settings(pg_server, database="dev")
    integration = RedshiftIntegration("rs-1", settings, Services(connector_id="c-db"))
    assert integration.engine().check()["user"] == "connector"
    items: list = []
    DatabaseSync(integration).sync(None, JobContext("s", 1, "c-db", "rs-1", emit=items.append))  # type: ignore[arg-type]
    kinds = {i.type for i in items}
    assert {"redshift.database", "redshift.schema", "redshift.table", "redshift.role"} <= kinds
    assert not any(i.id.endswith("/role/access_connector_managed") for i in items)
    d, who = dispatcher(), requester()
    refused = run(
        d, grant_job("redshift", settings, "r-role", {"database": "dev", "role": "reporting"}, key=who.public)
    )
    assert refused.error is not None and refused.error.code == "INVALID_JOB" and "target.role" in refused.error.message
