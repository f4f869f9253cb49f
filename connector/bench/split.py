"""Benchmark 1c: a split sync (`split_accounts_per_job`) of the sync benchmark's organisation, with one agent
replica and then with two, against one sandbox and one control plane.

A split sync is one discovery job (the organisation, its accounts), then child jobs of `accounts_per_job`
accounts each that any replica may lease. Reported per run: the discovery job's own wall (enqueue ->
SUCCEEDED), the whole split's (enqueue -> last child SUCCEEDED), the children's, every process's CPU seconds,
the AWS calls, and the machine's bounds; then two replicas' wall / one replica's, measured, and as it would be
with a free core per replica and no sandbox on the agents' cores (real AWS).

The job syncs `organization` and `eks_cluster`, not `identity_center`: Identity Center's quota (20 calls/s)
is one per organisation, shared by every replica, so its part of a sync (~104 s at full size, measured by
the sync benchmark) cannot be divided by adding replicas; in a split it is a floor under both runs, not a
measure of how the split scales. What a split spreads is the per-account work (EKS: ~96 % of the calls).

The free-core estimate of a run = its discovery wall + the largest of: any one agent's CPU-seconds (one process,
one GIL, on one core of its own) and the children's AWS calls x latency / the slots (replicas x concurrency x
max_parallelism). On this 2-core machine the sandbox answers every call on the same two cores, so two
replicas do not each get a core: the measured ratio is bounded below by the machine (CPU-seconds of all
processes / cores), which the report prints next to it.

The split size is chosen from the organisation: about four children per replica (so the last child does not
leave a replica idle for long), and at least 10 accounts per child (each child pays a fixed cost: the
management role, Identity Center's permission sets and their provisioning, ~22 calls at 20 calls/s).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from connector.bench.procs import AgentProcess, BenchError, ControlPlaneProcess, SandboxProcess, cpu_seconds
from connector.bench.sync import SIZES, SyncSize
from connector.v1 import admin_pb2

CHILDREN_PER_REPLICA = 4
CONCURRENCY = 2  # jobs per replica at once: the next child starts while one finishes its tail
MIN_ACCOUNTS_PER_CHILD = 10
TERMINAL = (admin_pb2.JOB_STATE_SUCCEEDED, admin_pb2.JOB_STATE_FAILED, admin_pb2.JOB_STATE_CANCELLED)


def accounts_per_job(active_accounts: int, replicas: int) -> int:
    return max(MIN_ACCOUNTS_PER_CHILD, math.ceil(active_accounts / (CHILDREN_PER_REPLICA * replicas)))


def run(size_name: str, workdir: Path) -> dict[str, Any]:
    size = SIZES[size_name]
    workdir.mkdir(parents=True, exist_ok=True)
    sandbox = SandboxProcess.start(size.seed(), workdir / "sandbox.log")
    cp: ControlPlaneProcess | None = None
    try:
        sandbox.add_fault(kind="latency", seconds=size.latency)
        sandbox.add_fault(kind="rate_limit", service="eks", rate=size.rate, burst=size.burst)
        sandbox.add_fault(
            kind="rate_limit", service="sso-admin", rate=size.sso_rate, burst=int(size.sso_rate), per="service"
        )
        cp = ControlPlaneProcess.start(workdir / "cp")
        per_job = accounts_per_job(int(sandbox.seed["active_accounts"]), 2)
        runs = [_split_run(size, sandbox, cp, workdir, replicas, per_job) for replicas in (1, 2)]
        one, two = runs
        return {
            "size": size_name,
            "organisation": {
                k: v for k, v in sandbox.seed.items() if k != "clusters_sample" and not k.endswith("_arn")
            },
            "accounts_per_job": per_job,
            "runs": runs,
            "two_replicas_vs_one": round(two["wall_seconds"] / one["wall_seconds"], 2),
            "two_replicas_vs_one_free_cores": round(
                two["free_core_estimate_seconds"] / one["free_core_estimate_seconds"], 2
            ),
            "two_replicas_machine_floor": round(two["machine_cpu_bound_seconds"] / one["wall_seconds"], 2),
            # The same calls at the one-replica run's agent CPU per call: the two-replica run's is inflated by
            # the oversubscribed cores (three busy processes on two), which free cores would not be.
            "two_replicas_vs_one_free_cores_normalised": round(
                _normalised(one, two) / one["free_core_estimate_seconds"], 2
            ),
            "cores": os.cpu_count(),
        }
    finally:
        if cp is not None:
            cp.stop()
        sandbox.stop()


def _free_core_estimate(discovery: float, one_process: float, latency_bound: float) -> float:
    """A run with a core per replica and no sandbox on them: the discovery job, then the slower of the busiest
    agent's own CPU (one process, one core) and the latency bound."""
    return discovery + max(one_process, latency_bound)


def _agents_cpu(run: dict[str, Any]) -> float:
    return float(sum(v for name, v in run["cpu_seconds"].items() if name.startswith("agent")))


def _normalised(one: dict[str, Any], two: dict[str, Any]) -> float:
    busiest = two["agent_process_seconds"] * _agents_cpu(one) / max(_agents_cpu(two), 1e-9)
    return _free_core_estimate(two["discovery_seconds"], busiest, two["latency_bound_seconds"])


def _split_run(
    size: SyncSize, sandbox: SandboxProcess, cp: ControlPlaneProcess, workdir: Path, replicas: int, per_job: int
) -> dict[str, Any]:
    seed = sandbox.seed
    agents = [
        AgentProcess.start(
            cp,
            workdir / f"agent-{replicas}-{n}.log",
            concurrency=CONCURRENCY,
            aws_env=dict(sandbox.env),
            sweeper=False,
        )
        for n in range(replicas)
    ]
    try:
        time.sleep(1.0)
        pids = {f"agent{n}": a.proc.pid for n, a in enumerate(agents)} | {
            "sandbox": sandbox.proc.pid,
            "controlplane": cp.proc.pid,
        }
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        types = ["organization", "eks_cluster"]  # Identity Center's one quota does not split (module docstring)
        sandbox.reset()
        settings = {
            "management_account_role_arn": seed["management_role_arn"],
            "member_role_name": seed["member_role_name"],
            "external_id": seed["external_id"],
            "regions": list(size.regions),
            "max_parallelism": size.max_parallelism,
            "sso_region": "us-east-1",
        }
        started = time.perf_counter()
        record = cp.admin.enqueue_sync(
            "bench-connector",
            f"org-split-{replicas}",
            "aws_organization",
            settings,
            resource_types=types,
            timeout=3600,
            split_accounts_per_job=per_job,
        )
        parent = cp.admin.wait(record.job.id, timeout=3600)
        discovery = time.perf_counter() - started
        if parent.state != admin_pb2.JOB_STATE_SUCCEEDED:
            raise BenchError(f"the discovery job ended {admin_pb2.JobState.Name(parent.state)}: {parent.error}")
        deadline = time.monotonic() + 30
        while not parent.child_job_ids and time.monotonic() < deadline:
            time.sleep(0.05)
            parent = cp.admin.get(record.job.id)
        children = []
        for child_id in parent.child_job_ids:
            child = cp.admin.wait(child_id, timeout=3600)
            if child.state not in TERMINAL or child.state != admin_pb2.JOB_STATE_SUCCEEDED:
                raise BenchError(f"a child sync ended {admin_pb2.JobState.Name(child.state)}: {child.error}")
            children.append(child)
        wall = time.perf_counter() - started
        cpu = {name: round(cpu_seconds(pid) - cpu0[name], 1) for name, pid in pids.items()}
        calls = sum(sandbox.counts()["by_operation"].values())
        cores = os.cpu_count() or 1
        slots = replicas * CONCURRENCY * size.max_parallelism
        latency_bound = calls * size.latency / slots
        one_process = max(v for name, v in cpu.items() if name.startswith("agent"))
        return {
            "replicas": replicas,
            "children": len(children),
            "discovery_seconds": round(discovery, 2),
            "wall_seconds": round(wall, 2),
            "children_seconds": round(wall - discovery, 2),
            "inventory_items": int(parent.inventory_items) + sum(int(c.inventory_items) for c in children),
            "cpu_seconds": cpu,
            "aws_calls": calls,
            "machine_cpu_bound_seconds": round(discovery + (sum(cpu.values()) / cores), 2),
            "latency_bound_seconds": round(latency_bound, 2),
            "agent_process_seconds": one_process,
            "free_core_estimate_seconds": round(_free_core_estimate(discovery, one_process, latency_bound), 2),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        for agent in agents:
            agent.stop()
