"""The agent against the real reference control plane (loopback gRPC), in-process: the job path."""

from __future__ import annotations

import asyncio
import hashlib
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from connector.agent.executor import JobExecutor, JobReport, RunningJob
from connector.agent.inventory_upload import ChunkBuilder, item_to_proto
from connector.agent.steering import Steering
from connector.config import load_config
from connector.integrations.base import GrantRequest, InventoryItem, JobContext, RevokeRequest, Services
from connector.integrations.capabilities import Integration, IntegrationSpec, KindSpec
from connector.integrations.effect import Effect, Level
from connector.jobs.dispatcher import Dispatcher
from connector.jobs.registry import Registry
from connector.jobs.runtime import build_dispatcher
from connector.v1 import admin_pb2, connector_pb2

from .agent_harness import CONNECTOR_ID, AgentThread, agent_env, cp_settings, start_cp, wait_for

pytestmark = pytest.mark.timeout(120)

SUCCEEDED = admin_pb2.JOB_STATE_SUCCEEDED
FAILED = admin_pb2.JOB_STATE_FAILED
CANCELLED = admin_pb2.JOB_STATE_CANCELLED


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_register_poll_run_finish_and_health_endpoints(tmp_path: Path) -> None:
    with start_cp(cp_settings(tmp_path)) as cp, AgentThread(agent_env(cp.address)) as agent:
        base = f"http://{agent.runtime.health_address}"
        assert _get(base + "/readyz")[0] == 200
        wait_for(lambda: _get(base + "/healthz")[0] == 200, 10, "healthy")
        grant = cp.admin.enqueue_grant(
            CONNECTOR_ID, "noop-1", "noop", grant_id="g-1", principal="alice", target={"sleep_seconds": 0.1}
        )
        record = cp.admin.wait(grant.job.id, timeout=30)
        assert record.state == SUCCEEDED, record
        assert record.result["grant_id"] == "g-1"
        assert record.leased_by == agent.runtime.config.host_id
        # The agent counts the job once its report is answered, a moment after the control plane recorded it.
        counted = 'connector_jobs_total{integration="noop",kind="grant",outcome="succeeded"} 1.0'
        wait_for(lambda: counted in _get(base + "/metrics")[1], 10, "the job counted in /metrics")
        status, metrics = _get(base + "/metrics")
        assert status == 200
        assert "connector_poll_latency_seconds_count" in metrics
        assert agent.stop() == 0


def test_slots_are_never_exceeded(tmp_path: Path) -> None:
    with start_cp(cp_settings(tmp_path)) as cp, AgentThread(agent_env(cp.address, CONNECTOR_CONCURRENCY="2")) as agent:
        ids = [
            cp.admin.enqueue_grant(
                CONNECTOR_ID, "noop-1", "noop", grant_id=f"g-{i}", principal="p", target={"sleep_seconds": 0.6}
            ).job.id
            for i in range(5)
        ]
        peak_leased = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            leased = cp.admin.list(CONNECTOR_ID, state=admin_pb2.JOB_STATE_LEASED)
            peak_leased = max(peak_leased, len(leased))
            if all(cp.admin.get(i).state == SUCCEEDED for i in ids):
                break
            time.sleep(0.05)
        assert all(cp.admin.get(i).state == SUCCEEDED for i in ids)
        assert agent.runtime.slots.peak == 2
        assert 1 <= peak_leased <= 2  # the control plane never leased more than the free slots


def test_heartbeat_keeps_a_long_job_alive_past_the_lease(tmp_path: Path) -> None:
    settings = cp_settings(tmp_path, lease_seconds=5.0, heartbeat_interval=1.0)
    with start_cp(settings) as cp, AgentThread(agent_env(cp.address)) as agent:
        job = cp.admin.enqueue_grant(
            CONNECTOR_ID, "noop-1", "noop", grant_id="g-long", principal="p", target={"sleep_seconds": 7.5}
        )
        record = cp.admin.wait(job.job.id, timeout=40)
        assert record.state == SUCCEEDED, record
        assert record.job.attempt == 1  # the lease never expired
        assert record.result["slept_seconds"] == 7.5
        assert agent.runtime.metrics.heartbeat_failures._value.get() == 0


def test_cancel_is_delivered_by_heartbeat(tmp_path: Path) -> None:
    with start_cp(cp_settings(tmp_path)) as cp, AgentThread(agent_env(cp.address)) as agent:
        job = cp.admin.enqueue_grant(
            CONNECTOR_ID, "noop-1", "noop", grant_id="g-c", principal="p", target={"sleep_seconds": 60}
        )
        wait_for(lambda: agent.runtime.running, 20, "job running in the agent")
        started = time.monotonic()
        cp.admin.cancel(job.job.id)
        record = cp.admin.wait(job.job.id, timeout=30)
        assert record.state == CANCELLED, record
        assert record.error.code == "CANCELLED"
        assert time.monotonic() - started < 20  # not the 60 s the job would have slept


def test_sync_streams_3000_items_in_chunks_verified_by_digest(tmp_path: Path) -> None:
    with start_cp(cp_settings(tmp_path)) as cp, AgentThread(agent_env(cp.address)):
        job = cp.admin.enqueue_sync(CONNECTOR_ID, "noop-inv", "noop", {"items": 3000})
        record = cp.admin.wait(job.job.id, timeout=60)
        assert record.state == SUCCEEDED, record
        assert record.inventory_items == 3000
        assert record.result["inventory"]["items"] == 3000
        assert record.result["inventory"]["chunks"] == 6  # 500 items each, the last one carries the digest
        inventory = cp.admin.inventory("noop-inv", limit=5000)
        assert inventory.total == 3000
        stored = {item.id: item.SerializeToString(deterministic=True) for item in inventory.items}
        expected = [
            item_to_proto(InventoryItem(type="noop.item", id=f"item-{i}", name=f"item {i}", attributes={"n": i}))
            for i in range(3000)
        ]
        # What the control plane stored is byte-for-byte what the integration emitted, so the agent's digest
        # (which the server checked: the job would have failed otherwise) covered exactly these items.
        assert stored == {item.id: item.SerializeToString(deterministic=True) for item in expected}
        sha = hashlib.sha256()
        for item in expected:
            sha.update(item.SerializeToString(deterministic=True))
        builder = ChunkBuilder()
        for item in expected:
            builder.add(item)
        assert builder.finish()[1].sha256 == sha.hexdigest()


def test_malformed_jobs_get_non_retryable_errors_and_the_agent_keeps_serving(tmp_path: Path) -> None:
    with start_cp(cp_settings(tmp_path)) as cp, AgentThread(agent_env(cp.address)) as agent:
        admin = cp.admin
        unknown = admin.enqueue_sync(CONNECTOR_ID, "x-1", "no_such_integration")
        bad_sleep = admin.enqueue_grant(
            CONNECTOR_ID, "noop-1", "noop", grant_id="g-b", principal="p", target={"sleep_seconds": "soon"}
        )
        bad_items = admin.enqueue_sync(CONNECTOR_ID, "noop-2", "noop", {"items": -5})
        bad_fail = admin.enqueue_grant(
            CONNECTOR_ID, "noop-1", "noop", grant_id="g-f", principal="p", target={"fail_with": "NOT_A_CODE"}
        )
        expected = {
            unknown.job.id: ("UNSUPPORTED", "no_such_integration"),
            bad_sleep.job.id: ("INVALID_JOB", "sleep_seconds"),
            bad_items.job.id: ("INVALID_JOB", "items"),
            bad_fail.job.id: ("INVALID_JOB", "fail_with"),
        }
        for job_id, (code, mentions) in expected.items():
            record = admin.wait(job_id, timeout=30)
            assert record.state == FAILED, record
            assert record.error.code == code
            assert mentions in record.error.message
            assert not record.error.retryable
            assert record.job.attempt == 1
        good = admin.enqueue_grant(CONNECTOR_ID, "noop-1", "noop", grant_id="g-ok", principal="p")
        assert admin.wait(good.job.id, timeout=30).state == SUCCEEDED
        assert agent.runtime.health.registered


def test_a_job_without_kind_is_a_non_retryable_invalid_job(tmp_path: Path) -> None:
    """The reference control plane refuses to enqueue such a job, so drive the agent's executor directly
    (real dispatcher, real worker pool) with what a buggy control plane could send."""

    async def go() -> JobReport:
        with ThreadPoolExecutor(1) as pool:
            executor = JobExecutor(build_dispatcher(load_config(agent_env("127.0.0.1:1"))), pool, None, "c", Steering)  # type: ignore[arg-type]
            job = connector_pb2.Job(id="j-1", attempt=1, integration={"id": "noop-1", "type": "noop"})
            return await executor.run(RunningJob(job=job, lease_until=time.monotonic() + 30))

    report = asyncio.run(go())
    assert report.outcome == "failed"
    assert report.error is not None
    assert report.error.code == "INVALID_JOB" and not report.error.retryable
    assert "no kind" in report.error.message


def test_job_deadline_from_the_control_plane_is_enforced(tmp_path: Path) -> None:
    with start_cp(cp_settings(tmp_path)) as cp, AgentThread(agent_env(cp.address)):
        job = cp.admin.enqueue_grant(
            CONNECTOR_ID, "noop-1", "noop", grant_id="g-t", principal="p", target={"sleep_seconds": 30}, timeout=1.5
        )
        started = time.monotonic()
        record = cp.admin.wait(job.job.id, timeout=40)
        assert record.state == FAILED, record
        assert record.error.code == "TIMEOUT"
        assert time.monotonic() - started < 25  # well before the 30 s sleep


def test_a_lost_lease_stops_the_job_and_its_result_is_dropped(tmp_path: Path) -> None:
    """The control plane is away longer than the lease: on its return the job is re-queued (attempt 2),
    the agent hears `lost` on its next heartbeat and stops attempt 1 without reporting it."""
    settings = cp_settings(tmp_path, lease_seconds=3.0, heartbeat_interval=1.0)
    cp = start_cp(settings)
    port = cp.port
    try:
        with AgentThread(agent_env(cp.address, CONNECTOR_DRAIN_GRACE_SECONDS="1")) as agent:
            job_id = cp.admin.enqueue_grant(
                CONNECTOR_ID, "noop-1", "noop", grant_id="g-lost", principal="p", target={"sleep_seconds": 30}
            ).job.id
            wait_for(lambda: agent.runtime.running, 20, "job running in the agent")
            cp.stop()
            time.sleep(4.0)
            cp = start_cp(cp_settings(tmp_path, lease_seconds=3.0, heartbeat_interval=1.0, bind=f"127.0.0.1:{port}"))
            lost = agent.runtime.metrics.jobs_total.labels(kind="grant", integration="noop", outcome="lost")
            wait_for(lambda: lost._value.get() == 1, 40, "attempt 1 stopped as lost")
            record = cp.admin.get(job_id)
            assert record.job.attempt >= 2, record
            assert record.stale_finishes_refused == 0  # attempt 1's result was never sent
    finally:
        cp.stop()


class BurnIntegration(Integration):
    type_id = "burn"
    default_resource_type = "burn"


class Burn:
    """CPU-bound work holding the GIL as much as Python lets it (no I/O, no sleep); grants nothing."""

    def __init__(self, integration: BurnIntegration) -> None:
        self.integration = integration

    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect:
        return Effect(kind="burn", principal=request.principal, level=Level.NONE, expires_at=request.expires_at)

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]:
        end = time.monotonic() + float(request.target["seconds"])
        loops = 0
        while time.monotonic() < end:
            loops += 1
        return {"loops": loops}

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        return {}


def test_cpu_bound_jobs_on_every_slot_do_not_starve_heartbeats(tmp_path: Path) -> None:
    registry = Registry()
    registry.add(IntegrationSpec(BurnIntegration))
    registry.add(KindSpec("burn", "burn", Burn, changes_nothing=True))
    settings = cp_settings(tmp_path, lease_seconds=4.0, heartbeat_interval=1.0)
    with start_cp(settings) as cp:
        agent = AgentThread(agent_env(cp.address, CONNECTOR_CONCURRENCY="2"))
        agent.runtime.dispatcher = Dispatcher(registry, Services(connector_id=CONNECTOR_ID))
        with agent:
            ids = [
                cp.admin.enqueue_grant(
                    CONNECTOR_ID, "burn-1", "burn", grant_id=f"g-{i}", principal="p", target={"seconds": 5.5}
                ).job.id
                for i in range(2)
            ]
            for job_id in ids:
                record = cp.admin.wait(job_id, timeout=60)
                assert record.state == SUCCEEDED, record
                assert record.job.attempt == 1  # leases (4 s) renewed throughout 5.5 s of CPU-bound work
            assert agent.runtime.metrics.heartbeat_failures._value.get() == 0
