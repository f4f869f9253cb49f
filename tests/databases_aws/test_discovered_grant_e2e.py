"""End to end on a database found by its tags: the sandbox's tagged RDS instance -> organisation sync through
the real control plane and agent (inventory) -> grant through the control plane -> the requester logs in to
the local PostgreSQL with the sealed credentials and reads what was granted, nothing else -> revoke -> the
live session is gone and a new login is refused."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from nacl.public import PrivateKey

from connector.controlplane.sealed import open_job_credentials
from connector.sandbox import Sandbox
from connector.v1 import admin_pb2
from tests.agent.agent_harness import TOKEN, AgentThread, agent_env, cp_settings, start_cp
from tests.databases.servers import PostgresServer
from tests.databases_aws.conftest import TABLES, settings

pytestmark = pytest.mark.timeout(180)


def _login(pg: PostgresServer, login: dict[str, object], database: str = "orders") -> psycopg.Connection[object]:
    # The credentials name the endpoint AWS reports; the requester reaches it where the operator maps it.
    return psycopg.connect(
        host=pg.host, port=pg.port, user=str(login["username"]), password=str(login["password"]), dbname=database,
        sslmode=str(login["ssl_mode"]), connect_timeout=5, autocommit=True,
    )  # fmt: skip


def test_sync_grant_connect_revoke_on_a_discovered_rds_instance(
    sandbox: Sandbox, pg: PostgresServer, tmp_path: Path
) -> None:
    info = sandbox.seed_info
    orders = next(d for d in info.databases if d.identifier == "orders")
    org = settings(sandbox, regions=[orders.region], resource_types=["rds_instance"], external_id=info.external_id)
    env = agent_env("", CONNECTOR_ID=info.connector_id, CONNECTOR_DATABASE_ENDPOINTS=info.database_endpoints)
    key = PrivateKey.generate()
    with start_cp(cp_settings(tmp_path, connector_tokens={info.connector_id: TOKEN})) as cp:
        env["CONTROL_PLANE_URL"] = f"http://{cp.address}"
        with AgentThread(env):
            sync = cp.admin.enqueue_sync(
                info.connector_id, "org", "aws_organization", org, resource_types=["rds_instance"]
            )
            done = cp.admin.wait(sync.job.id, timeout=60)
            assert done.state == admin_pb2.JOB_STATE_SUCCEEDED, done.error
            instances = {i.name: i for i in cp.admin.inventory("org", type="rds.instance").items}
            assert "orders" in instances
            tables = {i.id for i in cp.admin.inventory("org", type="postgresql.table").items}
            address = f"{orders.address}:{orders.port}"
            assert {f"{address}/orders/sales/t{n}" for n in range(TABLES)} <= tables

            target = {
                "resource_type": "rds_database", "account_id": orders.account, "region": orders.region,
                "instance_id": "orders", "database": "orders", "schema": "sales", "level": "read-only",
            }  # fmt: skip
            grant = cp.admin.enqueue_grant(
                info.connector_id, "org", "aws_organization", grant_id="e2e-rds-1", principal="alice@example.com",
                target=target, settings=org, expires_in=3600, requester_public_key=bytes(key.public_key),
            )  # fmt: skip
            granted = cp.admin.wait(grant.job.id, timeout=60)
            assert granted.state == admin_pb2.JOB_STATE_SUCCEEDED, granted.error
            login = open_job_credentials(granted, bytes(key))
            assert login["host"] == orders.address and login["username"] != "apono_connector"

            session = _login(pg, login)
            assert session.execute("SELECT id FROM sales.t0").fetchall() == [(1,)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                session.execute("INSERT INTO sales.t0 VALUES (2)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                session.execute("SELECT * FROM public.payroll")

            revoke = cp.admin.enqueue_revoke(
                info.connector_id, "org", "aws_organization", grant_id="e2e-rds-1", principal="alice@example.com",
                target=target, settings=org,
            )  # fmt: skip
            revoked = cp.admin.wait(revoke.job.id, timeout=60)
            assert revoked.state == admin_pb2.JOB_STATE_SUCCEEDED, revoked.error
    with pytest.raises(psycopg.OperationalError):  # the live session was ended
        session.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):  # and no new login
        _login(pg, login)
