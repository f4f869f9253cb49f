"""Fault 6: the control plane is down while grants expire. The agent's sweeper revokes them on time (the
sandbox shows them gone while the control plane is still down), and the revokes are reported once it is back
(Admin.ListEvents), one event per grant.

Time is accelerated: the brief's "down for ten minutes while grants expire" becomes grants that expire a few
seconds after they are made, a sweep every second (CONNECTOR_EXPIRY_SWEEP_SECONDS) and an outage that lasts
until every grant is gone and a few sweeps more."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from connector.v1 import admin_pb2, connector_pb2
from tests.agent.agent_harness import CONNECTOR_ID, wait_for
from tests.faults.conftest import (
    AgentProcess,
    connector_entries,
    effect,
    eks_grants,
    enqueue_grant,
    job_figures,
    summarize,
    terminal_records,
)

GRANTS = 3
EXPIRES_IN = 6.0
SWEEP = 1.0
EVENT_TYPE = "grant.expired_revoked"


@pytest.mark.timeout(240)
def test_grants_expire_and_are_revoked_while_the_control_plane_is_down(sandbox, control_plane, agents, tmp_path):
    cp = control_plane.start()
    agent = AgentProcess(
        sandbox,
        cp.address,
        tmp_path / "agent.log",
        CONNECTOR_EXPIRY_SWEEP_SECONDS=str(SWEEP),
        CONNECTOR_STATE_DIR=str(tmp_path),
    )
    agents.append(agent)
    agent.wait_event("registered", 60)
    grants = eks_grants(sandbox, "expiry", GRANTS)
    expires_at = time.time() + EXPIRES_IN
    records = [enqueue_grant(cp.admin, sandbox, g, expires_in=EXPIRES_IN) for g in grants]
    granted = terminal_records(cp.admin, [r.job.id for r in records], timeout=60)
    assert all(r.state == admin_pb2.JOB_STATE_SUCCEEDED for r in granted), granted
    assert all(effect(sandbox, g).once for g in grants)
    assert time.time() < expires_at, "the grants took longer than their lifetime; raise EXPIRES_IN"

    cp.kill()
    down_at = time.time()
    gone_at: dict[str, float] = {}

    def all_gone() -> bool:
        for g in grants:
            if g.grant_id not in gone_at and effect(sandbox, g).absent:
                gone_at[g.grant_id] = time.time()
        return len(gone_at) == GRANTS

    wait_for(all_gone, 60, "every expired grant revoked")
    still_down = cp.proc is not None and cp.proc.poll() is not None
    agent.wait_event("events_not_reported", 30)  # the outbox holds the events while nobody listens
    time.sleep(3 * SWEEP)  # later sweeps find nothing more to do
    cp.start()
    down_seconds = time.time() - down_at

    def reported() -> list[connector_pb2.ConnectorEvent]:
        return [e for e in cp.admin.events(CONNECTOR_ID, EVENT_TYPE, limit=100) if e.grant_id.startswith("expiry-")]

    wait_for(lambda: {e.grant_id for e in reported()} >= {g.grant_id for g in grants}, 60, "events reported")
    time.sleep(2 * SWEEP)  # a resend of the same events must not add any
    events = reported()
    per_grant = Counter(e.grant_id for e in events)
    lags = [gone_at[g.grant_id] - expires_at for g in grants]
    left = connector_entries(sandbox, "expiry-")
    summarize(
        "expiry_while_controlplane_down",
        **job_figures(granted),
        duplicated=sum(n - 1 for n in per_grant.values()),
        grants_left_behind=len(left),
        revoked_while_down=GRANTS if still_down else 0,
        max_revoke_lag_seconds=round(max(lags), 1),
        events_reported=len(events),
        down_seconds=round(down_seconds, 1),
        sweep_seconds=SWEEP,
    )
    assert still_down, "the grants must be revoked before the control plane returns"
    assert max(lags) < 15, lags  # expiry + one sweep, with room for a loaded machine
    assert sorted(per_grant.values()) == [1] * GRANTS, events
    assert all(e.outcome == connector_pb2.OUTCOME_SUCCEEDED for e in events), events
    assert {e.integration_id for e in events} == {"org"}
    assert not left
