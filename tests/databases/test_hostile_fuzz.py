"""Fuzzed database jobs through the Dispatcher against the real PostgreSQL and MariaDB servers: whatever a
job carries, the outcome is a typed result (never a crash or an INTERNAL traceback), the planted secret is in
no error, and no database user exists that the connector did not make for a grant that succeeded."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.sandbox import Sandbox
from tests.databases.conftest import dispatcher, grant_job, my_settings, pg_settings, requester, revoke_job, run
from tests.databases.servers import MariaDbServer, PostgresServer

PLANTED = "db-PLANTED-5e1f0c9a7b"
NAMES = st.one_of(
    st.sampled_from(
        ["app", "sales", "orders", "shop", "reporting", "reader", "access_connector", "pg_catalog", "mysql"]
    ),
    st.sampled_from(['x"; DROP ROLE connector; --', "a`b", "o'r", "\x00", "\u202e", "x" * 70, "*", "%", "_", "ac_1"]),
    st.text(max_size=12),
    st.integers(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=2),
)
TARGETS = st.fixed_dictionaries(
    {},
    optional={
        "resource_type": st.one_of(st.just("database"), NAMES),
        "database": NAMES,
        "schema": NAMES,
        "table": NAMES,
        "role": NAMES,
        "level": st.one_of(st.sampled_from(["read-only", "read-write", "admin", "READ-ONLY", ""]), NAMES),
        "credentials": st.one_of(st.just("reset"), NAMES),
        "user": NAMES,
        PLANTED: NAMES,
    },
)
SETTING_CHANGES = st.dictionaries(
    st.sampled_from(["database", "marker_role", "ssl_mode", "auth_type", "user_auth_type", "secret", "port", PLANTED]),
    st.one_of(NAMES, st.just(PLANTED)),
    max_size=2,
)


def _users(pg: PostgresServer, my: MariaDbServer) -> set[str]:
    with pg.admin() as conn:
        found = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%'")}
    with my.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT User FROM mysql.user")
        found |= {r[0] for r in cur.fetchall()}
    return found


def test_fuzzed_database_jobs_end_typed_and_leave_nothing(
    sandbox: Sandbox, pg_server: PostgresServer, mariadb_server: MariaDbServer
) -> None:
    d, who = dispatcher(), requester()
    before = _users(pg_server, mariadb_server)
    granted: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = []

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(
        engine=st.sampled_from(["postgresql", "mysql", "redshift"]),
        target=TARGETS,
        changes=SETTING_CHANGES,
        grant=st.booleans(),
        grant_id=st.one_of(st.just("fz-1"), st.text(min_size=1, max_size=20)),
    )
    def one(engine: str, target: dict[str, Any], changes: dict[str, Any], grant: bool, grant_id: str) -> None:
        base = my_settings(mariadb_server) if engine == "mysql" else pg_settings(pg_server)
        config = base | changes
        try:
            job = (
                grant_job(engine, config, grant_id, target, key=who.public)
                if grant
                else revoke_job(engine, config, grant_id, target)
            )
        except (TypeError, ValueError):
            return  # not expressible as a protobuf Struct: no job at all
        outcome = run(d, job)
        if outcome.outcome == "succeeded":
            if grant:
                granted.append((engine, config, grant_id, target))
            return
        assert outcome.error is not None
        assert outcome.error.code != "INTERNAL", outcome.error
        assert (
            PLANTED not in outcome.error.message
            or "unknown" in outcome.error.message
            or "setting" in outcome.error.message
        )
        assert "Traceback" not in outcome.error.message

    one()
    for engine, config, grant_id, target in granted:  # take back what the fuzzer was allowed to get
        assert run(d, revoke_job(engine, config, grant_id, target)).outcome == "succeeded"
    assert _users(pg_server, mariadb_server) <= before | {"access_connector_managed"}  # the marker role may be new
