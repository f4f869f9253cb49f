"""Supervision of the agent's long-running tasks, and jobs whose content the agent cannot read.

Unit tests drive the Supervisor with real asyncio tasks that crash (and the real health server). The process
test runs the shipped `python -m connector run` (expiry sweeper on, state dir set) against the real control
plane and sends it jobs holding NaN and Infinity: it must fail them with a typed error and keep serving.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import connector.agent.runtime as runtime_module
from connector.agent.channel import FatalConnectionError
from connector.agent.health import HealthServer, HealthState
from connector.agent.metrics import Metrics
from connector.agent.supervisor import Supervisor
from connector.logging import configure_logging, register_secret
from connector.v1 import admin_pb2

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
from .test_agent_events import Revoked, ScriptedSweeper

pytestmark = pytest.mark.timeout(120)

SUCCEEDED = admin_pb2.JOB_STATE_SUCCEEDED
FAILED = admin_pb2.JOB_STATE_FAILED
TERMINAL = {SUCCEEDED, FAILED, admin_pb2.JOB_STATE_CANCELLED}


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def _until(predicate: Callable[[], bool]) -> None:
    """Poll a plain condition (what the tasks under test record), failing after 10 s."""
    async with asyncio.timeout(10):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


def _supervisor(metrics: Metrics, health: HealthState, **options: Any) -> tuple[Supervisor, list[Exception]]:
    fatal: list[Exception] = []
    supervisor = Supervisor(metrics, health, stopping=lambda: False, on_fatal=fatal.append, **options)
    return supervisor, fatal


class Crashing:
    """A task that raises on its first `crashes` runs, then runs until cancelled."""

    def __init__(self, crashes: int, error: Callable[[], BaseException] = lambda: RuntimeError("boom")) -> None:
        self.crashes = crashes
        self.error = error
        self.starts: list[float] = []

    async def run(self) -> None:
        self.starts.append(time.monotonic())
        if len(self.starts) <= self.crashes:
            raise self.error()
        await asyncio.Event().wait()


# -- the supervisor ------------------------------------------------------------------------------------


def test_a_crashing_task_is_restarted_after_its_backoff_and_counted() -> None:
    async def go() -> None:
        metrics, health = Metrics(), HealthState(registered=True)
        # multiplier 0: the jitter window is empty, so every wait is exactly the floor
        supervisor, fatal = _supervisor(metrics, health, floor=0.3, multiplier=0)
        task = Crashing(crashes=3)
        with capture_logs() as logs:
            supervisor.start("flaky", task.run)
            await _until(lambda: len(task.starts) >= 4)
            await supervisor.close()
        gaps = [b - a for a, b in zip(task.starts, task.starts[1:], strict=False)]
        assert len(gaps) == 3 and all(0.3 <= gap < 1.0 for gap in gaps), gaps
        assert supervisor.restarts("flaky") == 3 and not fatal
        crashes = [line for line in logs if line["event"] == "task_crashed"]
        assert len(crashes) == 3  # once per crash
        assert all(c["task"] == "flaky" and c["error"] == "RuntimeError" and c["exc_info"] for c in crashes)
        assert [c["restart_in_seconds"] for c in crashes] == [0.3, 0.3, 0.3]
        assert supervisor.health("flaky").state == "stopped"  # close() is the normal stop: no crash logged
        assert not [line for line in logs if line["event"] == "task_stopped_unexpectedly"]

    asyncio.run(go())


def test_readyz_is_not_ready_while_a_task_waits_for_its_restart_and_metrics_show_it() -> None:
    async def go() -> None:
        metrics, health = Metrics(), HealthState(registered=True)
        server = HealthServer("127.0.0.1:0", health, metrics.registry)
        server.start()
        base = f"http://{server.address}"
        try:
            supervisor, _ = _supervisor(metrics, health, floor=1.5, multiplier=0)
            steady, flaky = Crashing(crashes=0), Crashing(crashes=1)
            supervisor.start("steady", steady.run)
            supervisor.start("flaky", flaky.run)
            await asyncio.sleep(0.2)  # flaky crashed at once: down for 1.5 s

            status, body = await asyncio.to_thread(_get, base + "/readyz")
            assert status == 503, body
            lines = body.splitlines()
            assert lines[0] == "supervised task down: flaky"
            assert "task steady: running" in lines
            assert any(
                line.startswith("task flaky: restarting in 1.5 s after RuntimeError (restart 1)") for line in lines
            )
            _, text = await asyncio.to_thread(_get, base + "/metrics")
            assert 'connector_task_up{task="flaky"} 0.0' in text
            assert 'connector_task_up{task="steady"} 1.0' in text
            assert 'connector_task_restarts_total{task="flaky"} 0.0' in text

            await _until(lambda: len(flaky.starts) >= 2)
            status, body = await asyncio.to_thread(_get, base + "/readyz")
            assert status == 200, body
            assert body == "ok\ntask steady: running\ntask flaky: running\n"
            _, text = await asyncio.to_thread(_get, base + "/metrics")
            assert 'connector_task_up{task="flaky"} 1.0' in text
            assert 'connector_task_restarts_total{task="flaky"} 1.0' in text
            assert 'connector_task_restarts_total{task="steady"} 0.0' in text
            await supervisor.close()
        finally:
            server.stop()

    asyncio.run(go())


def test_the_backoff_grows_to_its_cap_and_starts_afresh_after_a_healthy_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # every jittered wait at the top of its window
    metrics, health = Metrics(), HealthState()
    supervisor, _ = _supervisor(metrics, health, floor=1.0, cap=30.0, multiplier=1.0)
    assert [supervisor.restart_delay(n) for n in range(1, 7)] == [2.0, 3.0, 5.0, 9.0, 17.0, 30.0]
    assert supervisor.restart_delay(1000) == 30.0
    monkeypatch.undo()
    assert all(1.0 <= supervisor.restart_delay(n) <= 30.0 for n in range(1, 50))

    async def go() -> list[float]:
        runs = iter([0.0, 0.0, 0.0, 0.35, 0.0])  # three quick crashes, a healthy run, a quick crash

        async def task() -> None:
            duration = next(runs, None)
            if duration is None:
                await asyncio.Event().wait()
            await asyncio.sleep(duration or 0)
            raise ValueError("again")

        monkeypatch.setattr(random, "uniform", lambda low, high: high)
        quick, _ = _supervisor(Metrics(), HealthState(), floor=0.01, multiplier=0.02, healthy_after=0.3)
        with capture_logs() as logs:
            quick.start("t", task)
            await _until(lambda: quick.restarts("t") >= 5)
            await quick.close()
        return [line["restart_in_seconds"] for line in logs if line["event"] == "task_crashed"]

    assert asyncio.run(go()) == [0.03, 0.05, 0.09, 0.03, 0.05]


def test_a_task_that_returns_while_the_agent_runs_is_restarted_and_one_that_returns_at_stop_is_not() -> None:
    async def go() -> None:
        stopping = False
        supervisor = Supervisor(
            Metrics(), HealthState(), stopping=lambda: stopping, on_fatal=lambda e: None, floor=0.05, multiplier=0
        )
        returns: list[float] = []

        async def returning() -> None:
            returns.append(time.monotonic())

        with capture_logs() as logs:
            supervisor.start("returns", returning)
            await _until(lambda: len(returns) >= 3)
            stopping = True
            await supervisor.settled("returns")
            await asyncio.sleep(0.2)
        count = len(returns)
        await asyncio.sleep(0.2)
        assert len(returns) == count  # returned at stop: done, not restarted
        assert supervisor.health("returns").state == "stopped"
        unexpected = [line for line in logs if line["event"] == "task_stopped_unexpectedly"]
        assert len(unexpected) == count - 1
        assert "returned while the agent was not stopping" in unexpected[0]["message"]
        await supervisor.close()

    asyncio.run(go())


def test_fatal_connection_error_is_not_restarted_but_stops_the_agent() -> None:
    async def go() -> None:
        supervisor, fatal = _supervisor(Metrics(), HealthState(), floor=0.01, multiplier=0)
        task = Crashing(crashes=5, error=lambda: FatalConnectionError("the control plane refused the token"))
        supervisor.start("control-loop", task.run)
        await supervisor.settled("control-loop")
        await asyncio.sleep(0.1)
        assert len(task.starts) == 1 and len(fatal) == 1
        assert supervisor.restarts("control-loop") == 0
        assert not supervisor.health("control-loop").up
        await supervisor.close()

    asyncio.run(go())


def test_a_crash_is_logged_with_its_traceback_and_the_token_redacted() -> None:
    register_secret(TOKEN)
    stream = io.StringIO()
    configure_logging("info", "json", stream)

    async def go() -> None:
        supervisor, _ = _supervisor(Metrics(), HealthState(), floor=5.0, multiplier=0)
        supervisor.start("leaky", Crashing(1, lambda: RuntimeError(f"call failed, Bearer {TOKEN}")).run)
        await asyncio.sleep(0.1)
        await supervisor.close()

    asyncio.run(go())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    crash = next(line for line in lines if line["event"] == "task_crashed")
    assert crash["task"] == "leaky" and "Traceback" in crash["exception"] and "RuntimeError" in crash["exception"]
    assert TOKEN not in stream.getvalue()


# -- what a job holds ------------------------------------------------------------------------------------


def test_a_job_the_agent_cannot_log_still_runs_and_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = runtime_module.log

    class Unloggable:
        def __getattr__(self, name: str) -> Any:
            method = getattr(real, name)

            def call(event: str, *args: Any, **kwargs: Any) -> Any:
                if event == "job_started":
                    raise ValueError("cannot render this job")
                return method(event, *args, **kwargs)

            return call

    monkeypatch.setattr(runtime_module, "log", Unloggable())
    with (
        start_cp(cp_settings(tmp_path)) as cp,
        AgentThread(agent_env(cp.address), sweeper=ScriptedSweeper(), sweep_interval=0.2) as agent,
    ):
        job = cp.admin.enqueue_grant(CONNECTOR_ID, "noop-1", "noop", grant_id="g-odd", principal="p")
        assert cp.admin.wait(job.job.id, timeout=30).state == SUCCEEDED
        supervisor = agent.runtime.supervisor
        assert supervisor is not None and supervisor.restarts("control-loop") == 0


def test_a_sweep_that_hangs_does_not_hold_up_the_event_reports(tmp_path: Path) -> None:
    """Reports are their own task: an event that waited for the control plane is delivered once it is back,
    while the sweep that came after it is still stuck (before, the sweep loop also did the reporting)."""

    class HangingSweeper(ScriptedSweeper):
        def __init__(self) -> None:
            super().__init__()
            self.hang = threading.Event()
            self.release = threading.Event()

        def sweep(self) -> list[Revoked]:
            if self.hang.is_set():
                self.release.wait(60)
            return super().sweep()

    sweeper = HangingSweeper()
    cp = start_cp(cp_settings(tmp_path))
    port = cp.port
    try:
        with AgentThread(agent_env(cp.address), sweeper=sweeper, sweep_interval=0.2) as agent:
            cp.stop()
            sweeper.expire(Revoked("expiry-hang", "g-hang"))
            reporter = agent.runtime.reporter
            assert reporter is not None
            wait_for(lambda: reporter.pending == 1, 20, "the event waits in the outbox")
            sweeper.hang.set()
            sweeps = sweeper.sweeps
            time.sleep(0.5)
            assert sweeper.sweeps <= sweeps + 1  # the sweep is stuck
            cp = start_cp(cp_settings(tmp_path, bind=f"127.0.0.1:{port}"))
            wait_for(lambda: any(e.id == "expiry-hang" for e in cp.admin.events(CONNECTOR_ID)), 40, "reported")
            assert reporter.pending == 0
            sweeper.release.set()
    finally:
        sweeper.release.set()
        cp.stop()


# -- the shipped process ------------------------------------------------------------------------------


def _poisoned(cp: Any, name: str, settings: Mapping[str, Any]) -> str:
    record = cp.admin.enqueue_grant(
        CONNECTOR_ID, f"noop-{name}", "noop", grant_id=f"g-{name}", principal="p", settings=settings
    )
    return str(record.job.id)


def test_jobs_holding_nan_or_infinity_fail_typed_and_the_shipped_agent_keeps_serving(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    log = tmp_path / "agent.log"
    with start_cp(cp_settings(tmp_path)) as cp:
        env = agent_env(cp.address, CONNECTOR_EXPIRY_SWEEP_SECONDS="1", CONNECTOR_STATE_DIR=str(state))
        proc = spawn_agent(env, log)
        try:
            health = wait_log(log, "health_listening", 30)["address"]
            wait_log(log, "registered", 30)
            wait_log(log, "expiry_sweeper_started", 5)
            pid = proc.pid
            poisoned = [
                _poisoned(cp, "bad-number-1", {"region": "us-east-1", "x": float("nan")}),
                _poisoned(cp, "bad-number-2", {"limits": {"max": float("inf")}}),
            ]
            for job_id in poisoned:
                wait_for(
                    lambda job_id=job_id: cp.admin.get(job_id).state in TERMINAL or proc.poll() is not None,
                    30,
                    f"job {job_id} finished",
                )
                assert proc.poll() is None, f"the agent exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
                record = cp.admin.get(job_id)
                assert record.state == FAILED, record
                assert record.error.code == "INVALID_JOB" and not record.error.retryable, record.error
                assert "NaN or Infinity" in record.error.message
                assert record.job.attempt == 1

            ok = cp.admin.enqueue_grant(CONNECTOR_ID, "noop-1", "noop", grant_id="g-after", principal="p")
            assert cp.admin.wait(ok.job.id, timeout=30).state == SUCCEEDED
            # Settings that validate reach the sweeper's state file (a cluster nobody listens at: the sync fails,
            # the settings are still valid); the poisoned ones above never did.
            k8s = cp.admin.enqueue_sync(
                CONNECTOR_ID, "k8s-ok", "kubernetes", {"connection": "host", "host": "https://127.0.0.1:1"}
            )
            assert cp.admin.wait(k8s.job.id, timeout=60).state in TERMINAL
            assert proc.poll() is None and proc.pid == pid

            time.sleep(2.5)  # a few more sweeps (one a second): the sweeper lives on too
            status, body = _get(f"http://{health}/readyz")
            assert status == 200, body
            for task in ("control-loop", "heartbeat", "tick", "expiry-sweep", "event-report"):
                assert f"task {task}: running" in body
            _, metrics = _get(f"http://{health}/metrics")
            assert 'connector_task_restarts_total{task="control-loop"} 0.0' in metrics
            assert 'connector_task_restarts_total{task="expiry-sweep"} 0.0' in metrics

            lines = read_lines(log)
            # The settings never reached the sweeper (only settings that validated do), and nothing logs the value.
            remembered = (state / "expiry-sweeper.json").read_text()
            assert "k8s-ok" in remembered and "bad-number" not in remembered
            text = log.read_text()
            assert ": NaN" not in text and ": Infinity" not in text  # no line carries the values themselves
            events = {line.get("event") for line in lines}
            assert not events & {"task_crashed", "task_stopped_unexpectedly", "job_started_without_details"}

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
        assert TOKEN not in log.read_text()
