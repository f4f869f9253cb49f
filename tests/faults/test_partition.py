"""Fault 4: a partition between an agent and the control plane, longer than a lease, in the middle of a
grant. The lease expires, a replica on the healthy side runs the job again; when the partition heals, the
cut-off agent's late FinishJob reaches the server and is refused as stale. The grant is applied once and the
job ends once.

The partition holds bytes rather than dropping them, so the cut-off agent's open long-poll stays open: to
the server it is a live poll, and it may be handed the re-queued attempt 2, which then sits in the black hole
and expires in turn (the healthy replica runs attempt 3). That answer reaches the agent only at the heal,
more than a poll wait plus a lease after the poll was sent: the agent must drop it, not run an attempt whose
lease is certainly gone. PARTITION is chosen for that (> poll wait 5 s + the agent's lease 5 s) while the
held FinishJob (sent ~4 s into the partition, 10 s deadline) still arrives alive."""

from __future__ import annotations

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
)
from tests.faults.proxy import PartitionProxy

LEASE = 3.0
PARTITION = 10.8


@pytest.mark.timeout(180)
def test_partition_longer_than_a_lease_no_double_apply_stale_finish_refused(sandbox, agents, tmp_path):
    with (
        start_cp(cp_settings(tmp_path, lease_seconds=LEASE, heartbeat_interval=1.0)) as cp,
        PartitionProxy(cp.address) as proxy,
    ):
        cut_off = AgentProcess(sandbox, proxy.address, tmp_path / "cut-off.log", CONNECTOR_HOST_ID="cut-off")
        agents.append(cut_off)
        cut_off.wait_event("registered", 60)
        sandbox.faults.latency(4.0, service="eks", operation="AssociateAccessPolicy", count=1)
        grant = eks_grants(sandbox, "partition", 1)[0]
        record = enqueue_grant(cp.admin, sandbox, grant)
        wait_for(lambda: sandbox.faults.calls("eks", "AssociateAccessPolicy") >= 1, 60, "grant mid-way")
        proxy.hold()
        held_at = time.monotonic()

        healthy = AgentProcess(sandbox, cp.address, tmp_path / "healthy.log", CONNECTOR_HOST_ID="healthy")
        agents.append(healthy)
        wait_for(lambda: cp.admin.get(record.job.id).state == admin_pb2.JOB_STATE_SUCCEEDED, 60, "re-run finished")
        time.sleep(max(0.0, held_at + PARTITION - time.monotonic()))
        partition_seconds = time.monotonic() - held_at
        proxy.heal()
        wait_for(lambda: cp.admin.get(record.job.id).stale_finishes_refused >= 1, 30, "the late finish refused")
        cut_off.wait_event("job_result_refused_stale", 30)
        time.sleep(2.0)  # the healed agent's heartbeats and polls go on: nothing else may change
        done = cp.admin.get(record.job.id)
        cut_off_finishes = [e for e in cut_off.events("job_finished") if e.get("job_id") == record.job.id]
        one = effect(sandbox, grant)
        creates = sandbox.faults.calls("eks", "CreateAccessEntry")
        revoke_all(cp.admin, sandbox, [grant])
        left = connector_entries(sandbox, "partition-")
        summarize(
            "partition_longer_than_lease",
            **job_figures([done]),
            duplicated=int(not one.once and one.entries > 0),
            grants_left_behind=len(left),
            partition_seconds=round(partition_seconds, 1),
            lease_seconds=LEASE,
            create_access_entry_calls=creates,
            late_jobs_dropped=len(cut_off.events("job_dropped_lease_expired")),
        )
        assert done.state == admin_pb2.JOB_STATE_SUCCEEDED and done.job.attempt >= 2, done
        assert partition_seconds > LEASE
        # The cut-off agent ran attempt 1 only: a re-queued attempt that reached it late was dropped.
        assert [e["attempt"] for e in cut_off.events("job_started") if e.get("job_id") == record.job.id] == [1]
        # Every result the cut-off agent sent after the partition was refused by the fence; only the healthy
        # replica's finish of the current attempt counts.
        assert cut_off_finishes and all(e["delivery"] in ("refused_stale", "lost") for e in cut_off_finishes)
        assert done.stale_finishes_refused == sum(1 for e in cut_off_finishes if e["delivery"] == "refused_stale")
        healthy_finishes = [e for e in healthy.events("job_finished") if e.get("job_id") == record.job.id]
        assert [(e["attempt"], e["delivery"]) for e in healthy_finishes] == [(done.job.attempt, "recorded")]
        assert one.once, one
        assert not left
        assert cut_off.proc.poll() is None and healthy.proc.poll() is None
