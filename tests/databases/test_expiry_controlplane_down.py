"""Fault: database grants expire while the control plane is down, and the shipped agent (`connector run`)
revokes them on time from the records in the databases themselves: the requester's live sessions end, new
logins fail, and the events are reported once the control plane is back. Nothing is configured on the
agent's side: it learned the integrations from the grant jobs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from google.protobuf import json_format

from connector.sandbox import Sandbox
from connector.v1 import admin_pb2, connector_pb2
from tests.agent.agent_harness import CONNECTOR_ID, wait_for
from tests.databases.conftest import my_login, my_settings, pg_login, pg_settings, requester
from tests.databases.servers import MariaDbServer, PostgresServer
from tests.faults.conftest import AgentProcess, ControlPlaneProcess

EXPIRES_IN = 10.0
SWEEP = 1.0


def _alive_pg(session: psycopg.Connection[Any]) -> bool:
    try:
        session.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _alive_my(session: pymysql.connections.Connection[Any]) -> bool:
    try:
        with session.cursor() as cur:
            cur.execute("SELECT 1")
    except pymysql.err.MySQLError:
        return False
    return True


@pytest.mark.timeout(240)
def test_database_grants_expire_with_the_control_plane_down(
    sandbox: Sandbox, pg_server: PostgresServer, mariadb_server: MariaDbServer, tmp_path: Path
) -> None:
    cp = ControlPlaneProcess(tmp_path).start()
    agent = AgentProcess(
        sandbox, cp.address, tmp_path / "agent.log",
        CONNECTOR_EXPIRY_SWEEP_SECONDS=str(SWEEP), CONNECTOR_STATE_DIR=str(tmp_path),
    )  # fmt: skip
    try:
        agent.wait_event("registered", 60)
        who = requester()
        grants = {
            "fault-pg": (
                "pg-1",
                "postgresql",
                pg_settings(pg_server),
                {"database": "app", "schema": "sales", "level": "read-only"},
            ),
            "fault-my": (
                "my-1",
                "mysql",
                my_settings(mariadb_server),
                {"database": "shop", "table": "orders", "level": "read-only"},
            ),
        }
        expires_at = float(int(time.time() + EXPIRES_IN))  # records keep whole seconds
        records = [
            cp.admin.enqueue_grant(
                CONNECTOR_ID,
                integration,
                kind,
                grant_id=grant_id,
                principal="alice",
                target=target,
                settings=settings,
                expires_in=EXPIRES_IN,
                requester_public_key=who.public,
            )
            for grant_id, (integration, kind, settings, target) in grants.items()
        ]
        done = [cp.admin.wait(r.job.id, timeout=60) for r in records]
        assert all(r.state == admin_pb2.JOB_STATE_SUCCEEDED for r in done), [(r.job.id, r.error) for r in done]
        logins = [_unseal(who, r) for r in done]
        pg_session, my_session = pg_login(logins[0], pg_server), my_login(logins[1])
        assert _alive_pg(pg_session) and _alive_my(my_session)
        assert time.time() < expires_at, "granting took longer than the grants' lifetime; raise EXPIRES_IN"

        cp.kill()
        wait_for(
            lambda: not _alive_pg(pg_session) and not _alive_my(my_session), 60, "sessions ended by the expiry loop"
        )
        gone_at = time.time()
        assert cp.proc is not None and cp.proc.poll() is not None  # still down
        with pytest.raises(psycopg.OperationalError):
            pg_login(logins[0], pg_server)
        with pytest.raises(pymysql.err.OperationalError):
            my_login(logins[1])
        assert gone_at - expires_at < 20  # expiry + a sweep or two, with room for a loaded machine

        cp.start()

        def reported() -> set[str]:
            return {
                e.grant_id
                for e in cp.admin.events(CONNECTOR_ID, "grant.expired_revoked", limit=100)
                if e.outcome == connector_pb2.OUTCOME_SUCCEEDED
            }

        wait_for(lambda: reported() >= set(grants), 60, "expiry events reported")
        log = agent.log.read_text(errors="replace")
        assert logins[0]["password"] not in log and logins[1]["password"] not in log
        print(f"SUMMARY database_expiry_controlplane_down revoke_lag_seconds={gone_at - expires_at:.1f} grants=2")
    finally:
        agent.stop()
        cp.close()


def _unseal(who: Any, record: admin_pb2.JobRecord) -> dict[str, Any]:
    result = json_format.MessageToDict(record.result)
    return who.login(type("O", (), {"outcome": "succeeded", "result": result})())  # type: ignore[no-any-return]
