"""FinishJobs over real gRPC: each result in the batch is judged as FinishJob judges it alone."""

from __future__ import annotations

import grpc
import pytest

from connector.controlplane.server import ControlPlaneThread
from connector.controlplane.service import MAX_RESULTS_PER_FINISH
from connector.v1 import admin_pb2, connector_pb2
from tests.controlplane.cp_helpers import CONNECTOR_ID, CONNECTOR_TOKEN, OTHER_ID, Connector, rpc_code

pytestmark = pytest.mark.timeout(60)

OK = grpc.StatusCode.OK.value[0]
CODES = {code.value[0]: code for code in grpc.StatusCode}


def result(job_id: str, attempt: int, outcome: int = connector_pb2.OUTCOME_SUCCEEDED) -> connector_pb2.FinishJobRequest:
    return connector_pb2.FinishJobRequest(job_id=job_id, attempt=attempt, outcome=outcome)  # type: ignore[arg-type]


def finish_jobs(conn: Connector, *results: connector_pb2.FinishJobRequest) -> list[connector_pb2.FinishJobStatus]:
    request = connector_pb2.FinishJobsRequest(connector_id=conn.connector_id, host_id=conn.host_id, results=results)
    return list(conn.stub.FinishJobs(request, metadata=conn.metadata, timeout=10).statuses)


def test_each_result_gets_the_answer_finish_job_would_give(cp: ControlPlaneThread, conn: Connector) -> None:
    jobs = [cp.admin.enqueue_sync(CONNECTOR_ID, f"org-{i}", "aws_organization").job.id for i in range(4)]
    other = cp.admin.enqueue_sync(OTHER_ID, "org-x", "aws_organization").job.id
    leased = {job.id: job for job in conn.poll(max_jobs=4, wait=1.0)}
    assert set(leased) == set(jobs)
    a, b, c, d = (leased[j] for j in jobs)
    assert conn.finish(b.id, b.attempt).recorded is True  # b is already recorded: a repeat is harmless

    failed = result(c.id, c.attempt, connector_pb2.OUTCOME_FAILED)
    failed.error.code, failed.error.message, failed.error.retryable = "ACCESS_DENIED", "denied", False
    statuses = finish_jobs(
        conn,
        result(a.id, a.attempt),
        result(b.id, b.attempt),
        failed,
        result(d.id, d.attempt + 1),  # an attempt that was never leased: stale
        result("no-such-job", 1),
        result(other, 1),  # another connector's job is not this caller's to finish
        result(a.id, a.attempt, connector_pb2.OUTCOME_UNSPECIFIED),
        result(a.id, 0),
    )
    assert [CODES[s.code] for s in statuses] == [
        grpc.StatusCode.OK,
        grpc.StatusCode.OK,
        grpc.StatusCode.OK,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INVALID_ARGUMENT,
    ]
    assert [s.recorded for s in statuses[:3]] == [True, False, True]
    assert statuses[3].message == f"stale attempt {d.attempt + 1}, current is {d.attempt}"
    assert "outcome is unspecified" in statuses[6].message and "attempt must be >= 1" in statuses[7].message

    assert cp.admin.get(a.id).state == admin_pb2.JOB_STATE_SUCCEEDED
    record_c = cp.admin.get(c.id)
    assert record_c.state == admin_pb2.JOB_STATE_FAILED and record_c.error.code == "ACCESS_DENIED"
    record_d = cp.admin.get(d.id)
    assert record_d.state == admin_pb2.JOB_STATE_LEASED and record_d.stale_finishes_refused == 1
    assert cp.admin.get(other).state == admin_pb2.JOB_STATE_QUEUED

    # Delivered twice (a lost reply): the same answers, nothing recorded again.
    again = finish_jobs(conn, result(a.id, a.attempt), failed)
    assert [(s.code, s.recorded) for s in again] == [(OK, False), (OK, False)]


def test_an_empty_batch_and_an_oversized_one(conn: Connector) -> None:
    assert finish_jobs(conn) == []
    with pytest.raises(grpc.RpcError) as excinfo:
        finish_jobs(conn, *[result(f"j{i}", 1) for i in range(MAX_RESULTS_PER_FINISH + 1)])
    assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT


def test_the_batch_is_authenticated_once_for_all_its_results(channel: grpc.Channel) -> None:
    for conn, code in (
        (Connector(channel, token="wrong-token"), grpc.StatusCode.UNAUTHENTICATED),
        (Connector(channel, connector_id=OTHER_ID, token=CONNECTOR_TOKEN), grpc.StatusCode.PERMISSION_DENIED),
    ):
        with pytest.raises(grpc.RpcError) as excinfo:
            finish_jobs(conn, result("j", 1))
        assert rpc_code(excinfo) == code
