"""Fault 2: two replicas run; the one holding a grant is SIGKILLed in the middle of it. The other replica
finishes the grant at attempt 2, and the target shows exactly one effect."""

from __future__ import annotations

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
)


@pytest.mark.timeout(180)
def test_replica_sigkilled_mid_grant_other_replica_finishes_it(sandbox, agents, tmp_path):
    with start_cp(cp_settings(tmp_path, lease_seconds=3.0, heartbeat_interval=1.0)) as cp:
        replicas = {
            host: AgentProcess(sandbox, cp.address, tmp_path / f"{host}.log", CONNECTOR_HOST_ID=host)
            for host in ("replica-a", "replica-b")
        }
        agents.extend(replicas.values())
        for replica in replicas.values():
            replica.wait_event("registered", 60)
        # Hold the first association long enough to kill whichever replica makes it.
        sandbox.faults.latency(5.0, service="eks", operation="AssociateAccessPolicy", count=1)
        grant = eks_grants(sandbox, "replica", 1)[0]
        record = enqueue_grant(cp.admin, sandbox, grant)
        wait_for(lambda: sandbox.faults.calls("eks", "AssociateAccessPolicy") >= 1, 60, "grant mid-way")
        holder = cp.admin.get(record.job.id).leased_by
        assert holder in replicas, holder
        replicas[holder].stop()  # SIGKILL
        survivor = next(r for host, r in replicas.items() if host != holder)

        done = cp.admin.wait(record.job.id, timeout=90)

        def finished_by_survivor() -> list[dict[str, object]]:
            return [e for e in survivor.events("job_finished") if e.get("job_id") == record.job.id]

        wait_for(finished_by_survivor, 30, "the survivor's job line")  # logged just after FinishJob
        finished = finished_by_survivor()
        one = effect(sandbox, grant)
        creates = sandbox.faults.calls("eks", "CreateAccessEntry")
        revoke_all(cp.admin, sandbox, [grant])
        left = connector_entries(sandbox, "replica-")
        summarize(
            "replica_sigkill_mid_grant",
            **job_figures([done]),
            duplicated=int(one.entries > 1 or one.associations > 1 or one.grant_tags > 1),
            grants_left_behind=len(left),
            killed=holder,
            finished_by=next(h for h in replicas if h != holder),
            create_access_entry_calls=creates,
        )
        assert done.state == admin_pb2.JOB_STATE_SUCCEEDED, done
        assert done.job.attempt == 2
        assert [e["attempt"] for e in finished] == [2] and finished[0]["outcome"] == "succeeded"
        assert one.once, one
        assert creates == 1  # attempt 2 found the entry attempt 1 made and did not create another
        assert not left
        assert survivor.proc.poll() is None
