"""Fault 10: large jobs queued together. Four jobs whose sum is far over gRPC's 4 MiB message limit wait in the
queue when an agent with four free slots polls for all of them. The control plane spreads them over several
PollJobs answers, each under the limit, so every job runs on its first lease: none is offered in an answer the
agent cannot receive, so no lease is burnt and no attempt is used up.

The shipped processes: `connector controlplane serve` and `python -m connector run`, over real gRPC. The jobs
are `noop` syncs whose integration settings carry a padding string (the noop integration ignores it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.controlplane.settings import ServerSettings
from connector.controlplane.store import delivered_size
from connector.v1 import admin_pb2
from tests.agent.agent_harness import CONNECTOR_ID
from tests.faults.conftest import AgentProcess, ControlPlaneProcess, job_figures, summarize, terminal_records

JOBS = 4
BUDGET = ServerSettings().poll_budget_bytes  # the control plane runs with the default 4 MiB limit


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "padding",
    [
        pytest.param(1_100_000, id="1.1MB"),  # the red team's case: 4 x 1.1 MB is one 4.4 MB answer
        pytest.param(BUDGET - 1024, id="near-limit"),  # each just under the single-job limit: one per answer
    ],
)
def test_large_jobs_queued_together_all_run_on_their_first_lease(
    sandbox: Any, agents: list[AgentProcess], control_plane: ControlPlaneProcess, tmp_path: Path, padding: int
) -> None:
    cp = control_plane.start()
    records = [
        cp.admin.enqueue_sync(CONNECTOR_ID, "noop-large", "noop", {"padding": "x" * padding}) for _ in range(JOBS)
    ]
    sizes = [delivered_size(record.job) for record in records]
    assert sum(sizes) > 4 * 1024 * 1024 and all(size <= BUDGET for size in sizes)

    # Queued before the agent starts: its first poll asks for all four (one per free slot).
    agent = AgentProcess(sandbox, cp.address, tmp_path / "agent.log", CONNECTOR_CONCURRENCY=str(JOBS))
    agents.append(agent)
    final = terminal_records(cp.admin, [r.job.id for r in records], timeout=90)

    figures = job_figures(final)
    summarize(
        "large_jobs",
        job_bytes=max(sizes),
        total_bytes=sum(sizes),
        budget=BUDGET,
        **figures,
        requeued=sum(r.job.attempt - 1 for r in final),  # each re-queue adds an attempt
    )
    assert all(r.state == admin_pb2.JOB_STATE_SUCCEEDED for r in final), [(r.state, r.error) for r in final]
    assert [r.job.attempt for r in final] == [1] * JOBS  # every job on its first lease
    assert figures["stale_finishes_refused"] == 0
    assert len(agent.events("job_started")) == JOBS  # each ran once
