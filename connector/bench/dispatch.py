"""Benchmark 2: dispatch of no-op jobs through the real control plane and real gRPC.

Latency = the `noop` grant's own wall-clock start (`started_at` in its result, taken when the executor hands
it the job) minus the driver's wall-clock time just before the EnqueueJob RPC. Open-loop offered loads from
10 jobs/s up to saturation (achieved < 85% of offered, or p99 above 2 s), with 1 and 3 agent replicas. The
throughput figure ("drain") enqueues a backlog with no agent running, starts the replicas, and divides the
jobs by the time from the first executor start to the last finish.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.bench.procs import CONNECTOR_ID, AgentProcess, BenchError, ControlPlaneProcess, cpu_seconds
from connector.bench.stats import percentile
from connector.v1 import admin_pb2

# CONNECTOR_CONCURRENCY of each replica: its maximum, as a replica set up for throughput would be. A no-op job
# takes no time, so the slots bound how many poll -> run -> report round trips overlap (with 16 slots and one
# FinishJob per job, before FinishJobs: ~940 jobs/s).
AGENT_CONCURRENCY = 64
ENQUEUE_THREADS = 16


@dataclass(frozen=True)
class DispatchSize:
    loads: tuple[int, ...]
    replicas: tuple[int, ...]
    min_jobs: int  # per load, so p99 has samples
    min_seconds: float
    drain_jobs: int


SIZES = {
    "smoke": DispatchSize(loads=(10, 50), replicas=(1,), min_jobs=10, min_seconds=0.5, drain_jobs=20),
    "full": DispatchSize(
        loads=(10, 50, 100, 200, 400, 800, 1600), replicas=(1, 3), min_jobs=200, min_seconds=4.0, drain_jobs=3000
    ),
}


def _ts(stamp: Any) -> float:
    return float(stamp.seconds) + float(stamp.nanos) / 1e9


class Enqueuer:
    """Enqueues no-op grants from a thread pool (one shared gRPC channel) and remembers when each was sent."""

    def __init__(self, cp: ControlPlaneProcess) -> None:
        self.cp = cp
        self.pool = ThreadPoolExecutor(max_workers=ENQUEUE_THREADS, thread_name_prefix="enqueue")
        self.sent: dict[str, float] = {}
        self._lock = threading.Lock()
        self._n = 0

    def one(self, tag: str) -> str:
        with self._lock:
            self._n += 1
            n = self._n
        sent = time.time()
        record = self.cp.admin.enqueue_grant(
            CONNECTOR_ID, "noop-bench", "noop", grant_id=f"{tag}-{n}", principal="bench"
        )
        with self._lock:
            self.sent[record.job.id] = sent
        return str(record.job.id)

    def open_loop(self, rate: float, count: int, tag: str) -> list[Future[str]]:
        futures: list[Future[str]] = []
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(self.pool.submit(self.one, tag))
        return futures

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _quiesce(cp: ControlPlaneProcess, deadline: float) -> None:
    """Wait until no job is queued or leased, with one light ListJobs every 50 ms: a WaitJob per job while
    they run would be as many RPCs as the jobs' own, on the control plane being measured."""
    while time.monotonic() < deadline:
        if not any(
            cp.admin.list(CONNECTOR_ID, state, limit=1)
            for state in (admin_pb2.JOB_STATE_QUEUED, admin_pb2.JOB_STATE_LEASED)
        ):
            return
        time.sleep(0.05)


def _collect(cp: ControlPlaneProcess, enqueuer: Enqueuer, job_ids: list[str], timeout: float) -> list[dict[str, float]]:
    """Each job's send, executor start and finish times, read once they have all ended."""
    rows = []
    deadline = time.monotonic() + timeout
    _quiesce(cp, deadline)
    for job_id in job_ids:
        record = cp.admin.wait(job_id, timeout=max(1.0, deadline - time.monotonic()))
        if record.state != admin_pb2.JOB_STATE_SUCCEEDED:
            raise BenchError(f"no-op job {job_id} ended {admin_pb2.JobState.Name(record.state)}: {record.error}")
        started = record.result.fields["started_at"].number_value  # the noop grant's own clock
        rows.append({"sent": enqueuer.sent[job_id], "started": started, "finished": _ts(record.finished)})
    return rows


def _load(cp: ControlPlaneProcess, agents: list[AgentProcess], rate: int, size: DispatchSize) -> dict[str, Any]:
    count = max(size.min_jobs, int(rate * size.min_seconds))
    enqueuer = Enqueuer(cp)
    cpu0 = cpu_seconds(cp.proc.pid), sum(cpu_seconds(a.proc.pid) for a in agents)
    try:
        futures = enqueuer.open_loop(rate, count, f"load{rate}")
        job_ids = [f.result() for f in futures]
    finally:
        enqueuer.close()
    rows = _collect(cp, enqueuer, job_ids, timeout=300)
    latencies = [r["started"] - r["sent"] for r in rows]
    first_sent = min(r["sent"] for r in rows)
    span_sent = max(r["sent"] for r in rows) - first_sent
    span = max(r["finished"] for r in rows) - first_sent
    return {
        "replicas": len(agents),
        "offered_per_second": rate,
        "jobs": len(rows),
        "sent_per_second": round((len(rows) - 1) / span_sent, 1) if span_sent > 0 else None,
        "completed_per_second": round(len(rows) / span, 1) if span > 0 else None,
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "cpu_seconds": {
            "controlplane": round(cpu_seconds(cp.proc.pid) - cpu0[0], 2),
            "agents": round(sum(cpu_seconds(a.proc.pid) for a in agents) - cpu0[1], 2),
        },
    }


def _drain(cp: ControlPlaneProcess, workdir: Path, replicas: int, jobs: int) -> dict[str, Any]:
    enqueuer = Enqueuer(cp)
    try:
        job_ids = [f.result() for f in [enqueuer.pool.submit(enqueuer.one, f"drain{replicas}") for _ in range(jobs)]]
    finally:
        enqueuer.close()
    agents = [
        AgentProcess.start(cp, workdir / f"agent-drain{replicas}-{i}.log", concurrency=AGENT_CONCURRENCY)
        for i in range(replicas)
    ]
    try:
        rows = _collect(cp, enqueuer, job_ids, timeout=600)
    finally:
        for agent in agents:
            agent.stop()
    span = max(r["finished"] for r in rows) - min(r["started"] for r in rows)
    return {
        "replicas": replicas,
        "jobs": len(rows),
        "seconds": round(span, 2),
        "jobs_per_second": round(len(rows) / span, 1) if span > 0 else None,
    }


def run(size_name: str, workdir: Path) -> dict[str, Any]:
    size = SIZES[size_name]
    workdir.mkdir(parents=True, exist_ok=True)
    cp = ControlPlaneProcess.start(workdir / "cp", poll_wait=20.0)
    loads: list[dict[str, Any]] = []
    drains: list[dict[str, Any]] = []
    try:
        for replicas in size.replicas:
            drains.append(_drain(cp, workdir, replicas, size.drain_jobs))
            agents = [
                AgentProcess.start(cp, workdir / f"agent-load{replicas}-{i}.log", concurrency=AGENT_CONCURRENCY)
                for i in range(replicas)
            ]
            try:
                for rate in size.loads:
                    figures = _load(cp, agents, rate, size)
                    loads.append(figures)
                    done = figures["completed_per_second"] or 0
                    if done < 0.85 * rate or figures["p99_ms"] > 2000:
                        figures["saturated"] = True
                        break
            finally:
                for agent in agents:
                    agent.stop()
    finally:
        cp.stop()
    return {
        "size": size_name,
        "agent_concurrency": AGENT_CONCURRENCY,
        "enqueue_threads": ENQUEUE_THREADS,
        "loads": loads,
        "drain": drains,
    }
