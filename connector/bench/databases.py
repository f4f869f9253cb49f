"""Benchmark: discovery of a tagged RDS instance whose database holds 1,000 tables (full; 100 in smoke), and
the overhead of a grant and a revoke on it beyond their SQL round trips and AWS calls.

A local PostgreSQL stands behind the instance's endpoint (CONNECTOR_DATABASE_ENDPOINTS, as in the tests); the
organisation sync runs in this process through the dispatcher against the sandbox (moto over HTTP), with only
the rds_instance resource type. Reported: the whole sync's wall time (organisation walk, role chain, every
account and region: cold clients each time), the database's own scope task warm (DescribeDBInstances, tag
check, GetSecretValue, the engine's inventory, item placement), the engine's inventory of the same database
on its own (the SQL and the driver: what any tool listing it pays), and the difference between the last two,
which is what discovery adds. Each is the median of `repeats` runs.

Grants: `grants` read-only grants and their revokes on that instance (`rds_database`) through the dispatcher,
one at a time after a cold one; each is timed whole, and split into the time psycopg waited on PostgreSQL
(every round trip, connecting included), the time the sandbox spent serving AWS calls (DescribeDBInstances;
the secret is cached), and the rest: the connector's own overhead.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.bench.procs import BenchError
from connector.bench.stats import summary_ms

LOGIN = ("apono_connector", "bench-connector-" + os.urandom(6).hex())


@dataclass(frozen=True)
class DbSize:
    tables: int
    repeats: int
    grants: int


SIZES = {"smoke": DbSize(tables=100, repeats=2, grants=3), "full": DbSize(tables=1000, repeats=5, grants=30)}


class Clocks:
    """Time spent waiting on PostgreSQL (every round trip of psycopg's: psycopg.Connection.wait, and connecting)
    and inside the sandbox serving AWS calls (a WSGI layer in front of it), counted per call."""

    def __init__(self) -> None:
        self.sql = self.aws = 0.0
        self.sql_calls = self.aws_calls = 0
        self._undo: list[Any] = []

    def install(self, sandbox: Any) -> None:
        import psycopg

        clocks = self
        wait, connect = psycopg.Connection.wait, psycopg.Connection.connect

        def timed_wait(conn: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return wait(conn, *args, **kwargs)
            finally:
                clocks.sql += time.perf_counter() - started
                clocks.sql_calls += 1

        def timed_connect(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return connect(*args, **kwargs)
            finally:
                clocks.sql += time.perf_counter() - started
                clocks.sql_calls += 1

        module_connect = psycopg.connect  # an alias made at import: patched on its own
        psycopg.Connection.wait = timed_wait  # type: ignore[method-assign,assignment]
        psycopg.Connection.connect = timed_connect  # type: ignore[method-assign]
        psycopg.connect = timed_connect
        self._undo = [
            (psycopg.Connection, "wait", wait),
            (psycopg.Connection, "connect", connect),
            (psycopg, "connect", module_connect),
        ]

        def middleware(app: Any) -> Any:
            def timed(environ: Any, start_response: Any) -> Any:
                started = time.perf_counter()
                try:
                    return list(app(environ, start_response))
                finally:
                    clocks.aws += time.perf_counter() - started
                    clocks.aws_calls += 1

            return timed

        sandbox.wrap(middleware)

    def uninstall(self) -> None:
        for owner, name, original in self._undo:
            setattr(owner, name, original)

    def reading(self) -> tuple[float, float, int, int]:
        return self.sql, self.aws, self.sql_calls, self.aws_calls


def _grants(size: DbSize, sb: Any, info: Any, settings: Any, services: Any) -> dict[str, Any]:
    """Grant and revoke `size.grants` times on the discovered instance through the dispatcher (the default
    policy applies), each timed whole and split into SQL round trips, AWS calls and the rest (the connector)."""
    from datetime import UTC, datetime, timedelta

    from google.protobuf import struct_pb2
    from nacl.public import PrivateKey

    from connector.integrations.base import JobContext
    from connector.jobs.dispatcher import Dispatcher
    from connector.jobs.registry import build_registry
    from connector.v1 import connector_pb2 as pb

    db = info.databases[0]
    target = struct_pb2.Struct()
    target.update(
        {
            "resource_type": "rds_database", "account_id": db.account, "region": db.region, "instance_id": db.identifier,
            "database": "orders", "schema": "sales", "level": "read-only",
        }
    )  # fmt: skip
    key = bytes(PrivateKey.generate().public_key)
    dispatcher = Dispatcher(build_registry(["aws_organization"]), services)
    clocks = Clocks()
    clocks.install(sb)
    rows: dict[str, list[tuple[float, float, float, int, int]]] = {"grant": [], "revoke": []}
    try:
        for n in range(size.grants + 1):  # the first one (role chain, clients, secret) is left out as cold
            for action in ("grant", "revoke"):
                job = pb.Job(
                    id=f"bench-{action}-{n}", attempt=1,
                    integration=pb.Integration(id="org", type="aws_organization", settings=settings),
                )  # fmt: skip
                if action == "grant":
                    job.grant.CopyFrom(pb.GrantJob(grant_id=f"bench-{n}", principal="bench", target=target,
                                                   requester_public_key=key))  # fmt: skip
                    job.grant.expires_at.FromDatetime((datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None))
                else:
                    job.revoke.CopyFrom(pb.RevokeJob(grant_id=f"bench-{n}", principal="bench", target=target))
                sql0, aws0, sqln0, awsn0 = clocks.reading()
                started = time.perf_counter()
                outcome = dispatcher.execute(job, JobContext(job.id, 1, info.connector_id, "org"))
                wall = time.perf_counter() - started
                if outcome.outcome != "succeeded":
                    raise BenchError(f"database {action} failed: {outcome.error}")
                sql1, aws1, sqln1, awsn1 = clocks.reading()
                if n:
                    rows[action].append((wall, sql1 - sql0, aws1 - aws0, sqln1 - sqln0, awsn1 - awsn0))
    finally:
        clocks.uninstall()
    out: dict[str, Any] = {}
    for action, measured in rows.items():
        out[action] = {
            "wall_ms": summary_ms([r[0] for r in measured]),
            "sql_ms": summary_ms([r[1] for r in measured]),
            "aws_ms": summary_ms([r[2] for r in measured]),
            "overhead_ms": summary_ms([r[0] - r[1] - r[2] for r in measured]),
            "sql_round_trips": statistics.median(r[3] for r in measured),
            "aws_calls": statistics.median(r[4] for r in measured),
        }
    return out


def run(size_name: str, workdir: Path) -> dict[str, Any]:
    from google.protobuf import struct_pb2

    from connector.integrations.aws_organization.database_scope import DatabaseScope
    from connector.integrations.aws_organization.integration import AwsOrganizationIntegration
    from connector.integrations.base import InventoryItem, JobContext, Services
    from connector.integrations.databases.connect import engine_for
    from connector.integrations.databases.secrets import DbCredentials
    from connector.integrations.databases.settings import DatabaseSettings
    from connector.integrations.discovered_databases import DatabaseContents
    from connector.integrations.endpoints import EndpointMap
    from connector.jobs.dispatcher import Dispatcher
    from connector.jobs.registry import build_registry
    from connector.sandbox import Sandbox, SeedDatabase, SeedSpec
    from connector.sandbox.postgres import LocalPostgres, NoPostgres
    from connector.v1 import connector_pb2 as pb

    size = SIZES[size_name]
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        pg = LocalPostgres.start()
    except NoPostgres as exc:
        raise BenchError(str(exc)) from None
    try:
        with pg.admin() as conn:
            conn.execute(f"CREATE ROLE {LOGIN[0]} LOGIN CREATEROLE PASSWORD '{LOGIN[1]}'")
            conn.execute(f"GRANT pg_signal_backend TO {LOGIN[0]}")
            conn.execute(f"CREATE DATABASE orders OWNER {LOGIN[0]}")
        with pg.admin("orders") as conn:
            conn.execute(f"SET ROLE {LOGIN[0]}")  # the connector owns what it grants, as on RDS
            conn.execute("CREATE SCHEMA sales")
            with conn.transaction():
                for i in range(size.tables):
                    conn.execute(f"CREATE TABLE sales.t{i:04d} (id int)")
        spec = SeedSpec(
            accounts=4,
            regions=("us-east-1",),
            cluster_accounts=0,
            account_without_member_role=None,
            identity_center=False,
            databases=(SeedDatabase("orders", credentials=LOGIN, db_name="orders", connect_to=(pg.host, pg.port)),),
        )
        previous = {k: os.environ.get(k) for k in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE")}
        sb = Sandbox.start(seed=spec)
        env_before = {k: os.environ.get(k) for k in sb.env()}
        os.environ.update(sb.env())
        os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        os.environ.pop("AWS_PROFILE", None)
        try:
            info = sb.seed_info
            db = info.databases[0]
            settings = struct_pb2.Struct()
            settings.update(
                {
                    "management_account_role_arn": info.management_role_arn,
                    "member_role_name": info.member_role_name,
                    "regions": ["us-east-1"],
                    "resource_types": ["rds_instance"],
                    "database_ssl_mode": "disable",  # loopback to a throwaway server
                }
            )
            syncs, items_seen = [], 0
            for n in range(size.repeats):
                items: list[InventoryItem] = []
                job = pb.Job(
                    id=f"bench-db-{n}",
                    attempt=1,
                    integration=pb.Integration(id="org", type="aws_organization", settings=settings),
                    sync=pb.SyncJob(resource_types=["rds_instance"]),
                )
                ctx = JobContext(job.id, 1, info.connector_id, "org", emit=items.append)
                services = Services(info.connector_id, database_endpoints=EndpointMap.parse(info.database_endpoints))
                started = time.perf_counter()
                outcome = Dispatcher(build_registry(["aws_organization"]), services).execute(job, ctx)
                syncs.append(time.perf_counter() - started)
                if outcome.outcome != "succeeded":
                    raise BenchError(f"database sync failed: {outcome.error}")
                items_seen = sum(1 for i in items if i.type == "postgresql.table")
                if items_seen != size.tables:
                    errors = [dict(i.attributes) for i in items if i.type == "error"][:3]
                    raise BenchError(f"expected {size.tables} tables in the inventory, saw {items_seen}: {errors}")
            # The database's own scope task (one account and region), warm: credentials and clients cached.
            integration = AwsOrganizationIntegration("org", dict(settings), services)
            session = integration.member(db.account)
            scope = DatabaseScope(
                info.connector_id,
                lambda service, region: integration.aws.client(session, service, region),
                services.database_endpoints.resolve,
                frozenset({"rds_instance"}),
                DatabaseContents(integration),
            )
            scopes = []
            for _ in range(size.repeats):
                started = time.perf_counter()
                count = sum(1 for i in scope.items(db.account, db.region) if i.type == "postgresql.table")
                scopes.append(time.perf_counter() - started)
                if count != size.tables:
                    raise BenchError(f"the database scope saw {count} tables, not {size.tables}")
            grants = _grants(size, sb, info, settings, services)
            engine_settings = DatabaseSettings.parse(
                "postgresql",
                {"host": db.address, "port": db.port, "database": "orders", "ssl_mode": "disable", "secret": "x"},
            )
            login = DbCredentials(*LOGIN)
            direct = []
            for _ in range(size.repeats):
                engine = engine_for(engine_settings, lambda: login, (pg.host, pg.port))
                started = time.perf_counter()
                count = sum(1 for i in engine.inventory(lambda: None, 1_000_000) if i.type == "postgresql.table")
                direct.append(time.perf_counter() - started)
                assert count == size.tables
        finally:
            sb.stop()
            for k, v in {**env_before, **previous}.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        pg.stop()
    sync_ms, direct_ms = statistics.median(syncs) * 1000, statistics.median(direct) * 1000
    scope_ms = statistics.median(scopes) * 1000
    return {
        "size": size_name,
        "tables": size.tables,
        "repeats": size.repeats,
        "tables_in_inventory": items_seen,
        "sync_ms_median": round(sync_ms, 1),
        "database_scope_ms_median": round(scope_ms, 1),
        "engine_inventory_ms_median": round(direct_ms, 1),
        "discovery_overhead_ms": round(scope_ms - direct_ms, 1),
        "grants": size.grants,
        "grant": grants["grant"],
        "revoke": grants["revoke"],
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
