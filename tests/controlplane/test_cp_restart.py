"""A server restarted on the same SQLite file keeps queued and leased jobs, attempts and lease expiries."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from connector.controlplane.server import ControlPlaneThread
from connector.v1 import admin_pb2, connector_pb2
from tests.controlplane.cp_helpers import CONNECTOR_ID, Connector, digest_of, fast_settings

pytestmark = pytest.mark.timeout(60)


def test_finish_lands_after_a_restart_while_leased(tmp_path: Path) -> None:
    settings = fast_settings(db_path=str(tmp_path / "cp.sqlite"), lease_seconds=5.0)
    with ControlPlaneThread(settings) as cp:
        leased_id = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization").job.id
        queued_id = cp.admin.enqueue_sync(CONNECTOR_ID, "org-2", "aws_organization").job.id
        with grpc.insecure_channel(cp.address) as channel:
            conn = Connector(channel)
            [job] = conn.poll(max_jobs=1, wait=1.0)
            part = [connector_pb2.InventoryItem(type="aws.account", id="111122223333")]
            conn.upload([conn.chunk(job, 0, part)])
        lease_expires = cp.admin.get(leased_id).lease_expires.ToNanoseconds()
    assert job.id == leased_id

    with ControlPlaneThread(settings) as cp, grpc.insecure_channel(cp.address) as channel:
        conn = Connector(channel)
        record = cp.admin.get(leased_id)
        assert record.state == admin_pb2.JOB_STATE_LEASED and record.job.attempt == 1
        assert record.lease_expires.ToNanoseconds() == lease_expires
        assert conn.heartbeat((leased_id, 1)).lost_job_ids == []
        # The upload resumes where it stopped.
        rest = [connector_pb2.InventoryItem(type="aws.account", id="444455556666")]
        reply = conn.upload([conn.chunk(job, 1, rest, digest_of(part + rest))])
        assert (reply.items_received, reply.digest_ok) == (2, True)
        assert conn.finish(leased_id, 1).recorded is True
        assert cp.admin.get(leased_id).state == admin_pb2.JOB_STATE_SUCCEEDED
        [other] = conn.poll(max_jobs=1, wait=1.0)
        assert other.id == queued_id
        assert cp.admin.inventory("org-1").total == 2


def test_a_lease_that_expired_while_the_server_was_down_is_requeued_at_start(tmp_path: Path) -> None:
    settings = fast_settings(db_path=str(tmp_path / "cp.sqlite"), lease_seconds=1.0)
    with ControlPlaneThread(settings) as cp, grpc.insecure_channel(cp.address) as channel:
        job_id = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization").job.id
        Connector(channel).poll(max_jobs=1, wait=1.0)
    time.sleep(1.2)
    with ControlPlaneThread(settings) as cp, grpc.insecure_channel(cp.address) as channel:
        conn = Connector(channel)
        [job] = conn.poll(max_jobs=1, wait=5.0)
        assert job.id == job_id and job.attempt == 2
        with pytest.raises(grpc.RpcError) as excinfo:
            conn.finish(job_id, 1)
        assert excinfo.value.code() == grpc.StatusCode.FAILED_PRECONDITION
