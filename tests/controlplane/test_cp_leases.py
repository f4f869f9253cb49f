"""Leases, the attempt fence, heartbeats, retries and cancellation over real gRPC."""

from __future__ import annotations

import time

import grpc
import pytest

from connector.controlplane.server import ControlPlaneThread
from connector.v1 import admin_pb2, connector_pb2
from tests.controlplane.cp_helpers import CONNECTOR_ID, Connector, duration, rpc_code, rpc_details

pytestmark = pytest.mark.timeout(60)


def wait_for_state(cp: ControlPlaneThread, job_id: str, state: int, timeout: float = 10.0) -> admin_pb2.JobRecord:
    deadline = time.monotonic() + timeout
    while True:
        record = cp.admin.get(job_id)
        if record.state == state or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def test_expired_lease_requeues_with_next_attempt_and_fences_the_stale_finish(
    cp: ControlPlaneThread, conn: Connector
) -> None:
    record = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization")
    [first] = conn.poll(max_jobs=1, wait=1.0)
    assert first.attempt == 1
    # No heartbeat: the 2 s lease expires and the job comes back with attempt 2, waking this poll.
    start = time.monotonic()
    [second] = conn.poll(max_jobs=1, wait=10.0)
    assert second.id == record.job.id and second.attempt == 2
    assert time.monotonic() - start < 8.0
    with pytest.raises(grpc.RpcError) as excinfo:
        conn.finish(first.id, 1)
    assert rpc_code(excinfo) == grpc.StatusCode.FAILED_PRECONDITION
    assert rpc_details(excinfo) == "stale attempt 1, current is 2"
    assert conn.finish(second.id, 2).recorded is True
    final = cp.admin.get(record.job.id)
    assert final.state == admin_pb2.JOB_STATE_SUCCEEDED
    assert final.stale_finishes_refused == 1
    assert final.job.attempt == 2


def test_repeating_the_same_finish_is_harmless(cp: ControlPlaneThread, conn: Connector) -> None:
    cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization")
    [job] = conn.poll(max_jobs=1, wait=1.0)
    assert conn.finish(job.id, job.attempt, result={"accounts": 3}).recorded is True
    assert conn.finish(job.id, job.attempt, result={"accounts": 3}).recorded is False
    final = cp.admin.get(job.id)
    assert final.state == admin_pb2.JOB_STATE_SUCCEEDED
    assert final.result["accounts"] == 3
    assert final.stale_finishes_refused == 0


def test_finish_for_an_unknown_job_is_not_found(conn: Connector) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        conn.finish("no-such-job", 1)
    assert rpc_code(excinfo) == grpc.StatusCode.NOT_FOUND


def test_heartbeat_renews_reports_cancel_and_lost(cp: ControlPlaneThread, conn: Connector) -> None:
    kept = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization").job.id
    cancelled = cp.admin.enqueue_sync(CONNECTOR_ID, "org-2", "aws_organization").job.id
    jobs = {j.id: j for j in conn.poll(max_jobs=2, wait=1.0)}
    assert set(jobs) == {kept, cancelled}
    assert cp.admin.cancel(cancelled).state == admin_pb2.JOB_STATE_LEASED  # delivered on the next heartbeat
    # Heartbeats keep both leases alive well past the 2 s lease length.
    for _ in range(7):
        reply = conn.heartbeat((kept, 1), (cancelled, 1), ("unknown-job", 1), (kept, 5))
        assert list(reply.cancelled_job_ids) == [cancelled]
        assert sorted(reply.lost_job_ids) == sorted(["unknown-job", kept])  # the (kept, 5) lease is not held
        assert reply.lease_expires.ToDatetime().timestamp() > time.time()
        time.sleep(0.5)
    assert cp.admin.get(kept).state == admin_pb2.JOB_STATE_LEASED
    assert conn.finish(cancelled, 1, connector_pb2.OUTCOME_CANCELLED).recorded
    assert cp.admin.get(cancelled).state == admin_pb2.JOB_STATE_CANCELLED
    # Once finished, a heartbeat for it reports it lost.
    assert list(conn.heartbeat((cancelled, 1)).lost_job_ids) == [cancelled]


def test_lease_lost_after_expiry(cp: ControlPlaneThread, conn: Connector) -> None:
    job_id = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization").job.id
    conn.poll(max_jobs=1, wait=1.0)
    record = wait_for_state(cp, job_id, admin_pb2.JOB_STATE_QUEUED)
    assert record.job.attempt == 2 and record.error.code == "LEASE_EXPIRED"
    reply = conn.heartbeat((job_id, 1))
    assert list(reply.lost_job_ids) == [job_id] and not reply.cancelled_job_ids


def test_max_attempts_ends_in_lease_expired(cp: ControlPlaneThread, conn: Connector) -> None:
    job_id = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization").job.id
    attempts = []
    for _ in range(3):  # max_attempts = 3 in the fast settings
        [job] = conn.poll(max_jobs=1, wait=10.0)
        attempts.append(job.attempt)
    assert attempts == [1, 2, 3]
    final = cp.admin.wait(job_id, timeout=10)
    assert final.state == admin_pb2.JOB_STATE_FAILED
    assert final.error.code == "LEASE_EXPIRED" and "max attempts (3)" in final.error.message
    assert conn.poll(max_jobs=1, wait=0.1) == []


def test_retryable_failure_is_requeued_after_a_backoff(cp: ControlPlaneThread, conn: Connector) -> None:
    job_id = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization").job.id
    [job] = conn.poll(max_jobs=1, wait=1.0)
    error = connector_pb2.JobError(code="THROTTLED", message="rate exceeded", retryable=True)
    assert conn.finish(job.id, 1, connector_pb2.OUTCOME_FAILED, error).recorded
    queued = cp.admin.get(job_id)
    assert queued.state == admin_pb2.JOB_STATE_QUEUED and queued.job.attempt == 2
    assert queued.error.code == "THROTTLED"
    [again] = conn.poll(max_jobs=1, wait=5.0)  # woken when the 0.2 s backoff ends
    assert again.id == job_id and again.attempt == 2
    # The first attempt's finish, repeated, is still harmless.
    assert conn.finish(job.id, 1, connector_pb2.OUTCOME_FAILED, error).recorded is False
    fatal = connector_pb2.JobError(code="ACCESS_DENIED", message="not allowed", retryable=False)
    assert conn.finish(job.id, 2, connector_pb2.OUTCOME_FAILED, fatal).recorded
    final = cp.admin.get(job_id)
    assert final.state == admin_pb2.JOB_STATE_FAILED and final.error.code == "ACCESS_DENIED"
    assert not final.error.retryable


def test_cancel_of_a_queued_job_is_immediate(cp: ControlPlaneThread, conn: Connector) -> None:
    job_id = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization").job.id
    record = cp.admin.cancel(job_id)
    assert record.state == admin_pb2.JOB_STATE_CANCELLED and record.finished.seconds > 0
    assert conn.poll(max_jobs=1, wait=0.1) == []
    assert cp.admin.cancel(job_id).state == admin_pb2.JOB_STATE_CANCELLED  # again: unchanged


def test_wait_job_returns_at_the_outcome_or_the_timeout(cp: ControlPlaneThread, conn: Connector) -> None:
    job_id = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization").job.id
    start = time.monotonic()
    assert cp.admin.wait(job_id, timeout=0.3).state == admin_pb2.JOB_STATE_QUEUED
    assert time.monotonic() - start >= 0.25
    [job] = conn.poll(max_jobs=1, wait=1.0)
    conn.finish(job.id, 1)
    assert cp.admin.wait(job_id, timeout=10).state == admin_pb2.JOB_STATE_SUCCEEDED


def test_a_poll_whose_caller_gave_up_does_not_take_a_job(cp: ControlPlaneThread, conn: Connector) -> None:
    request = connector_pb2.PollJobsRequest(connector_id=CONNECTOR_ID, host_id="gone", max_jobs=1, wait=duration(30))
    with pytest.raises(grpc.RpcError) as excinfo:
        conn.stub.PollJobs(request, metadata=conn.metadata, timeout=0.3)
    assert rpc_code(excinfo) == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.2)
    job_id = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization").job.id
    time.sleep(0.3)
    assert cp.admin.get(job_id).state == admin_pb2.JOB_STATE_QUEUED
    [job] = conn.poll(max_jobs=1, wait=1.0)
    assert job.id == job_id and job.attempt == 1
