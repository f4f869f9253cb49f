"""Benchmark: discovery of a tagged RDS instance whose database holds 1,000 tables (full; 100 in smoke).

A local PostgreSQL stands behind the instance's endpoint (CONNECTOR_DATABASE_ENDPOINTS, as in the tests); the
organisation sync runs in this process through the dispatcher against the sandbox (moto over HTTP), with only
the rds_instance resource type. Reported: the whole sync's wall time (organisation walk, role chain, every
account and region: cold clients each time), the database's own scope task warm (DescribeDBInstances, tag
check, GetSecretValue, the engine's inventory, item placement), the engine's inventory of the same database
on its own (the SQL and the driver: what any tool listing it pays), and the difference between the last two,
which is what discovery adds. Each is the median of `repeats` runs.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.bench.procs import BenchError

LOGIN = ("apono_connector", "bench-connector-" + os.urandom(6).hex())


@dataclass(frozen=True)
class DbSize:
    tables: int
    repeats: int


SIZES = {"smoke": DbSize(tables=100, repeats=2), "full": DbSize(tables=1000, repeats=5)}


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
            conn.execute(f"CREATE DATABASE orders OWNER {LOGIN[0]}")
        with pg.admin("orders") as conn:
            conn.execute(f"CREATE SCHEMA sales AUTHORIZATION {LOGIN[0]}")
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
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
