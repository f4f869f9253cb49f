"""Results reported in FinishJobs batches, and FinishJob alone against a control plane without the call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from connector.controlplane.service import ControlPlaneService
from connector.v1 import admin_pb2

from .agent_harness import CONNECTOR_ID, AgentThread, agent_env, cp_settings, start_cp, wait_for

pytestmark = pytest.mark.timeout(120)

JOBS = 200


def _enqueue(cp: Any, count: int) -> list[str]:
    return [
        cp.admin.enqueue_grant(CONNECTOR_ID, "noop-1", "noop", grant_id=f"g-{i}", principal="p", target={}).job.id
        for i in range(count)
    ]


def _all_succeeded(cp: Any, ids: list[str]) -> bool:
    return all(record.state == admin_pb2.JOB_STATE_SUCCEEDED for record in map(cp.admin.get, ids))


def test_results_that_finish_together_share_a_call(tmp_path: Path) -> None:
    with start_cp(cp_settings(tmp_path)) as cp:
        ids = _enqueue(cp, JOBS)  # queued before the agent starts: it drains them as fast as it can
        with AgentThread(agent_env(cp.address, CONNECTOR_CONCURRENCY="32")) as agent:
            wait_for(lambda: _all_succeeded(cp, ids), 60, "every job succeeded")
            batches = agent.runtime.finish_batches
            assert batches.supported
            assert 1 <= batches.calls <= JOBS // 2, batches.calls  # one call per job would be JOBS calls
            assert all(cp.admin.get(i).stale_finishes_refused == 0 for i in ids[:20])


def test_a_control_plane_without_finish_jobs_gets_each_result_by_finish_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unimplemented(self: ControlPlaneService, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")  # as an older server answers

    monkeypatch.setattr(ControlPlaneService, "FinishJobs", unimplemented)
    with start_cp(cp_settings(tmp_path)) as cp:
        ids = _enqueue(cp, 40)
        with AgentThread(agent_env(cp.address, CONNECTOR_CONCURRENCY="16")) as agent:
            wait_for(lambda: _all_succeeded(cp, ids), 60, "every job succeeded")
            batches = agent.runtime.finish_batches
            assert not batches.supported
            assert batches.calls == 1  # tried once, then every result went by FinishJob
