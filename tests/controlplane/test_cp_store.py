"""The store's transitions directly on a real SQLite file: finish and lease expiry never both win."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.controlplane.db import Database
from connector.controlplane.settings import ServerSettings
from connector.controlplane.store import FinishStatus, JobStore
from connector.v1 import admin_pb2, connector_pb2

pytestmark = pytest.mark.timeout(30)


def leased_job(store: JobStore, now: float) -> connector_pb2.Job:
    job = connector_pb2.Job(id="job-1", integration=connector_pb2.Integration(id="org", type="aws_organization"))
    job.sync.SetInParent()
    store.enqueue("conn-1", job, "", now, now + 900)
    [leased], _ = store.lease("conn-1", "host-a", 1, now, 30.0, ServerSettings().poll_budget_bytes)
    return leased


def finish_request(attempt: int) -> connector_pb2.FinishJobRequest:
    return connector_pb2.FinishJobRequest(
        connector_id="conn-1",
        host_id="host-a",
        job_id="job-1",
        attempt=attempt,
        outcome=connector_pb2.OUTCOME_SUCCEEDED,
    )


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    db = Database(tmp_path / "cp.sqlite")
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    return JobStore(db)


def test_expiry_first_then_the_finish_is_stale(store: JobStore) -> None:
    leased_job(store, now=1000.0)
    renewed, changes = store.expire("job-1", 1, now=1031.0, max_attempts=5)
    assert renewed is None and [c.event for c in changes] == ["requeued"] and changes[0].attempt == 2
    result = store.finish("conn-1", finish_request(1), 1031.5, 5, 2.0)
    assert result.status is FinishStatus.STALE and result.current_attempt == 2
    record = store.get("job-1")
    assert record is not None and record.state == admin_pb2.JOB_STATE_QUEUED and record.stale_finishes_refused == 1


def test_finish_first_then_the_expiry_is_a_no_op(store: JobStore) -> None:
    leased_job(store, now=1000.0)
    assert store.finish("conn-1", finish_request(1), 1029.0, 5, 2.0).status is FinishStatus.RECORDED
    assert store.expire("job-1", 1, now=1031.0, max_attempts=5) == (None, [])
    record = store.get("job-1")
    assert record is not None and record.state == admin_pb2.JOB_STATE_SUCCEEDED and record.job.attempt == 1


def test_an_early_or_renewed_expiry_reports_the_real_expiry(store: JobStore) -> None:
    leased_job(store, now=1000.0)
    assert store.expire("job-1", 1, now=1010.0, max_attempts=5) == (1030.0, [])
    store.heartbeat("conn-1", [("job-1", 1)], now=1020.0, lease_seconds=30.0)
    assert store.expire("job-1", 1, now=1031.0, max_attempts=5) == (1050.0, [])


def test_state_survives_reopening_the_file(tmp_path: Path) -> None:
    store = JobStore(Database(tmp_path / "cp.sqlite"))
    leased_job(store, now=1000.0)
    store.db.close()
    reopened = JobStore(Database(tmp_path / "cp.sqlite"))
    assert reopened.leases() == [("job-1", 1, 1030.0)]
    assert reopened.finish("conn-1", finish_request(1), 1001.0, 5, 2.0).status is FinishStatus.RECORDED
