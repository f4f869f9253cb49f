"""PostgreSQL grants end to end on a real server, through the Dispatcher on real proto Jobs: the requester
opens the sealed login, reads exactly what was granted and nothing else; revoke ends the live session and
the login; every step repeated changes nothing; guardrails judge the real level."""

from __future__ import annotations

import io
import json
import time

import psycopg
import pytest

from connector.integrations.capabilities import ExpiryScan
from connector.jobs.guardrails import Guardrails
from connector.jobs.registry import build_registry
from connector.sandbox import Sandbox
from tests.databases.conftest import (
    PG_CONNECTOR_PASSWORD,
    dispatcher,
    grant_job,
    pg_login,
    pg_settings,
    requester,
    revoke_job,
    run,
)
from tests.databases.servers import MariaDbServer, PostgresServer

READ_SALES = {"database": "app", "schema": "sales", "level": "read-only"}


def users(server: PostgresServer) -> list[str]:
    with server.admin() as conn:
        return [r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'ac\\_%' ORDER BY 1")]


def test_grant_read_exactly_what_was_granted_then_revoke_ends_the_session(
    sandbox: Sandbox, pg_server: PostgresServer, log_stream: io.StringIO
) -> None:
    d, who = dispatcher(), requester()
    settings = pg_settings(pg_server)
    outcome = run(d, grant_job("postgresql", settings, "g-read-1", READ_SALES, key=who.public))
    login = who.login(outcome)
    assert outcome.effect is not None and outcome.effect["level"] == "read"
    assert outcome.effect["resources"] == 1  # app/sales
    user = login["username"]
    assert user.startswith("ac_") and user in users(pg_server)
    session = pg_login(login, pg_server)
    assert session.execute("SELECT item FROM sales.orders").fetchall() == [("book",)]
    for forbidden in (
        "SELECT * FROM public.payroll",
        "INSERT INTO sales.orders VALUES (2, 'x')",
        "CREATE TABLE sales.x(i int)",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute(forbidden)
    with pg_server.admin() as admin:  # VALID UNTIL carries the grant's expiry: the server's own end of the login
        until = admin.execute("SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
    assert until is not None and until[0] is not None

    revoked = run(d, revoke_job("postgresql", settings, "g-read-1", READ_SALES))
    assert revoked.outcome == "succeeded", revoked
    assert revoked.result["dropped"] and revoked.result["sessions_ended"] == 1
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")  # the live session is gone
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg_login(login, pg_server)
    assert user not in users(pg_server)
    again = run(d, revoke_job("postgresql", settings, "g-read-1", READ_SALES))
    assert again.outcome == "succeeded" and again.result["existed"] is False

    # No secret anywhere: not the connector's password, not the requester's.
    text = log_stream.getvalue() + json.dumps([outcome.result, revoked.result, outcome.effect])
    assert login["password"] not in text and PG_CONNECTOR_PASSWORD not in text


def test_redelivered_grant_replaces_the_password_and_keeps_one_user(
    sandbox: Sandbox, pg_server: PostgresServer
) -> None:
    d, who = dispatcher(), requester()
    settings = pg_settings(pg_server)
    target = {"database": "app", "schema": "sales", "table": "orders", "level": "read-write"}
    first = who.login(run(d, grant_job("postgresql", settings, "g-twice", target, key=who.public)))
    second_outcome = run(d, grant_job("postgresql", settings, "g-twice", target, key=who.public))
    second = who.login(second_outcome)
    assert second_outcome.result["created"] is False
    assert first["username"] == second["username"] and first["password"] != second["password"]
    with pytest.raises(psycopg.OperationalError):
        pg_login(first, pg_server)  # the undelivered first password no longer works
    with pg_login(second, pg_server) as session:
        session.execute("INSERT INTO sales.orders VALUES (7, 'pen')")
        session.execute("DELETE FROM sales.orders WHERE id = 7")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute("SELECT * FROM sales.refunds")  # table-level: only orders
    assert run(d, revoke_job("postgresql", settings, "g-twice", target)).outcome == "succeeded"


def test_admin_level_is_refused_by_the_default_policy_and_nothing_is_made(
    sandbox: Sandbox, pg_server: PostgresServer
) -> None:
    d, who = dispatcher(), requester()
    before = users(pg_server)
    for target in (
        {"database": "app", "level": "admin"},
        {"database": "app", "role": "builders"},  # CREATEDB: administrator attributes
        {"database": "app", "role": "connector"},  # owns everything: full control
    ):
        outcome = run(d, grant_job("postgresql", pg_settings(pg_server), "g-admin", target, key=who.public))
        assert outcome.outcome == "failed" and outcome.error is not None
        assert outcome.error.code == "GUARDRAIL_DENIED", outcome.error
    assert users(pg_server) == before


def test_existing_role_is_judged_by_what_it_can_do(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    d, who = dispatcher(), requester()
    settings = pg_settings(pg_server)
    target = {"database": "app", "role": "reporting"}
    outcome = run(d, grant_job("postgresql", settings, "g-role", target, key=who.public))
    assert outcome.effect is not None and outcome.effect["level"] == "read"
    with pg_login(who.login(outcome), pg_server) as session:
        assert session.execute("SELECT count(*) FROM sales.refunds").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute("SELECT * FROM sales.orders")
    assert run(d, revoke_job("postgresql", settings, "g-role", target)).result["dropped"]


def test_user_owning_objects_is_deactivated_then_cleaned_up(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    d, who = dispatcher(Guardrails(allow_cluster_admin=True)), requester()
    settings = pg_settings(pg_server, user_cleanup_days=0)
    target = {"database": "app", "schema": "sales", "level": "admin"}
    login = who.login(run(d, grant_job("postgresql", settings, "g-owner", target, key=who.public)))
    with pg_login(login, pg_server) as session:
        session.execute("CREATE TABLE sales.made_by_requester(i int)")
    revoked = run(d, revoke_job("postgresql", settings, "g-owner", target))
    assert revoked.result["deactivated"] and "owns" in revoked.result["reason"]
    with pytest.raises(psycopg.OperationalError):
        pg_login(login, pg_server)  # deactivated: never able to log in
    with pg_server.admin() as admin:
        row = admin.execute(
            "SELECT rolcanlogin, (SELECT count(*) FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
            "WHERE a.member = r.oid AND g.rolname <> 'access_connector_managed') FROM pg_roles r WHERE rolname = %s",
            (login["username"],),
        ).fetchone()
    assert row == (False, 0)
    # User cleanup after 0 days: the expiry loop's scan finds it and the revoke hands its objects over.
    integration = d._integration(grant_job("postgresql", settings, "g-x", target))
    kind = build_registry(["postgresql"]).provisioner(integration, "database")
    found = [g for g in kind.expired(ExpiryScan(now=int(time.time()) + 1, full=True)) if login["username"] in g.place]  # type: ignore[union-attr]
    assert len(found) == 1 and found[0].request is not None
    assert run(d, revoke_job("postgresql", settings, found[0].request.grant_id, dict(found[0].request.target))).result[
        "dropped"
    ]
    with pg_server.admin("app") as admin:
        owner = admin.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_requester'").fetchone()
    assert owner == ("connector",) and login["username"] not in users(pg_server)


def test_iam_users_get_rds_iam_and_the_connect_arn(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    """On RDS the user would log in with an IAM token; a local server cannot check one, so this proves the
    database side (GRANT rds_iam, no password) and the ARN handed to the IAM kind, not the token login."""
    d = dispatcher()
    settings = pg_settings(
        pg_server, user_auth_type="iam-auth", account_id="123456789012", resource_id="db-ABCDEFGHIJKL"
    )
    outcome = run(d, grant_job("postgresql", settings, "g-iam", READ_SALES))  # no requester key: no password
    assert outcome.outcome == "succeeded", outcome
    iam = outcome.result["iam"]
    user = iam["db_user"]
    assert iam["rds_db_connect_resource"] == f"arn:aws:rds-db:eu-west-1:123456789012:dbuser:db-ABCDEFGHIJKL/{user}"
    assert "credentials" not in outcome.result
    with pg_server.admin() as admin:
        row = admin.execute(
            "SELECT rolpassword IS NULL, pg_has_role(rolname, 'rds_iam', 'MEMBER') FROM pg_authid WHERE rolname = %s",
            (user,),
        ).fetchone()
    assert row == (True, True)
    assert run(d, revoke_job("postgresql", settings, "g-iam", READ_SALES)).result["dropped"]


def test_expired_and_unreadable_records_are_found_by_the_scan(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    d, who = dispatcher(), requester()
    settings = pg_settings(pg_server)
    login = who.login(run(d, grant_job("postgresql", settings, "g-scan", READ_SALES, key=who.public)))
    integration = d._integration(grant_job("postgresql", settings, "g-x", READ_SALES))
    kind = build_registry(["postgresql"]).provisioner(integration, "database")
    assert kind is not None
    now = int(time.time())
    assert not [g for g in kind.expired(ExpiryScan(now=now, full=True)) if login["username"] in g.place]  # type: ignore[attr-defined]
    later = [g for g in kind.expired(ExpiryScan(now=now + 7200, full=True)) if login["username"] in g.place]  # type: ignore[attr-defined]
    assert len(later) == 1 and later[0].request is not None and later[0].request.grant_id == "g-scan"
    with pg_server.admin() as admin:  # someone garbles the record: it counts as expired
        admin.execute(f"COMMENT ON ROLE {login['username']} IS 'access-connector:garbage'")
    garbled = [g for g in kind.expired(ExpiryScan(now=now, full=True)) if login["username"] in g.place]  # type: ignore[attr-defined]
    assert len(garbled) == 1 and garbled[0].problem and garbled[0].request is not None
    assert kind.revoke(garbled[0].request, _ctx())["dropped"]  # type: ignore[attr-defined]
    with pytest.raises(psycopg.OperationalError):
        pg_login(login, pg_server)


def _ctx():  # type: ignore[no-untyped-def]
    from connector.integrations.base import JobContext

    return JobContext(job_id="t", attempt=1, connector_id="c", integration_id="db-1")


def test_an_older_delivery_never_replaces_a_newer_ones_password(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    d, who = dispatcher(), requester()
    settings = pg_settings(pg_server)
    newer = grant_job("postgresql", settings, "g-attempts", READ_SALES, key=who.public)
    newer.attempt = 2
    login = who.login(run(d, newer))
    older = grant_job("postgresql", settings, "g-attempts", READ_SALES, key=who.public)  # attempt 1, cut off before
    late = run(d, older)
    assert late.error is not None and late.error.code == "CONFLICT" and not late.error.retryable
    with pg_login(login, pg_server) as session:  # the newer delivery's password still works
        assert session.execute("SELECT count(*) FROM sales.orders").fetchone() is not None
    assert run(d, revoke_job("postgresql", settings, "g-attempts", READ_SALES)).result["dropped"]


def test_the_marker_role_and_the_connectors_users_are_never_handed_out(
    sandbox: Sandbox, pg_server: PostgresServer
) -> None:
    d, who = dispatcher(), requester()
    settings = pg_settings(pg_server)
    other = who.login(run(d, grant_job("postgresql", settings, "g-other", READ_SALES, key=who.public)))
    for role in ("access_connector_managed", other["username"]):
        outcome = run(
            d, grant_job("postgresql", settings, "g-steal", {"database": "app", "role": role}, key=who.public)
        )
        assert outcome.error is not None and outcome.error.code == "INVALID_JOB", (role, outcome.error)
    smuggled = run(
        d, grant_job("postgresql", settings, "g-steal", READ_SALES | {"user": other["username"]}, key=who.public)
    )
    assert smuggled.error is not None and "target.user" in smuggled.error.message
    assert run(d, revoke_job("postgresql", settings, "g-other", READ_SALES)).result["dropped"]


def test_credential_rotation_ends_the_password_first(
    sandbox: Sandbox, pg_server: PostgresServer, mariadb_server: MariaDbServer
) -> None:
    """credential_rotation_days: a grant outliving it gets a login that ends at the rotation date (PostgreSQL
    VALID UNTIL) or a password that must be replaced (MySQL / MariaDB PASSWORD EXPIRE INTERVAL); a reset (a new
    delivery) starts it again."""
    from datetime import UTC, datetime, timedelta

    from tests.databases.conftest import expires, my_settings

    d, who = dispatcher(Guardrails(max_duration="30d")), requester()
    settings = pg_settings(pg_server, credential_rotation_days=1)
    login = who.login(
        run(
            d,
            grant_job("postgresql", settings, "g-rotate", READ_SALES, key=who.public, expires_at=expires(3 * 24 * 60)),
        )
    )
    with pg_server.admin() as admin:
        row = admin.execute("SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", (login["username"],)).fetchone()
    assert row is not None and abs(row[0] - (datetime.now(UTC) + timedelta(days=1))) < timedelta(minutes=5)
    assert run(d, revoke_job("postgresql", settings, "g-rotate", READ_SALES)).result["dropped"]

    my = my_settings(mariadb_server, credential_rotation_days=2)
    target = {"database": "shop", "table": "orders", "level": "read-only"}
    login = who.login(run(d, grant_job("mysql", my, "m-rotate", target, key=who.public, expires_at=expires(60))))
    with mariadb_server.admin() as admin, admin.cursor() as cur:
        cur.execute(f"SHOW CREATE USER '{login['username']}'@'%'")
        row = cur.fetchone()
    assert row is not None and "PASSWORD EXPIRE INTERVAL 2 DAY" in row[0]
    assert run(d, revoke_job("mysql", my, "m-rotate", target)).result["dropped"]


def test_privileges_given_elsewhere_do_not_keep_the_user_alive(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    """Someone grants the user more in another database: DROP ROLE would fail there; the revoke drops those
    privileges where they are (the user owns nothing) and the user goes."""
    d, who = dispatcher(), requester()
    settings = pg_settings(pg_server)
    login = who.login(run(d, grant_job("postgresql", settings, "g-elsewhere", READ_SALES, key=who.public)))
    with pg_server.admin("dev") as admin:
        admin.execute(f'GRANT CREATE ON SCHEMA public TO "{login["username"]}"')
    revoked = run(d, revoke_job("postgresql", settings, "g-elsewhere", READ_SALES))
    assert revoked.result["dropped"], revoked
    with pytest.raises(psycopg.OperationalError):
        pg_login(login, pg_server)
