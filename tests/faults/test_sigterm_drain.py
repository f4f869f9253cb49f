"""Fault 3: SIGTERM while several grants run. The agent stops polling, every running grant finishes and is
reported inside the drain grace, nothing is left half-applied, and the queued rest waits for a replica."""

from __future__ import annotations

import signal
import time

import pytest

from connector.v1 import admin_pb2
from tests.agent.agent_harness import cp_settings, start_cp, wait_for
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

GRACE = 15.0
RUNNING = 4
QUEUED = 2


@pytest.mark.timeout(180)
def test_sigterm_drains_running_grants_inside_the_grace(sandbox, agents, tmp_path):
    with start_cp(cp_settings(tmp_path, lease_seconds=10.0, heartbeat_interval=1.0)) as cp:
        env = {"CONNECTOR_CONCURRENCY": str(RUNNING), "CONNECTOR_DRAIN_GRACE_SECONDS": str(GRACE)}
        agent = AgentProcess(sandbox, cp.address, tmp_path / "agent.log", **env)
        agents.append(agent)
        agent.wait_event("registered", 60)
        sandbox.faults.latency(3.0, service="eks", operation="AssociateAccessPolicy")
        grants = eks_grants(sandbox, "drain", RUNNING + QUEUED)
        records = [enqueue_grant(cp.admin, sandbox, g) for g in grants]
        wait_for(lambda: sandbox.faults.calls("eks", "AssociateAccessPolicy") >= RUNNING, 60, "every slot mid-grant")
        agent.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = agent.proc.wait(timeout=GRACE + 30)
        drain_seconds = time.monotonic() - signalled

        after_drain = {r.job.id: cp.admin.get(r.job.id) for r in records}
        ran = [rec for rec in after_drain.values() if rec.state != admin_pb2.JOB_STATE_QUEUED]
        half_applied = [
            g.grant_id for g in grants if (e := effect(sandbox, g)).entries and not e.once
        ]  # an entry without its association or its record
        drained = agent.events("drain_finished")

        # The queued rest is for another replica: start one and let it finish them.
        sandbox.faults.clear()
        successor = AgentProcess(sandbox, cp.address, tmp_path / "successor.log")
        agents.append(successor)
        final = terminal_records(cp.admin, [r.job.id for r in records], timeout=90)
        effects = [effect(sandbox, g) for g in grants]
        revoke_all(cp.admin, sandbox, grants)
        left = connector_entries(sandbox, "drain-")
        summarize(
            "sigterm_drain",
            **job_figures(final),
            duplicated=sum(1 for e in effects if e.entries > 1 or e.associations > 1 or e.grant_tags > 1),
            grants_left_behind=len(left),
            running_at_sigterm=len(ran),
            finished_in_grace=sum(1 for rec in ran if rec.state == admin_pb2.JOB_STATE_SUCCEEDED),
            half_applied=len(half_applied),
            drain_seconds=round(drain_seconds, 1),
            grace_seconds=GRACE,
            exit_code=code,
        )
        assert code == 0, agent.log.read_text()[-3000:]
        assert drain_seconds < GRACE
        assert drained and drained[-1]["unfinished"] == 0
        assert len(ran) == RUNNING, "the agent took no job after SIGTERM and dropped none it had"
        assert all(rec.state == admin_pb2.JOB_STATE_SUCCEEDED and rec.job.attempt == 1 for rec in ran), ran
        assert not half_applied
        assert all(r.state == admin_pb2.JOB_STATE_SUCCEEDED for r in final)
        assert all(e.once for e in effects)
        assert not left
