"""Large jobs over real gRPC: a PollJobs answer is filled within a byte budget under the 4 MiB message limit
(what does not fit waits for the next poll, no lease burnt), and a job that could never fit is refused at
enqueue. The connector side is a plain grpc channel with gRPC's default 4 MiB receive limit, like the agent."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from connector.agent.channel import CHANNEL_OPTIONS, MAX_RECEIVE_BYTES
from connector.controlplane.cli import main
from connector.controlplane.server import ControlPlaneThread
from connector.controlplane.settings import CONNECTOR_MAX_RECEIVE_BYTES, POLL_RESPONSE_HEADROOM
from connector.controlplane.store import delivered_size
from connector.logging import configure_logging
from connector.v1 import admin_pb2, connector_pb2
from tests.controlplane.cp_helpers import (
    ADMIN_TOKEN,
    CONNECTOR_ID,
    OTHER_ID,
    Connector,
    digest_of,
    duration,
    fast_settings,
    rpc_code,
    rpc_details,
)

pytestmark = pytest.mark.timeout(90)

MIB = 1024 * 1024
BUDGET = 4 * MIB - POLL_RESPONSE_HEADROOM  # 4_177_920 bytes


def padded(size: int) -> dict[str, Any]:
    """Integration settings of a noop job, `size` bytes of them a padding string the integration ignores."""
    return {"padding": "x" * size}


def enqueue_padded(cp: ControlPlaneThread, size: int, connector_id: str = CONNECTOR_ID) -> admin_pb2.JobRecord:
    return cp.admin.enqueue_sync(connector_id, "noop-1", "noop", padded(size))


def poll_answer(conn: Connector, max_jobs: int, wait: float = 1.0) -> connector_pb2.PollJobsResponse:
    """One PollJobs answer as received (to measure it), not just its jobs."""
    request = connector_pb2.PollJobsRequest(
        connector_id=conn.connector_id, host_id=conn.host_id, max_jobs=max_jobs, wait=duration(wait)
    )
    response: connector_pb2.PollJobsResponse = conn.stub.PollJobs(request, metadata=conn.metadata, timeout=wait + 10)
    return response


@pytest.fixture
def cp() -> Iterator[ControlPlaneThread]:
    # Long leases: the test, not an expiry, decides when a job ends (so "attempt 1" means no lease was burnt).
    with ControlPlaneThread(fast_settings(lease_seconds=60.0)) as server:
        yield server


def test_the_budget_is_the_protocol_limit_less_headroom(cp: ControlPlaneThread) -> None:
    assert MAX_RECEIVE_BYTES == CONNECTOR_MAX_RECEIVE_BYTES == 4 * MIB  # agent and control plane agree
    assert ("grpc.max_receive_message_length", 4 * MIB) in CHANNEL_OPTIONS  # what the agent really receives
    assert cp.settings.poll_budget_bytes == BUDGET
    assert fast_settings(max_message_bytes=MIB).poll_budget_bytes == MIB - POLL_RESPONSE_HEADROOM
    assert fast_settings(max_message_bytes=16 * MIB).poll_budget_bytes == BUDGET  # the connector's limit holds


def test_four_large_jobs_queued_together_come_over_several_answers_on_attempt_1(
    cp: ControlPlaneThread, conn: Connector
) -> None:
    ids = [enqueue_padded(cp, 1_100_000).job.id for _ in range(4)]
    answers = []
    while len(delivered := [job for answer in answers for job in answer.jobs]) < 4:
        answer = poll_answer(conn, max_jobs=4)
        assert answer.jobs, f"a poll came back empty with {4 - len(delivered)} jobs still queued"
        answers.append(answer)
    sizes = [answer.ByteSize() for answer in answers]
    print(f"\nfour 1.1 MB jobs: {len(answers)} answers of {sizes} bytes, budget {BUDGET}")
    assert [job.id for job in delivered] == ids  # oldest first, each once
    assert len(answers) >= 2 and all(size <= BUDGET for size in sizes)
    assert [len(answer.jobs) for answer in answers] == [3, 1]  # filled up to the budget, not one job per answer
    assert all(job.attempt == 1 for job in delivered)
    for job in delivered:
        assert conn.finish(job.id, job.attempt).recorded
    records = [cp.admin.get(job_id) for job_id in ids]
    assert all(r.state == admin_pb2.JOB_STATE_SUCCEEDED and r.job.attempt == 1 for r in records)  # none re-queued


def test_a_large_first_job_comes_alone_and_the_rest_next_poll(cp: ControlPlaneThread, conn: Connector) -> None:
    big = enqueue_padded(cp, 3 * MIB + MIB // 2).job.id  # with either of the next two, over the budget
    rest = [enqueue_padded(cp, 1_000_000).job.id for _ in range(2)]
    first = poll_answer(conn, max_jobs=10)
    assert [job.id for job in first.jobs] == [big]
    for job_id in rest:  # not leased: no lease to burn, no attempt used
        record = cp.admin.get(job_id)
        assert record.state == admin_pb2.JOB_STATE_QUEUED and record.job.attempt == 1 and not record.leased_by
    second = poll_answer(conn, max_jobs=10, wait=0.0)  # at once: they were waiting, not woken later
    assert [job.id for job in second.jobs] == rest
    assert all(job.attempt == 1 for job in (*first.jobs, *second.jobs))
    assert first.ByteSize() <= BUDGET and second.ByteSize() <= BUDGET


def padding_for(cp: ControlPlaneThread, delivered: int) -> int:
    """The padding that makes a noop job `delivered` bytes as sent, measured on a probe job (another connector's,
    so it never reaches these polls). Its uuid and the timestamps' nanos vary a few bytes from job to job."""
    probe = enqueue_padded(cp, 2 * MIB, connector_id=OTHER_ID)
    return 2 * MIB + delivered - delivered_size(probe.job)


def test_a_job_just_under_the_limit_is_delivered_alone(cp: ControlPlaneThread, conn: Connector) -> None:
    big = cp.admin.enqueue_sync(CONNECTOR_ID, "noop-1", "noop", padded(padding_for(cp, BUDGET - 32)))
    size = delivered_size(big.job)
    assert BUDGET - 64 <= size <= BUDGET
    small = cp.admin.enqueue_sync(CONNECTOR_ID, "noop-1", "noop").job.id
    first = poll_answer(conn, max_jobs=5)
    assert [job.id for job in first.jobs] == [big.job.id]
    assert first.ByteSize() == size <= BUDGET  # our count of the answer is exact
    print(f"\njob just under the limit: {size} bytes, answer {first.ByteSize()} bytes, budget {BUDGET}")
    assert [job.id for job in poll_answer(conn, max_jobs=5, wait=0.0).jobs] == [small]


def test_a_job_over_the_limit_is_refused_at_enqueue_with_what_to_do(cp: ControlPlaneThread, conn: Connector) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        cp.admin.enqueue_sync(CONNECTOR_ID, "noop-1", "noop", padded(padding_for(cp, BUDGET + 32)))
    assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT
    details = rpc_details(excinfo)
    print(f"\nrefused: {details}")
    assert f"over the {BUDGET}-byte limit of one PollJobs answer" in details
    size = re.search(r"the job would be (\d+) bytes as delivered", details)
    assert size is not None and BUDGET < int(size[1]) <= BUDGET + 64  # the job's own size, a few bytes over
    assert "send smaller integration.settings / target, or split the work" in details
    assert conn.poll(max_jobs=5, wait=0.2) == []  # nothing was stored


def test_the_cli_shows_the_refusal(cp: ControlPlaneThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    admin = tmp_path / "admin.token"
    admin.write_text(ADMIN_TOKEN)
    admin.chmod(0o600)
    settings = tmp_path / "settings.json"
    settings.write_text('{"padding": "' + "x" * (BUDGET + 1000) + '"}')
    configure_logging("info", "json", stream=io.StringIO())  # keep the in-process server's logs off stdout
    code = main([
        "dispatch", "sync", "--connector-id", CONNECTOR_ID, "--integration-id", "noop-1", "--integration-type", "noop",
        "--settings", f"@{settings}", "--server", cp.address, "--admin-token-file", str(admin),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3, err
    assert "error: the control plane answered INVALID_ARGUMENT: EnqueueJobRequest: the job would be" in err
    assert f"over the {BUDGET}-byte limit" in err and "send smaller integration.settings" in err


def test_a_smaller_server_message_limit_shrinks_the_budget() -> None:
    settings = fast_settings(lease_seconds=60.0, max_message_bytes=MIB)
    budget = MIB - POLL_RESPONSE_HEADROOM
    with ControlPlaneThread(settings) as cp, grpc.insecure_channel(cp.address) as channel:
        conn = Connector(channel)
        ids = [enqueue_padded(cp, 400_000).job.id for _ in range(3)]
        with pytest.raises(grpc.RpcError) as excinfo:
            enqueue_padded(cp, budget)
        assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT
        assert f"the {budget}-byte limit" in rpc_details(excinfo)
        first, second = poll_answer(conn, max_jobs=3), poll_answer(conn, max_jobs=3, wait=0.0)
        assert [len(first.jobs), len(second.jobs)] == [2, 1]
        assert [job.id for job in (*first.jobs, *second.jobs)] == ids
        assert first.ByteSize() <= budget


def split_children(cp: ControlPlaneThread, parent_job_id: str) -> list[str]:
    """The split's child job ids, once the control plane made them (just after the discovery job ended)."""
    deadline = time.monotonic() + 10
    while not (children := list(cp.admin.wait(parent_job_id, timeout=1).child_job_ids)):
        assert time.monotonic() < deadline, "the split made no child jobs"
        time.sleep(0.05)
    return children


def test_split_children_are_packed_to_fit_an_answer(cp: ControlPlaneThread, conn: Connector) -> None:
    """A split sync whose settings are near the limit: its children carry fewer accounts than asked, each fits."""
    parent = cp.admin.enqueue_sync(
        CONNECTOR_ID, "org-1", "noop", padded(padding_for(cp, BUDGET - 200)), split_accounts_per_job=50
    )
    [discovery] = conn.poll(max_jobs=1, wait=1.0)
    assert discovery.id == parent.job.id
    accounts = [f"{100000000000 + i}" for i in range(40)]
    items = [connector_pb2.InventoryItem(type="aws.account", id=a, name=a, account_id=a) for a in accounts]
    for item in items:
        item.attributes.update({"state": "ACTIVE"})
    assert conn.upload([conn.chunk(discovery, 0, items, digest_of(items))]).digest_ok
    assert conn.finish(discovery.id, discovery.attempt).recorded
    children_ids = split_children(cp, parent.job.id)
    children = [cp.admin.get(child_id).job for child_id in children_ids]
    assert sorted(a for child in children for a in child.sync.account_ids) == accounts  # each account once
    assert len(children) > 1 and all(len(child.sync.account_ids) < 40 for child in children)
    assert all(delivered_size(child) <= BUDGET for child in children)
    polled = [job for _ in children for job in poll_answer(conn, max_jobs=10, wait=1.0).jobs]
    assert sorted(job.id for job in polled) == sorted(children_ids)


def test_a_stored_job_too_large_for_a_lowered_limit_fails_and_does_not_block_the_queue(tmp_path: Path) -> None:
    """Enqueued under a 4 MiB limit, then the control plane restarts with a 1 MiB one: the job can never be
    delivered, so the poll fails it (TOO_LARGE, saying what to do) and hands out the job behind it."""
    db = str(tmp_path / "cp.sqlite")
    with ControlPlaneThread(fast_settings(db_path=db, lease_seconds=60.0)) as cp:
        big = enqueue_padded(cp, 2 * MIB).job.id
        small = enqueue_padded(cp, 10).job.id
    with (
        ControlPlaneThread(fast_settings(db_path=db, lease_seconds=60.0, max_message_bytes=MIB)) as cp,
        grpc.insecure_channel(cp.address) as channel,
    ):
        assert [job.id for job in Connector(channel).poll(max_jobs=5, wait=1.0)] == [small]
    # Read back under the default limit again: a 1 MiB server cannot send this record to an operator either.
    with ControlPlaneThread(fast_settings(db_path=db)) as cp:
        record = cp.admin.get(big)
    assert record.state == admin_pb2.JOB_STATE_FAILED and record.error.code == "TOO_LARGE"
    assert f"more than the {MIB - POLL_RESPONSE_HEADROOM} bytes one PollJobs answer may carry" in record.error.message
    assert "smaller settings / target, or split it" in record.error.message
