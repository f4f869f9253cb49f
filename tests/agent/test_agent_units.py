"""Unit tests of the agent's own boundaries: steering clamps, slot accounting, health endpoints,
start-up configuration errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from connector.agent.health import HealthServer, HealthState
from connector.agent.metrics import Metrics
from connector.agent.slots import Slots
from connector.agent.steering import Steering
from connector.v1 import connector_pb2


def _hello(poll: float, hb: float, lease: float) -> connector_pb2.HelloResponse:
    resp = connector_pb2.HelloResponse()
    resp.poll_wait.FromNanoseconds(int(poll * 1e9))
    resp.heartbeat_interval.FromNanoseconds(int(hb * 1e9))
    resp.lease_duration.FromNanoseconds(int(lease * 1e9))
    return resp


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ((20, 5, 30), (20, 5, 30)),
        ((0.001, 0.001, 0.5), (1, 1, 5)),  # hostile tiny values: no hot loop
        ((3600, 3600, 10**6), (60, 60, 3600)),  # huge values: clamped
        ((20, 30, 30), (20, 10, 30)),  # heartbeat kept below lease/3
        ((20, 5, 5), (20, 5 / 3, 5)),
    ],
)
def test_steering_is_clamped(given: tuple[float, float, float], expected: tuple[float, float, float]) -> None:
    s = Steering.from_hello(_hello(*given))
    assert (s.poll_wait, s.heartbeat_interval, s.lease_duration) == pytest.approx(expected)


def test_missing_steering_values_use_defaults() -> None:
    s = Steering.from_hello(connector_pb2.HelloResponse())
    assert (s.poll_wait, s.heartbeat_interval, s.lease_duration) == (20, 5, 30)


def test_job_deadline_is_translated_from_server_clock() -> None:
    resp = _hello(20, 5, 30)
    resp.server_time.FromSeconds(int(time.time()) + 3600)  # server clock one hour ahead
    s = Steering.from_hello(resp)
    deadline = connector_pb2.Job().deadline
    deadline.FromSeconds(int(time.time()) + 3600 + 100)  # 100 s from the server's now
    local = s.local_deadline(deadline)
    assert local is not None
    assert 95 < local - time.monotonic() < 105
    assert s.local_deadline(connector_pb2.Job().deadline) is None


def test_slots_take_all_free_and_never_exceed_capacity() -> None:
    async def go() -> None:
        slots = Slots(3)
        assert await slots.take_all() == 3
        waiter = asyncio.create_task(slots.take_all())
        await asyncio.sleep(0.05)
        assert not waiter.done()  # no free slot: waits instead of polling for 0 jobs
        await slots.release(2)
        assert await waiter == 2
        assert slots.in_use == 3 and slots.peak == 3
        with pytest.raises(RuntimeError):
            await slots.release(4)
        await slots.release(3)
        assert slots.free == 3

    asyncio.run(go())


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_health_endpoints_follow_state_on_an_ephemeral_port() -> None:
    state = HealthState()
    metrics = Metrics()
    server = HealthServer("127.0.0.1:0", state, metrics.registry)
    server.start()
    try:
        base = f"http://{server.address}"
        assert not server.address.endswith(":0")
        assert _get(base + "/healthz")[0] == 503
        assert _get(base + "/readyz") == (503, "not registered with the control plane\n")
        now = time.monotonic()
        state.loop_alive = state.last_attempt = now
        state.registered = True
        assert _get(base + "/healthz") == (200, "ok\n")
        assert _get(base + "/readyz")[0] == 200
        state.last_attempt = now - state.attempt_stale_after - 1
        assert _get(base + "/healthz") == (503, "no poll or heartbeat attempt recently\n")
        state.last_attempt = now
        state.loop_alive = now - 60
        assert _get(base + "/healthz") == (503, "control loop not running\n")
        state.draining = True
        assert _get(base + "/readyz") == (503, "draining\n")
        metrics.jobs_total.labels(kind="sync", integration="noop", outcome="succeeded").inc()
        status, text = _get(base + "/metrics")
        assert status == 200
        assert 'connector_jobs_total{integration="noop",kind="sync",outcome="succeeded"} 1.0' in text
        for name in (
            "connector_job_duration_seconds",
            "connector_poll_latency_seconds",
            "connector_reconnects_total",
            "connector_jobs_running",
            "connector_heartbeat_failures_total",
        ):
            assert name in text
        assert _get(base + "/other")[0] == 404
    finally:
        server.stop()


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", "run"], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.timeout(120)
def test_bad_config_exits_2_naming_the_variable(tmp_path: object) -> None:
    import os

    base = {"PATH": os.environ.get("PATH", "")}
    missing = _run(base)
    assert missing.returncode == 2
    assert "CONNECTOR_ID" in missing.stderr and "CONTROL_PLANE_URL" in missing.stderr
    bad = _run(
        base
        | {
            "CONNECTOR_ID": "c1",
            "CONTROL_PLANE_URL": "http://127.0.0.1:1",
            "CONNECTOR_ALLOW_INSECURE_LOOPBACK": "true",
            "CONNECTOR_TOKEN": "tok-secret-123",
            "CONNECTOR_CONCURRENCY": "0",
        }
    )
    assert bad.returncode == 2
    assert "CONNECTOR_CONCURRENCY" in bad.stderr
    assert "tok-secret-123" not in bad.stderr + bad.stdout
    insecure = _run(
        base | {"CONNECTOR_ID": "c1", "CONTROL_PLANE_URL": "http://10.0.0.1:80", "CONNECTOR_TOKEN": "x" * 10}
    )
    assert insecure.returncode == 2
    assert "CONTROL_PLANE_URL" in insecure.stderr
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _run(
            base
            | {
                "CONNECTOR_ID": "c1",
                "CONTROL_PLANE_URL": "http://127.0.0.1:1",
                "CONNECTOR_ALLOW_INSECURE_LOOPBACK": "true",
                "CONNECTOR_TOKEN": "tok-secret-123",
                "CONNECTOR_HEALTH_ADDR": f"127.0.0.1:{port}",
            }
        )
    assert busy.returncode == 2
    assert "CONNECTOR_HEALTH_ADDR" in busy.stderr


def test_a_job_thread_that_ignores_cancellation_is_abandoned_and_reported_retryable() -> None:
    """At the end of the drain a thread stuck in a blocking call is left behind; the job is still reported,
    as a retryable CANCELLED failure, so the control plane runs it again."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from connector.agent.executor import JobExecutor, RunningJob
    from connector.jobs.dispatcher import JobOutcome

    release = threading.Event()

    class StuckDispatcher:  # stands in for an integration blocked in an SDK call that ignores ctx.cancelled
        def execute(self, job: object, ctx: object) -> JobOutcome:
            release.wait(30)
            return JobOutcome("succeeded")

    async def go() -> object:
        with ThreadPoolExecutor(1) as pool:
            executor = JobExecutor(StuckDispatcher(), pool, None, "c", Steering)  # type: ignore[arg-type]
            running = RunningJob(job=connector_pb2.Job(id="j", attempt=1), lease_until=time.monotonic() + 30)
            task = asyncio.create_task(executor.run(running))
            await asyncio.sleep(0.1)
            running.cancel("drain")
            await asyncio.sleep(0.1)
            assert not task.done()  # the thread ignores the cancel
            running.abandon.set()
            report = await asyncio.wait_for(task, 5)
            release.set()
            return report

    report = asyncio.run(go())
    assert report.outcome == "failed"  # type: ignore[attr-defined]
    assert report.error.code == "CANCELLED" and report.error.retryable  # type: ignore[attr-defined]
