"""Fault 5: a throttling storm. Half of all EKS and Organizations calls are throttled (the services' own
throttling errors) for a minute, or until the jobs are done if that is sooner, while a sync and a grant
run: both complete, and the inventory the control plane holds (Admin.QueryInventory) is the same as a sync
without faults produced.

botocore's standard retries back off exponentially (up to 20 s a wait, 10 attempts): with half of the calls
failing, a call costs about 1.5 s on average, so this sync's ~50 mostly sequential calls take about a
minute inside the storm; what the storm may change is the time, never the result.

The grant runs alongside the sync, so the stormy sync may see the grant's own access entry: it is left out
of the comparison."""

from __future__ import annotations

import json
import threading
import time

import pytest
from google.protobuf import json_format

from connector.controlplane.client import AdminClient
from connector.v1 import admin_pb2
from tests.agent.agent_harness import CONNECTOR_ID, cp_settings, start_cp
from tests.faults.conftest import (
    AgentProcess,
    connector_entries,
    effect,
    eks_grants,
    enqueue_grant,
    job_figures,
    org_settings,
    revoke_all,
    summarize,
    terminal_records,
)

TYPES = ["organization", "eks_cluster"]
FRACTION = 0.5
STORM_SECONDS = 60.0


def inventory(admin: AdminClient, integration_id: str) -> set[tuple[str, ...]]:
    response = admin.inventory(integration_id=integration_id, limit=5000)
    assert response.total == len(response.items), "raise the limit"
    return {
        (
            i.type,
            i.id,
            i.name,
            i.account_id,
            i.region,
            i.parent_id,
            json.dumps(json_format.MessageToDict(i.attributes), sort_keys=True),
        )
        for i in response.items
    }


def sync(admin: AdminClient, sandbox, integration_id: str) -> admin_pb2.JobRecord:
    return admin.enqueue_sync(
        CONNECTOR_ID, integration_id, "aws_organization", org_settings(sandbox), resource_types=TYPES
    )


@pytest.mark.timeout(420)
def test_throttling_storm_same_inventory_and_grant(sandbox, agents, tmp_path):
    with start_cp(cp_settings(tmp_path, lease_seconds=10.0, heartbeat_interval=1.0)) as cp:
        agent = AgentProcess(sandbox, cp.address, tmp_path / "agent.log")
        agents.append(agent)
        agent.wait_event("registered", 60)
        calm = cp.admin.wait(sync(cp.admin, sandbox, "org-calm").job.id, timeout=120)
        assert calm.state == admin_pb2.JOB_STATE_SUCCEEDED, calm
        baseline = inventory(cp.admin, "org-calm")

        rules = [
            sandbox.faults.throttle(fraction=FRACTION, service="organizations", seed=1),
            sandbox.faults.throttle(fraction=FRACTION, service="eks", seed=2),
        ]

        def calm_down() -> None:
            for rule in rules:
                sandbox.faults.remove(rule)

        sandbox.faults.reset_counts()
        storm = threading.Timer(STORM_SECONDS, calm_down)
        started = time.monotonic()
        storm.start()
        grant = eks_grants(sandbox, "storm", 1)[0]
        jobs = [sync(cp.admin, sandbox, "org-storm"), enqueue_grant(cp.admin, sandbox, grant)]
        records = terminal_records(cp.admin, [r.job.id for r in jobs], timeout=240)
        stormed = min(time.monotonic() - started, STORM_SECONDS)
        counts = sandbox.faults.counts()
        stormy = {i for i in inventory(cp.admin, "org-storm") if grant.principal not in " ".join(i)}
        one = effect(sandbox, grant)
        revoke_all(cp.admin, sandbox, [grant])  # the revoke runs in the storm too, if it still blows
        storm.cancel()
        calm_down()
        left = connector_entries(sandbox, "storm-")
        throttled = sum(counts["faulted"].values())
        calls = sum(n for op, n in counts["by_operation"].items() if op.split(":")[0] in ("eks", "organizations"))
        summarize(
            "throttling_storm",
            **job_figures(records),
            duplicated=int(one.entries > 1 or one.associations > 1 or one.grant_tags > 1),
            grants_left_behind=len(left),
            calls=calls,
            throttled=throttled,
            inventory_items=len(stormy),
            inventory_same=stormy == baseline,
            storm_seconds=round(stormed, 1),
        )
        assert all(r.state == admin_pb2.JOB_STATE_SUCCEEDED for r in records), records
        assert throttled >= 20, counts  # the storm really blew (about half of the calls made inside it)
        assert stormy == baseline, (sorted(baseline - stormy)[:5], sorted(stormy - baseline)[:5])
        assert one.once
        assert not left
