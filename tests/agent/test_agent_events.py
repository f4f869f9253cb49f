"""The expiry sweep loop and ReportEvents, against the real control plane. The sweeper is the agent's
boundary to the jobs layer (connector.jobs.expiry): here a scripted one, so the test controls what expires."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.v1 import admin_pb2, connector_pb2

from .agent_harness import CONNECTOR_ID, AgentThread, agent_env, cp_settings, start_cp, wait_for

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Revoked:
    id: str
    grant_id: str

    def to_proto(self) -> connector_pb2.ConnectorEvent:
        return connector_pb2.ConnectorEvent(
            id=self.id,
            type="grant.expired_revoked",
            integration_id="noop-1",
            grant_id=self.grant_id,
            outcome=connector_pb2.OUTCOME_SUCCEEDED,
        )


class ScriptedSweeper:
    def __init__(self) -> None:
        self.observed: list[tuple[str, str, dict[str, Any]]] = []
        self.confirmed: list[str] = []
        self.sweeps = 0
        self._due: list[Revoked] = []
        self._lock = threading.Lock()

    def expire(self, event: Revoked) -> None:
        with self._lock:
            self._due.append(event)

    def offer(self, integration: Any) -> None:  # the dispatcher's listener: settings that validated
        self.observed.append((integration.integration_id, integration.type_id, dict(integration.settings)))

    def confirm(self, integration: Any) -> None:
        self.confirmed.append(integration.integration_id)

    def status(self) -> dict[str, Any]:
        return {}

    def sweep(self) -> list[Revoked]:
        with self._lock:
            due, self._due = self._due, []
            self.sweeps += 1
        return due


def _agent(address: str, sweeper: ScriptedSweeper) -> AgentThread:
    return AgentThread(agent_env(address), sweeper=sweeper, sweep_interval=0.2)


def _event_ids(cp: Any) -> set[str]:
    return {event.id for event in cp.admin.events(CONNECTOR_ID)}


def test_sweeper_learns_job_integrations_and_its_events_are_reported(tmp_path: Path) -> None:
    sweeper = ScriptedSweeper()
    with start_cp(cp_settings(tmp_path)) as cp, _agent(cp.address, sweeper):
        job = cp.admin.enqueue_grant(
            CONNECTOR_ID, "noop-1", "noop", grant_id="g-1", principal="p", settings={"sleep_seconds": 0}
        )
        assert cp.admin.wait(job.job.id, timeout=30).state == admin_pb2.JOB_STATE_SUCCEEDED
        wait_for(lambda: sweeper.observed, 10, "integration observed")
        assert sweeper.observed[0] == ("noop-1", "noop", {"sleep_seconds": 0.0})
        wait_for(lambda: sweeper.confirmed == ["noop-1"], 10, "the settings confirmed by a job that succeeded")
        sweeper.expire(Revoked("expiry-1", "g-1"))
        wait_for(lambda: "expiry-1" in _event_ids(cp), 20, "event reported")
        stored = cp.admin.events(CONNECTOR_ID, grant_id="g-1")
        assert [e.type for e in stored] == ["grant.expired_revoked"]


def test_sweeps_continue_while_the_control_plane_is_away_and_events_are_delivered_later(tmp_path: Path) -> None:
    sweeper = ScriptedSweeper()
    cp = start_cp(cp_settings(tmp_path))
    port = cp.port
    try:
        with _agent(cp.address, sweeper) as agent:
            cp.stop()
            sweeper.expire(Revoked("expiry-down", "g-2"))
            before = sweeper.sweeps
            wait_for(lambda: sweeper.sweeps >= before + 3, 20, "sweeps while the control plane is down")
            loop = agent.runtime.sweep_loop
            assert loop is not None and loop.reporter.pending == 1  # kept, not lost
            cp = start_cp(cp_settings(tmp_path, bind=f"127.0.0.1:{port}"))
            wait_for(lambda: "expiry-down" in _event_ids(cp), 40, "event delivered after the restart")
            assert loop.reporter.pending == 0
    finally:
        cp.stop()


def test_undelivered_events_survive_an_agent_restart(tmp_path: Path) -> None:
    """With CONNECTOR_STATE_DIR, an expiry event the control plane never received is not lost when the agent
    stops: the restarted agent loads its outbox and delivers it."""
    state = tmp_path / "state"
    state.mkdir()
    cp = start_cp(cp_settings(tmp_path))
    port = cp.port
    env = agent_env(cp.address, CONNECTOR_STATE_DIR=str(state))
    try:
        sweeper = ScriptedSweeper()
        with AgentThread(env, sweeper=sweeper, sweep_interval=0.2) as agent:
            cp.stop()
            sweeper.expire(Revoked("expiry-restart", "g-3"))
            loop = agent.runtime.sweep_loop
            assert loop is not None
            wait_for(lambda: loop.reporter.pending == 1, 20, "the event waits in the outbox")
        outbox = state / "events-outbox"
        assert len(outbox.read_text().splitlines()) == 1  # on disk, the agent gone
        cp = start_cp(cp_settings(tmp_path, bind=f"127.0.0.1:{port}"))
        with AgentThread(env, sweeper=ScriptedSweeper(), sweep_interval=0.2):
            wait_for(lambda: "expiry-restart" in _event_ids(cp), 40, "the restarted agent delivered it")
        assert outbox.read_text() == ""
    finally:
        cp.stop()
