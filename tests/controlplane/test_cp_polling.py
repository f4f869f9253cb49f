"""Hello steering values and long-poll behaviour over real gRPC."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from connector.controlplane.server import ControlPlaneThread
from connector.v1 import admin_pb2
from tests.controlplane.cp_helpers import CONNECTOR_ID, OTHER_ID, Connector, fast_settings, rpc_code, rpc_details

pytestmark = pytest.mark.timeout(60)


def test_hello_returns_the_configured_steering_values(conn: Connector) -> None:
    before = time.time()
    reply = conn.hello()
    assert reply.poll_wait.ToTimedelta().total_seconds() == 2.0
    assert reply.heartbeat_interval.ToTimedelta().total_seconds() == 0.5
    assert reply.lease_duration.ToTimedelta().total_seconds() == 2.0
    assert before - 1 <= reply.server_time.ToDatetime().timestamp() <= time.time() + 1


def test_poll_is_woken_by_an_enqueue_long_before_its_wait_ends(cp: ControlPlaneThread, conn: Connector) -> None:
    result: dict[str, object] = {}

    def poll() -> None:
        start = time.monotonic()
        result["jobs"] = conn.poll(max_jobs=1, wait=20.0)
        result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)  # let the poll reach the server and block
    assert thread.is_alive(), "the poll returned before any job existed"
    record = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization")
    thread.join(timeout=15)
    assert not thread.is_alive()
    jobs = result["jobs"]
    assert isinstance(jobs, list) and [j.id for j in jobs] == [record.job.id]
    # Woken by the enqueue, not by the 20 s wait ending (generous bound for a loaded machine).
    assert isinstance(result["elapsed"], float) and result["elapsed"] < 10.0


def test_poll_returns_empty_when_the_wait_ends(conn: Connector) -> None:
    start = time.monotonic()
    assert conn.poll(max_jobs=5, wait=0.5) == []
    assert time.monotonic() - start >= 0.45


def test_poll_only_sees_its_own_connectors_jobs(cp: ControlPlaneThread, conn: Connector) -> None:
    cp.admin.enqueue_sync(OTHER_ID, "org-2", "aws_organization")
    assert conn.poll(max_jobs=5, wait=0.2) == []


def test_leased_job_carries_attempt_lease_and_deadline(cp: ControlPlaneThread, conn: Connector) -> None:
    record = cp.admin.enqueue_grant(
        CONNECTOR_ID, "eks-1", "eks", grant_id="g-1", principal="arn:aws:iam::111122223333:role/dev", target={"c": 1}
    )
    [job] = conn.poll(max_jobs=1, wait=1.0)
    assert job.id == record.job.id and job.attempt == 1
    assert job.grant.grant_id == "g-1" and job.grant.target["c"] == 1
    assert (job.deadline.ToDatetime() - job.created.ToDatetime()).total_seconds() == pytest.approx(900, abs=1)
    leased = cp.admin.get(job.id)
    assert leased.state == admin_pb2.JOB_STATE_LEASED
    assert leased.leased_by == "host-a"
    assert leased.lease_expires.ToDatetime().timestamp() == pytest.approx(time.time() + 2.0, abs=1.0)


def test_max_jobs_is_respected_and_jobs_come_oldest_first(cp: ControlPlaneThread, conn: Connector) -> None:
    ids = [cp.admin.enqueue_sync(CONNECTOR_ID, f"org-{i}", "aws_organization").job.id for i in range(5)]
    first = conn.poll(max_jobs=2, wait=1.0)
    assert [j.id for j in first] == ids[:2]
    rest = conn.poll(max_jobs=10, wait=1.0)
    assert [j.id for j in rest] == ids[2:]
    assert conn.poll(max_jobs=10, wait=0.1) == []


def test_max_jobs_zero_is_invalid(conn: Connector) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        conn.poll(max_jobs=0, wait=0.1)
    assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_jobs" in rpc_details(excinfo)


def test_a_job_past_its_deadline_is_failed_not_handed_out(cp: ControlPlaneThread, conn: Connector) -> None:
    record = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization", timeout=0.2)
    time.sleep(0.4)
    assert conn.poll(max_jobs=1, wait=0.1) == []
    final = cp.admin.get(record.job.id)
    assert final.state == admin_pb2.JOB_STATE_FAILED and final.error.code == "TIMEOUT"


def test_idempotency_key_returns_the_first_job(cp: ControlPlaneThread) -> None:
    first = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization", idempotency_key="k-1")
    again = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization", idempotency_key="k-1")
    other = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization", idempotency_key="k-2")
    assert first.job.id == again.job.id != other.job.id
    assert len(cp.admin.list(CONNECTOR_ID)) == 2


def test_enqueue_without_a_kind_names_the_missing_field(cp: ControlPlaneThread) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        cp.admin.enqueue(admin_pb2.EnqueueJobRequest(connector_id=CONNECTOR_ID))
    assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT
    assert "integration" in rpc_details(excinfo)


def test_stopping_the_server_ends_held_polls_with_an_empty_answer() -> None:

    cp = ControlPlaneThread(fast_settings()).start()
    result: dict[str, object] = {}
    with grpc.insecure_channel(cp.address) as channel:
        conn = Connector(channel)

        def poll() -> None:
            try:
                result["jobs"] = conn.poll(max_jobs=1, wait=30.0)
            except grpc.RpcError as exc:
                result["error"] = exc

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(0.5)
        cp.stop()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert result == {"jobs": []}
