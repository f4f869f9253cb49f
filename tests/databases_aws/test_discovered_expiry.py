"""The expiry loop on a database found by its tags: a grant made by one process is found by another one's full
scan (it never saw the grant) and revoked with no control plane at all; the requester can no longer log in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from google.protobuf import struct_pb2
from nacl.public import PrivateKey

from connector.integrations.aws_organization import AwsOrganizationIntegration
from connector.integrations.base import JobContext, Services
from connector.integrations.endpoints import EndpointMap
from connector.jobs.dispatcher import Dispatcher
from connector.jobs.expiry import ExpirySweeper
from connector.jobs.registry import build_registry
from connector.sandbox import Sandbox
from connector.sealing import open_sealed
from connector.v1 import connector_pb2 as pb
from tests.databases.servers import PostgresServer
from tests.databases_aws.conftest import settings


def _struct(values: dict[str, object]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def test_a_grant_on_a_discovered_database_expires_without_the_control_plane(
    sandbox: Sandbox, pg: PostgresServer
) -> None:
    info = sandbox.seed_info
    orders = next(d for d in info.databases if d.identifier == "orders")
    org = settings(sandbox, regions=[orders.region], resource_types=["rds_instance"])
    endpoints = EndpointMap.parse(info.database_endpoints)
    key = PrivateKey.generate()
    target = {
        "resource_type": "rds_database", "account_id": orders.account, "region": orders.region,
        "instance_id": "orders", "database": "orders", "schema": "sales", "level": "read-only",
    }  # fmt: skip
    job = pb.Job(
        id="expiry-grant",
        attempt=1,
        integration=pb.Integration(id="org", type="aws_organization", settings=_struct(org)),
    )
    job.grant.CopyFrom(pb.GrantJob(grant_id="rds-expiry-1", principal="bob@example.com", target=_struct(target),
                                   requester_public_key=bytes(key.public_key)))  # fmt: skip
    job.grant.expires_at.FromDatetime((datetime.now(UTC) + timedelta(minutes=5)).replace(tzinfo=None))
    registry = build_registry(["aws_organization"])
    granting = Dispatcher(registry, Services(info.connector_id, database_endpoints=endpoints))
    outcome = granting.execute(job, JobContext(job.id, 1, info.connector_id, "org"))
    assert outcome.outcome == "succeeded", outcome.error
    login = open_sealed(bytes(key), outcome.result["credentials"])
    with psycopg.connect(host=pg.host, port=pg.port, user=login["username"], password=login["password"],
                         dbname="orders", sslmode="require", connect_timeout=5) as conn:  # fmt: skip
        assert conn.execute("SELECT count(*) FROM sales.t0").fetchone() == (1,)

    # Another process: it knows the integration's settings, not the grant. Its first sweep is a full scan.
    services = Services(info.connector_id, database_endpoints=endpoints)
    sweeper = ExpirySweeper(registry, services, full_scan_interval=0)  # every sweep a full scan
    sweeper.offer(AwsOrganizationIntegration("org", org, services))
    assert sweeper.sweep(datetime.now(UTC)) == []  # not due yet: nothing revoked
    events = sweeper.sweep(datetime.now(UTC) + timedelta(minutes=10))
    mine = [e for e in events if e.grant_id == "rds-expiry-1"]
    assert [e.outcome for e in mine] == ["succeeded"], events
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=pg.host, port=pg.port, user=login["username"], password=login["password"],
                        dbname="orders", sslmode="require", connect_timeout=5)  # fmt: skip
