"""Shared pieces of the database tests: one PostgreSQL and one MariaDB server for the whole session (started
here, real servers), the sandbox (moto Secrets Manager holds the connector's database logins, as on AWS),
and helpers that run real proto Jobs through the Dispatcher and connect as the requester."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pymysql
import pytest
import structlog
from google.protobuf import struct_pb2
from nacl.public import PrivateKey

from connector.integrations.base import JobContext, Services
from connector.jobs.dispatcher import Dispatcher, JobOutcome
from connector.jobs.guardrails import DEFAULT, Guardrails
from connector.jobs.registry import build_registry
from connector.logging import configure_logging
from connector.sandbox import Sandbox
from connector.sealing import open_sealed
from connector.v1 import connector_pb2 as pb
from tests.databases.servers import MariaDbServer, PostgresServer
from tests.sandbox_env import sandbox_as_aws

REGION = "eu-west-1"
CONNECTOR_ID = "c-db"
PG_CONNECTOR_PASSWORD = "pg-connector-Pw-7f3a9"
MY_CONNECTOR_PASSWORD = "my-connector-Pw-2c8e1"
PG_SECRET = "db/pg-connector"
MY_SECRET = "db/mariadb-connector"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer.start()
    try:
        admin = server.admin()
        # The connector's login as the README asks for it (rds_superuser stands for ownership here).
        admin.execute(
            f"CREATE ROLE connector LOGIN CREATEROLE PASSWORD '{PG_CONNECTOR_PASSWORD}'; GRANT pg_signal_backend TO connector"
        )
        admin.execute("CREATE ROLE rds_iam NOLOGIN")  # RDS's IAM role, so GRANT rds_iam runs (no token login here)
        admin.execute("CREATE DATABASE app OWNER connector")
        admin.execute("CREATE DATABASE dev OWNER connector")  # the Redshift-on-PostgreSQL tests' database
        admin.close()
        with server.admin("app") as app:
            app.execute(
                "SET ROLE connector; CREATE SCHEMA sales; CREATE TABLE sales.orders(id int, item text); "
                "INSERT INTO sales.orders VALUES (1, 'book'); CREATE TABLE sales.refunds(id int); "
                "CREATE TABLE public.payroll(name text, salary int); INSERT INTO public.payroll VALUES ('a', 1); "
                "CREATE ROLE reporting NOLOGIN; GRANT USAGE ON SCHEMA sales TO reporting; "
                "GRANT SELECT ON sales.refunds TO reporting; CREATE ROLE builders NOLOGIN CREATEDB"
            )
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDbServer]:
    server = MariaDbServer.start()
    try:
        with server.admin() as conn, conn.cursor() as cur:
            for statement in (
                f"CREATE USER 'connector'@'%' IDENTIFIED BY '{MY_CONNECTOR_PASSWORD}'",
                # The README's list: SHOW DATABASES, CREATE USER, UPDATE/SELECT, PROCESS, the privileges it grants
                # WITH GRANT OPTION, and CONNECTION ADMIN to end other users' sessions (MariaDB 10.5+).
                "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, SHOW VIEW, SHOW DATABASES, "
                "CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'connector'@'%' WITH GRANT OPTION",
                "CREATE DATABASE shop",
                "CREATE TABLE shop.orders(id int, item text)",
                "INSERT INTO shop.orders VALUES (1, 'book')",
                "CREATE TABLE shop.payroll(name text, salary int)",
                "INSERT INTO shop.payroll VALUES ('a', 1)",
                "CREATE DATABASE hr",
                "CREATE TABLE hr.people(name text)",
                "CREATE ROLE reader",
                "GRANT SELECT ON shop.* TO reader",
                "GRANT reader TO 'connector'@'%' WITH ADMIN OPTION",  # MariaDB: what lets it hand the role out
                "CREATE ROLE superish",
                "GRANT ALL PRIVILEGES ON *.* TO superish",
            ):
                cur.execute(statement)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def sandbox(pg_server: PostgresServer, mariadb_server: MariaDbServer) -> Iterator[Sandbox]:
    with sandbox_as_aws(None) as sb:
        sm = sb.client("secretsmanager", REGION)
        sm.create_secret(
            Name=PG_SECRET,
            SecretString=json.dumps({"username": "connector", "password": PG_CONNECTOR_PASSWORD, "host": "127.0.0.1"}),
            Tags=[{"Key": "apono-connector-id", "Value": CONNECTOR_ID}],
        )
        sm.create_secret(
            Name=MY_SECRET,
            SecretString=json.dumps({"username": "connector", "password": MY_CONNECTOR_PASSWORD, "port": "3306"}),
            Tags=[{"Key": "apono-connector-id", "Value": CONNECTOR_ID}],
        )
        yield sb


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    try:
        yield stream
    finally:
        structlog.reset_defaults()


# -- settings and jobs -------------------------------------------------------------------------------------
def pg_settings(server: PostgresServer, **extra: Any) -> dict[str, Any]:
    return {
        "hostname": "127.0.0.1", "port": server.port, "database": "app", "region": REGION, "secret": PG_SECRET,
        "ssl_mode": "verify-full", "ssl_ca_file": str(server.ca_file),
    } | extra  # fmt: skip


def my_settings(server: MariaDbServer, **extra: Any) -> dict[str, Any]:
    return {
        "hostname": "127.0.0.1", "port": server.port, "database": "shop", "region": REGION, "secret": MY_SECRET,
        "ssl_mode": "disable",
    } | extra  # fmt: skip


_ids = itertools.count(1)


def expires(minutes: float = 60) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=minutes)


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


@dataclass
class Requester:
    key: PrivateKey

    @property
    def public(self) -> bytes:
        return bytes(self.key.public_key)

    def login(self, outcome: JobOutcome) -> dict[str, Any]:
        assert outcome.outcome == "succeeded", outcome
        return open_sealed(bytes(self.key), outcome.result["credentials"])


def requester() -> Requester:
    return Requester(PrivateKey.generate())


def grant_job(
    type_: str, settings: dict[str, Any], grant_id: str, target: dict[str, Any], *, key: bytes = b"",
    expires_at: datetime | None = None, principal: str = "alice@example.com", integration_id: str = "db-1",
) -> pb.Job:  # fmt: skip
    job = pb.Job(
        id=f"job-{next(_ids)}",
        attempt=1,
        integration=pb.Integration(id=integration_id, type=type_, settings=struct(settings)),
    )
    job.grant.CopyFrom(
        pb.GrantJob(grant_id=grant_id, principal=principal, target=struct(target), requester_public_key=key)
    )
    when = expires_at or expires()
    job.grant.expires_at.FromDatetime(when.astimezone(UTC).replace(tzinfo=None))
    return job


def revoke_job(
    type_: str, settings: dict[str, Any], grant_id: str, target: dict[str, Any], integration_id: str = "db-1"
) -> pb.Job:
    job = pb.Job(
        id=f"job-{next(_ids)}",
        attempt=1,
        integration=pb.Integration(id=integration_id, type=type_, settings=struct(settings)),
    )
    job.revoke.CopyFrom(pb.RevokeJob(grant_id=grant_id, principal="alice@example.com", target=struct(target)))
    return job


def dispatcher(guardrails: Guardrails = DEFAULT) -> Dispatcher:
    return Dispatcher(
        build_registry(["postgresql", "mysql", "redshift"]), Services(connector_id=CONNECTOR_ID, guardrails=guardrails)
    )


def run(d: Dispatcher, job: pb.Job) -> JobOutcome:
    ctx = JobContext(job_id=job.id, attempt=job.attempt, connector_id=CONNECTOR_ID, integration_id=job.integration.id)
    return d.execute(job, ctx)


# -- the requester's side ----------------------------------------------------------------------------------
def pg_login(login: dict[str, Any], server: PostgresServer) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=login["host"], port=login["port"], user=login["username"], password=login["password"],
        dbname=login["database"], sslmode="verify-full", sslrootcert=str(server.ca_file), autocommit=True,
        connect_timeout=5,
    )  # fmt: skip


def my_login(login: dict[str, Any]) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(
        host=login["host"], port=login["port"], user=login["username"], password=login["password"],
        autocommit=True, connect_timeout=5,
    )  # fmt: skip
