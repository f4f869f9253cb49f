"""MySQL-compatible grants on a real MariaDB server, through the Dispatcher: the requester reads exactly what
was granted, revoke ends the live session (KILL CONNECTION) and the login, repeats change nothing, the
records live in the connector's own table (MariaDB has no user comments).

What MariaDB cannot show of MySQL 8 (see connector/integrations/databases/mysql.py): ROLE_ADMIN, roles as
user@host, `SET DEFAULT ROLE ... TO`, AWSAuthenticationPlugin (MariaDB answers ERROR 1524: checked below as the
precondition it is), `mysql.rds_kill`, DROP USER refusing a DEFINER (error 4006)."""

from __future__ import annotations

import io
import json
import time

import pymysql
import pytest

from connector.integrations.capabilities import ExpiryScan
from connector.jobs.registry import build_registry
from connector.sandbox import Sandbox
from tests.databases.conftest import (
    MY_CONNECTOR_PASSWORD,
    dispatcher,
    grant_job,
    my_login,
    my_settings,
    requester,
    revoke_job,
    run,
)
from tests.databases.servers import MariaDbServer

READ_ORDERS = {"database": "shop", "table": "orders", "level": "read-only"}


def users(server: MariaDbServer) -> list[str]:
    with server.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT User FROM mysql.user WHERE User LIKE 'ac\\_%' ORDER BY 1")
        return [r[0] for r in cur.fetchall()]


def test_grant_read_one_table_then_revoke_ends_the_session(
    sandbox: Sandbox, mariadb_server: MariaDbServer, log_stream: io.StringIO
) -> None:
    d, who = dispatcher(), requester()
    settings = my_settings(mariadb_server)
    outcome = run(d, grant_job("mysql", settings, "m-read-1", READ_ORDERS, key=who.public))
    login = who.login(outcome)
    assert outcome.effect is not None and outcome.effect["level"] == "read"
    again = run(d, grant_job("mysql", settings, "m-read-1", READ_ORDERS, key=who.public))  # a re-delivery
    login = who.login(again)
    assert again.result["created"] is False and users(mariadb_server).count(login["username"]) == 1
    session = my_login(login)
    with session.cursor() as cur:
        cur.execute("SELECT item FROM shop.orders")
        assert cur.fetchall() == (("book",),)
        for forbidden in (
            "SELECT * FROM shop.payroll",
            "SELECT * FROM hr.people",
            "INSERT INTO shop.orders VALUES (2, 'x')",
        ):
            with pytest.raises(pymysql.err.OperationalError, match="denied"):
                cur.execute(forbidden)
    with mariadb_server.admin() as admin, admin.cursor() as cur:
        cur.execute("SELECT record FROM access_connector.grants WHERE user_name = %s", (login["username"],))
        record = cur.fetchone()
    assert record is not None and '"grant_id":"m-read-1"' in record[0]

    revoked = run(d, revoke_job("mysql", settings, "m-read-1", READ_ORDERS))
    assert revoked.outcome == "succeeded" and revoked.result["dropped"] and revoked.result["sessions_ended"] == 1
    with pytest.raises(pymysql.err.OperationalError), session.cursor() as cur:
        cur.execute("SELECT 1")  # killed
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        my_login(login)
    assert login["username"] not in users(mariadb_server)
    assert run(d, revoke_job("mysql", settings, "m-read-1", READ_ORDERS)).result["existed"] is False
    text = log_stream.getvalue() + json.dumps([outcome.result, again.result, revoked.result])
    assert login["password"] not in text and MY_CONNECTOR_PASSWORD not in text


def test_roles_are_judged_and_granted(sandbox: Sandbox, mariadb_server: MariaDbServer) -> None:
    d, who = dispatcher(), requester()
    settings = my_settings(mariadb_server)
    refused = run(d, grant_job("mysql", settings, "m-super", {"database": "shop", "role": "superish"}, key=who.public))
    assert refused.error is not None and refused.error.code == "GUARDRAIL_DENIED"
    target = {"database": "shop", "role": "reader"}
    outcome = run(d, grant_job("mysql", settings, "m-role", target, key=who.public))
    assert outcome.effect is not None and outcome.effect["level"] == "read"
    with my_login(who.login(outcome)) as session, session.cursor() as cur:
        cur.execute("SELECT count(*) FROM shop.payroll")  # the role's default is active at login
        assert cur.fetchone() == (1,)
        with pytest.raises(pymysql.err.OperationalError, match="denied"):
            cur.execute("SELECT * FROM hr.people")
    assert run(d, revoke_job("mysql", settings, "m-role", target)).result["dropped"]


def test_iam_user_needs_the_rds_plugin(sandbox: Sandbox, mariadb_server: MariaDbServer) -> None:
    d = dispatcher()
    settings = my_settings(mariadb_server, user_auth_type="iam-auth")
    outcome = run(d, grant_job("mysql", settings, "m-iam", READ_ORDERS))
    assert outcome.error is not None and outcome.error.code == "PRECONDITION_FAILED"
    assert "AWSAuthenticationPlugin" in outcome.error.message
    # nothing half-made: no user, and its record (written first) taken back
    with mariadb_server.admin() as admin, admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM access_connector.grants")
        assert cur.fetchone() == (0,)


def test_expiry_scan_finds_expired_rows_and_members_without_a_row(
    sandbox: Sandbox, mariadb_server: MariaDbServer
) -> None:
    d, who = dispatcher(), requester()
    settings = my_settings(mariadb_server)
    login = who.login(run(d, grant_job("mysql", settings, "m-scan", READ_ORDERS, key=who.public)))
    integration = d._integration(grant_job("mysql", settings, "x", READ_ORDERS))
    kind = build_registry(["mysql"]).provisioner(integration, "database")
    assert kind is not None
    now = int(time.time())
    assert not list(kind.expired(ExpiryScan(now=now, full=True)))  # type: ignore[attr-defined]
    with mariadb_server.admin() as admin, admin.cursor() as cur:  # the row is lost: the member alone is found
        cur.execute("DELETE FROM access_connector.grants")
    found = list(kind.expired(ExpiryScan(now=now, full=True)))  # type: ignore[attr-defined]
    assert len(found) == 1 and found[0].problem and found[0].request is not None
    assert found[0].request.target["user"] == login["username"]
    revoked = run(d, revoke_job("mysql", settings, found[0].request.grant_id, dict(found[0].request.target)))
    assert revoked.result["dropped"], revoked
    with pytest.raises(pymysql.err.OperationalError):
        my_login(login)


def test_the_connectors_records_are_never_granted(sandbox: Sandbox, mariadb_server: MariaDbServer) -> None:
    """A user who could write its own record could move its expiry: its database is never granted, and a role
    reaching it counts as admin level."""
    d, who = dispatcher(), requester()
    settings = my_settings(mariadb_server)
    run(d, grant_job("mysql", settings, "m-seed", READ_ORDERS, key=who.public))  # the records' table exists
    direct = run(
        d,
        grant_job("mysql", settings, "m-own", {"database": "access_connector", "level": "read-write"}, key=who.public),
    )
    assert direct.error is not None and direct.error.code == "INVALID_JOB" and "target.database" in direct.error.message
    with mariadb_server.admin() as admin, admin.cursor() as cur:
        cur.execute("CREATE ROLE IF NOT EXISTS sneaky")
        cur.execute("GRANT UPDATE ON access_connector.* TO sneaky")
        cur.execute("GRANT sneaky TO 'connector'@'%' WITH ADMIN OPTION")
    via_role = run(d, grant_job("mysql", settings, "m-sneaky", {"database": "shop", "role": "sneaky"}, key=who.public))
    assert via_role.error is not None and via_role.error.code == "GUARDRAIL_DENIED", via_role.error
    assert run(d, revoke_job("mysql", settings, "m-seed", READ_ORDERS)).result["dropped"]
