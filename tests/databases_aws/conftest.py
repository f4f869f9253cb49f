"""One small seeded sandbox with tagged (and mis-tagged) RDS instances, an Aurora cluster, a Redshift cluster and
their secrets, shared by this package (moto's state is process-global)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import struct_pb2

from connector.integrations.base import InventoryItem, JobContext, Services
from connector.integrations.endpoints import EndpointMap
from connector.jobs.dispatcher import Dispatcher, JobOutcome
from connector.jobs.registry import build_registry
from connector.sandbox import Sandbox, SeedDatabase, SeedSpec
from connector.v1 import connector_pb2 as pb
from tests.databases.servers import PostgresServer
from tests.sandbox_env import sandbox_as_aws

LOGIN = ("apono_connector", "connector-Passw0rd")
TABLES = 5  # in the orders database: sales.t0..t4


def databases(pg: tuple[str, int]) -> tuple[SeedDatabase, ...]:
    return (
        # managed, user-password, secret tagged for the connector, endpoint mapped to the local PostgreSQL
        SeedDatabase("orders", credentials=LOGIN, port=15432, db_name="orders", connect_to=pg),
        # not tagged for this connector: listed, never touched
        SeedDatabase("billing", tagged=False, auth_type=None, engine="mysql", port=3306, db_name="billing"),
        SeedDatabase("no-auth-tag", auth_type=None, credentials=LOGIN),
        SeedDatabase("no-secret-tag", credentials=None),
        SeedDatabase("bad-auth", auth_type="password", credentials=LOGIN),
        SeedDatabase("secret-untagged", credentials=LOGIN, secret_tagged=False),
        SeedDatabase("iam-off", auth_type="iam-auth", iam_auth=False),
        # managed, IAM auth, endpoint not mapped (moto's address resolves nowhere): a network error item
        SeedDatabase("iam-on", auth_type="iam-auth", iam_auth=True, engine="mysql", port=3306, region="eu-west-1"),
        SeedDatabase(
            "aurora-app",
            kind="rds_cluster",
            engine="aurora-postgresql",
            credentials=LOGIN,
            port=15433,
            db_name="postgres",
            account_index=1,
            connect_to=pg,
        ),
        SeedDatabase(
            "warehouse",
            kind="redshift_cluster",
            engine="redshift",
            credentials=LOGIN,
            port=15439,
            db_name="dev",
            account_index=1,
            region="eu-west-1",
        ),
    )


def spec(pg: tuple[str, int]) -> SeedSpec:
    return SeedSpec(
        accounts=5,
        regions=("us-east-1", "eu-west-1"),
        cluster_accounts=1,
        account_without_member_role=None,
        identity_center=False,
        databases=databases(pg),
    )


DB_TYPES = ("rds_instance", "rds_cluster", "redshift_cluster")


@pytest.fixture(scope="package")
def pg() -> Iterator[PostgresServer]:
    """PostgreSQL with the connector's user (CREATEROLE, as the docs ask) and an `orders` database."""
    server = PostgresServer.start()
    try:
        with server.admin() as conn:
            conn.execute(f"CREATE ROLE {LOGIN[0]} LOGIN CREATEROLE PASSWORD '{LOGIN[1]}'")
            conn.execute(f"GRANT pg_signal_backend TO {LOGIN[0]}")  # ends granted users' sessions on revoke
            conn.execute(f"CREATE DATABASE orders OWNER {LOGIN[0]}")
        with server.admin("orders") as conn:
            conn.execute(f"SET ROLE {LOGIN[0]}")  # the connector owns what it may grant, as on RDS
            conn.execute("CREATE SCHEMA sales")
            for i in range(TABLES):
                conn.execute(f"CREATE TABLE sales.t{i} (id int)")
            conn.execute("INSERT INTO sales.t0 VALUES (1)")
            conn.execute("CREATE TABLE public.payroll (name text)")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def sandbox(pg: PostgresServer) -> Iterator[Sandbox]:
    with sandbox_as_aws(spec((pg.host, pg.port))) as sb:
        yield sb


def settings(sb: Sandbox, **overrides: Any) -> dict[str, Any]:
    info = sb.seed_info
    return {
        "management_account_role_arn": info.management_role_arn,
        "member_role_name": info.member_role_name,
        "regions": ["us-east-1", "eu-west-1"],
    } | overrides


_ids = itertools.count(1)


def sync(
    sb: Sandbox, *, resource_types: tuple[str, ...] = DB_TYPES, endpoints: EndpointMap | None = None, **overrides: Any
) -> tuple[JobOutcome, list[InventoryItem]]:
    info = sb.seed_info
    s = struct_pb2.Struct()
    s.update(settings(sb, **overrides))
    job = pb.Job(
        id=f"db-sync-{next(_ids)}",
        attempt=1,
        integration=pb.Integration(id="org", type="aws_organization", settings=s),
        sync=pb.SyncJob(resource_types=resource_types),
    )
    items: list[InventoryItem] = []
    ctx = JobContext(job_id=job.id, attempt=1, connector_id=info.connector_id, integration_id="org", emit=items.append)
    services = Services(
        connector_id=info.connector_id, database_endpoints=endpoints or EndpointMap.parse(info.database_endpoints)
    )
    outcome = Dispatcher(build_registry(["aws_organization"]), services).execute(job, ctx)
    return outcome, items
