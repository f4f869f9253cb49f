"""Fault 1: the control plane is SIGKILLed while grants run and restarted on the same SQLite file. No job is
lost, every job ends once, and each grant's effect exists exactly once in the sandbox."""

from __future__ import annotations

import time

import pytest

from connector.v1 import admin_pb2
from tests.faults.conftest import (
    AgentProcess,
    connector_entries,
    effect,
    eks_grants,
    enqueue_grant,
    job_figures,
    revoke_all,
    summarize,
    terminal_records,
)

GRANTS = 8


@pytest.mark.timeout(240)
def test_controlplane_sigkill_and_restart_loses_no_job(sandbox, control_plane, agents, tmp_path):
    cp = control_plane.start()
    agent = AgentProcess(sandbox, cp.address, tmp_path / "agent.log", CONNECTOR_CONCURRENCY="4")
    agents.append(agent)
    agent.wait_event("registered", 60)
    # Each association takes a while, so several grants are in the middle of their work at the kill.
    sandbox.faults.latency(1.5, service="eks", operation="AssociateAccessPolicy")
    grants = eks_grants(sandbox, "cpkill", GRANTS)
    job_ids = [enqueue_grant(cp.admin, sandbox, g).job.id for g in grants]
    agent.wait_event("job_started", 60, count=3)

    cp.kill()
    killed_at = time.monotonic()
    time.sleep(6.0)  # down longer than a lease (4 s): finishes and heartbeats fail, the work goes on
    cp.start()
    down = time.monotonic() - killed_at

    records = terminal_records(cp.admin, job_ids, timeout=150)
    sandbox.faults.clear()
    figures = job_figures(records)
    effects = {g.grant_id: effect(sandbox, g) for g in grants}
    duplicated = sum(1 for e in effects.values() if e.entries > 1 or e.associations > 1 or e.grant_tags > 1)
    missing = [gid for gid, e in effects.items() if not e.once]
    refused = len(agent.events("job_result_refused_stale"))
    undelivered = len(agent.events("job_result_undelivered"))

    revoke_all(cp.admin, sandbox, grants)
    left = connector_entries(sandbox, "cpkill-")
    summarize(
        "controlplane_sigkill_restart",
        **figures,
        duplicated=duplicated,
        grants_left_behind=len(left),
        down_seconds=round(down, 1),
        agent_results_refused_stale=refused,
        agent_results_undelivered=undelivered,
        agent_reconnects=len(agent.events("reconnecting")) + len(agent.events("connection_lost")),
    )
    assert all(r.state == admin_pb2.JOB_STATE_SUCCEEDED for r in records), [
        (r.job.id, admin_pb2.JobState.Name(r.state), r.error.code, r.error.message) for r in records
    ]
    assert not missing, effects
    assert duplicated == 0
    assert not left
    assert agent.proc.poll() is None, "the agent must survive the control plane's death"
