"""`python -m connector run` as a real process against the real control plane: signals, crashes,
restarts, refused identity."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from connector.agent.channel import ControlPlaneClient, make_channel
from connector.agent.executor import JobReport, RunningJob
from connector.agent.runtime import AgentRuntime
from connector.config import load_config
from connector.controlplane.server import ControlPlaneThread
from connector.jobs.runtime import build_dispatcher
from connector.v1 import admin_pb2, connector_pb2

from .agent_harness import (
    CONNECTOR_ID,
    TOKEN,
    AgentThread,
    agent_env,
    cp_settings,
    read_lines,
    spawn_agent,
    start_cp,
    wait_for,
    wait_log,
)

pytestmark = pytest.mark.timeout(120)

SUCCEEDED = admin_pb2.JOB_STATE_SUCCEEDED
LEASED = admin_pb2.JOB_STATE_LEASED
QUEUED = admin_pb2.JOB_STATE_QUEUED


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def _sleep_job(cp: ControlPlaneThread, seconds: float, grant_id: str) -> str:
    record = cp.admin.enqueue_grant(
        CONNECTOR_ID, "noop-1", "noop", grant_id=grant_id, principal="p", target={"sleep_seconds": seconds}
    )
    return record.job.id


def test_sigterm_lets_the_running_job_finish_and_report_then_exits_0(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    with start_cp(cp_settings(tmp_path)) as cp:
        proc = spawn_agent(agent_env(cp.address, CONNECTOR_DRAIN_GRACE_SECONDS="20"), log)
        try:
            health = wait_log(log, "health_listening", 30)["address"]
            wait_log(log, "registered", 30)
            wait_log(log, "expiry_sweeper_started", 5)  # connector run wires the jobs layer's sweeper
            assert _status(f"http://{health}/readyz") == 200
            job_id = _sleep_job(cp, 2.0, "g-drain")
            wait_log(log, "job_started", 20, job_id=job_id)
            proc.send_signal(signal.SIGTERM)
            wait_log(log, "drain_started", 10)
            assert _status(f"http://{health}/readyz") == 503  # draining: no new traffic
            late = _sleep_job(cp, 0, "g-late")  # enqueued after SIGTERM: must not be taken
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
        record = cp.admin.get(job_id)
        assert record.state == SUCCEEDED, record
        assert record.job.attempt == 1
        assert cp.admin.get(late).state == QUEUED
        events = [line["event"] for line in read_lines(log)]
        assert events.index("drain_started") < events.index("job_finished") < events.index("agent_stopped")
        finished = next(line for line in read_lines(log) if line["event"] == "job_finished")
        assert finished["delivery"] == "recorded" and finished["outcome"] == "succeeded"
        assert {"job_id", "kind", "integration", "attempt", "outcome", "error_code", "duration_ms"} <= set(finished)
        assert TOKEN not in log.read_text()


def test_drain_grace_expiry_cancels_and_reports_a_retryable_cancel(tmp_path: Path) -> None:
    with start_cp(cp_settings(tmp_path, retry_backoff=60.0)) as cp:
        agent = AgentThread(agent_env(cp.address, CONNECTOR_DRAIN_GRACE_SECONDS="1")).start()
        job_id = _sleep_job(cp, 60, "g-slow")
        wait_for(lambda: agent.runtime.running, 20, "job running in the agent")
        started = time.monotonic()
        assert agent.stop() == 0
        assert time.monotonic() - started < 15
        record = cp.admin.get(job_id)
        # Re-queued for another replica (attempt 2), with the reason recorded.
        assert record.state == QUEUED, record
        assert record.job.attempt == 2
        assert record.error.code == "CANCELLED" and record.error.retryable


def test_sigkill_mid_job_second_agent_finishes_at_attempt_2_and_a_late_finish_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "agent-a.log"
    with start_cp(cp_settings(tmp_path, lease_seconds=3.0, heartbeat_interval=1.0)) as cp:
        proc = spawn_agent(agent_env(cp.address), log)
        try:
            wait_log(log, "registered", 30)
            job_id = _sleep_job(cp, 3.0, "g-kill")
            wait_log(log, "job_started", 20, job_id=job_id)
            first_holder = cp.admin.get(job_id).leased_by
            proc.kill()
            proc.wait(timeout=10)
        finally:
            proc.kill()
        with AgentThread(agent_env(cp.address)) as agent_b:
            record = cp.admin.wait(job_id, timeout=40)
            assert record.state == SUCCEEDED, record
            assert record.job.attempt == 2
            assert record.leased_by == agent_b.runtime.config.host_id != first_holder

        # Agent A's result, had it survived, arrives late through the agent's delivery path: the fence
        # refuses it once, and the agent gives up at once instead of resending until its lease ends.
        async def late_finish() -> tuple[str, float]:
            config = load_config(agent_env(cp.address))
            runtime = AgentRuntime(config, build_dispatcher(config))
            runtime._client = ControlPlaneClient(config, make_channel(config))
            job = connector_pb2.Job(id=job_id, attempt=1)
            report = JobReport("succeeded", None, {"slept_seconds": 3.0}, 3.0, "grant", "noop")
            started = time.monotonic()
            try:
                delivery = await runtime._deliver(RunningJob(job=job, lease_until=time.monotonic() + 60), report)
            finally:
                await runtime._client.close()
            return delivery, time.monotonic() - started

        delivery, took = asyncio.run(late_finish())
        assert delivery == "refused_stale"
        assert took < 10
        record = cp.admin.get(job_id)
        assert record.stale_finishes_refused == 1
        assert record.state == SUCCEEDED and record.job.attempt == 2


def test_control_plane_restart_on_the_same_database_while_a_job_runs(tmp_path: Path) -> None:
    settings = cp_settings(tmp_path, lease_seconds=15.0)
    cp = start_cp(settings)
    port = cp.port
    with AgentThread(agent_env(cp.address)) as agent:
        job_id = _sleep_job(cp, 3.0, "g-restart")
        wait_for(lambda: agent.runtime.running, 20, "job running in the agent")
        cp.stop()
        time.sleep(1.0)
        cp = ControlPlaneThread(cp_settings(tmp_path, lease_seconds=15.0, bind=f"127.0.0.1:{port}")).start()
        try:
            record = cp.admin.wait(job_id, timeout=60)
            assert record.state == SUCCEEDED, record
            assert record.job.attempt == 1
            wait_for(lambda: agent.runtime.health.registered, 40, "re-registered")
            assert agent.runtime.reconnects >= 1
            # and it keeps serving after the restart
            again = _sleep_job(cp, 0, "g-after")
            assert cp.admin.wait(again, timeout=30).state == SUCCEEDED
        finally:
            agent.stop()
            cp.stop()


@pytest.mark.parametrize(
    ("overrides", "mentions"),
    [
        ({"CONNECTOR_TOKEN": "wrong-token-abcdef123"}, "CONNECTOR_TOKEN"),
        ({"CONNECTOR_ID": "conn-other"}, "CONNECTOR_ID"),
    ],
)
def test_refused_identity_exits_3_with_a_clear_message_and_no_retry_loop(
    tmp_path: Path, overrides: dict[str, str], mentions: str
) -> None:
    log = tmp_path / "agent.log"
    with start_cp(
        cp_settings(tmp_path, connector_tokens={CONNECTOR_ID: TOKEN, "conn-other": "other-token-xyz123"})
    ) as cp:
        proc = spawn_agent(agent_env(cp.address, **overrides), log)
        try:
            code = proc.wait(timeout=30)
        finally:
            proc.kill()
    text = log.read_text()
    assert code == 3, text
    assert mentions in text
    assert "wrong-token-abcdef123" not in text and TOKEN not in text
    assert sum(1 for line in read_lines(log) if line.get("event") == "connecting") == 1  # no hot loop
    assert any(line.get("event") == "connection_refused" for line in read_lines(log))


def test_a_second_signal_forces_exit(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    with start_cp(cp_settings(tmp_path)) as cp:
        proc = spawn_agent(agent_env(cp.address, CONNECTOR_DRAIN_GRACE_SECONDS="60"), log)
        try:
            wait_log(log, "registered", 30)
            job_id = _sleep_job(cp, 60, "g-stuck")
            wait_log(log, "job_started", 20, job_id=job_id)
            proc.send_signal(signal.SIGTERM)
            wait_log(log, "drain_started", 10)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 128 + signal.SIGINT
        finally:
            proc.kill()
        assert any(line.get("event") == "forced_exit" for line in read_lines(log))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc")
def test_agent_memory_does_not_grow_with_inventory_size(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"

    def peak_rss_kb(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    with start_cp(cp_settings(tmp_path)) as cp:
        proc = spawn_agent(agent_env(cp.address), log)
        try:
            wait_log(log, "registered", 30)
            peaks = []
            for n in (10_000, 100_000):
                job = cp.admin.enqueue_sync(CONNECTOR_ID, f"inv-{n}", "noop", {"items": n})
                record = cp.admin.wait(job.job.id, timeout=120)
                assert record.state == SUCCEEDED and record.inventory_items == n, record
                peaks.append(peak_rss_kb(proc.pid))
        finally:
            proc.kill()
    # Ten times the items, about the same peak: items stream through a bounded queue, never accumulate.
    # (Holding 90,000 more items would cost tens of MB.)
    assert peaks[1] - peaks[0] < 8_000, peaks
