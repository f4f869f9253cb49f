"""Benchmark 1: a whole-organisation sync (organization + eks_cluster) through the real path.

sandbox process (seeded org, per-call latency, per-(account, region, operation) rate limits)
  <- botocore over HTTP <- agent process (`connector run`, the aws_organization integration)
  -> gRPC UploadInventory -> control plane process (`connector controlplane serve`) <- this driver (Admin API).

Reports wall time (enqueue -> SUCCEEDED), calls by operation, CPU seconds and RSS of every process, the
lower bounds computed from the counted call graph (bounds.py), and the sandbox's own capacity (calls/s at zero
latency with as many client threads as the sync's max_parallelism).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from connector.bench.bounds import RateLimit, sync_bounds
from connector.bench.procs import AgentProcess, BenchError, ControlPlaneProcess, SandboxProcess, cpu_seconds, rss_mb
from connector.sandbox.server import ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY
from connector.v1 import admin_pb2

REGIONS_FULL = ("us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2")


@dataclass(frozen=True)
class SyncSize:
    accounts: int
    regions: tuple[str, ...]
    clusters_per_region: int
    entries_per_cluster: int
    latency: float = 0.040  # seconds added to every AWS call
    rate: float = 10.0  # EKS calls/s per (account, region, operation)
    burst: int = 10
    max_parallelism: int = 64  # the integration setting (1..64)
    capacity_seconds: float = 5.0
    floor_seconds: float = 4.0  # botocore's own floor (floor.py), at max_parallelism threads
    # Identity Center: permission sets, each provisioned to this share of the active accounts (one group
    # assignment there), behind its quotas: 20 calls/s shared by the API, 15 outstanding CreateAccountAssignment.
    permission_sets: int = 20
    permission_set_share: float = 0.1
    sso_rate: float = 20.0
    sso_outstanding_creates: int = 15

    def seed(self) -> dict[str, Any]:
        return {
            "accounts": self.accounts,
            "regions": list(self.regions),
            "cluster_accounts": None,
            "clusters_per_region": self.clusters_per_region,
            "entries_per_cluster": self.entries_per_cluster,
            "account_without_member_role": None,
            "identity_center": self.permission_sets > 0,
            "extra_permission_sets": self.permission_sets,
            "permission_set_share": self.permission_set_share,
        }


SIZES = {
    "smoke": SyncSize(
        accounts=6,
        regions=("us-east-1", "eu-west-1"),
        clusters_per_region=1,
        entries_per_cluster=2,
        latency=0.005,
        max_parallelism=8,
        capacity_seconds=0.5,
        floor_seconds=0.5,
        permission_sets=2,
        permission_set_share=0.5,
    ),
    # The 150-account figures: the full sync's shape at 15 %, for before/after comparisons on a shared machine.
    "medium": SyncSize(accounts=150, regions=REGIONS_FULL, clusters_per_region=3, entries_per_cluster=5),
    "full": SyncSize(accounts=1000, regions=REGIONS_FULL, clusters_per_region=3, entries_per_cluster=5),
}


# The parallelism sweep: one smaller organisation synced at several max_parallelism settings, to show where
# the sync stops following its bound (latency x calls / parallelism) and the agent's CPU takes over.
SWEEP: dict[str, tuple[SyncSize, tuple[int, ...]]] = {
    "smoke": (
        SyncSize(
            accounts=4,
            regions=("us-east-1",),
            clusters_per_region=1,
            entries_per_cluster=2,
            latency=0.005,
            capacity_seconds=0.3,
            permission_sets=0,  # the sweep is about parallelism: no Identity Center (its own rate bounds it)
        ),
        (2, 8),
    ),
    "full": (
        SyncSize(
            accounts=100,
            regions=REGIONS_FULL,
            clusters_per_region=3,
            entries_per_cluster=5,
            capacity_seconds=1.0,
            permission_sets=0,
        ),
        (8, 16, 32, 64),
    ),
}


def sandbox_capacity(sandbox: SandboxProcess, cluster: dict[str, Any], threads: int, seconds: float) -> dict[str, Any]:
    """Calls/s the sandbox serves at zero latency to `threads` concurrent clients (DescribeCluster, the
    sync's most common call shape), with the sandbox's CPU use: ~1 core per second means it is saturated."""
    session = boto3.Session(
        aws_access_key_id=ROOT_ACCESS_KEY_ID, aws_secret_access_key=ROOT_SECRET_ACCESS_KEY, region_name="us-east-1"
    )
    sts = session.client("sts", endpoint_url=sandbox.endpoint)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{cluster['account']}:role/OrganizationAccountAccessRole", RoleSessionName="bench"
    )["Credentials"]
    config = Config(retries={"total_max_attempts": 1}, max_pool_connections=threads)
    clients = [
        boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        ).client("eks", region_name=cluster["region"], endpoint_url=sandbox.endpoint, config=config)
        for _ in range(threads)
    ]
    counts = [0] * threads
    stop = threading.Event()

    def hammer(i: int) -> None:
        while not stop.is_set():
            clients[i].describe_cluster(name=cluster["name"])
            counts[i] += 1

    for client in clients:  # warm up: moto builds the EKS app and loads its model on first use
        client.describe_cluster(name=cluster["name"])
    workers = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(threads)]
    cpu0, t0 = cpu_seconds(sandbox.proc.pid), time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join(30)
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(sandbox.proc.pid) - cpu0
    calls = sum(counts)
    return {
        "threads": threads,
        "seconds": round(elapsed, 2),
        "calls": calls,
        "calls_per_second": round(calls / elapsed, 1),
        "sandbox_cpu_cores": round(cpu / elapsed, 2),
        "sandbox_cpu_ms_per_call": round(cpu / max(calls, 1) * 1000, 2),
        "operation": "eks:DescribeCluster",
    }


def botocore_floor(threads: int, seconds: float) -> dict[str, Any]:
    from connector.bench import floor

    result = floor.measure(threads, seconds)
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return result


def mean_floor(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "threads": before["threads"],
        "calls": before["calls"] + after["calls"],
        "cpu_ms_per_call": round((before["cpu_ms_per_call"] + after["cpu_ms_per_call"]) / 2, 3),
        "load_avg_1m": round((before["load_avg_1m"] + after["load_avg_1m"]) / 2, 2),
        "before": before,
        "after": after,
    }


def run(size_name: str, workdir: Path) -> dict[str, Any]:
    return run_size(SIZES[size_name], size_name, workdir)


def sweep(size_name: str, workdir: Path) -> dict[str, Any]:
    """The same organisation synced once per max_parallelism in SWEEP: wall, bound and each process's load."""
    base, parallelisms = SWEEP[size_name]
    points = []
    organisation: dict[str, Any] = {}
    for parallelism in parallelisms:
        r = run_size(replace(base, max_parallelism=parallelism), size_name, workdir / f"parallelism-{parallelism}")
        organisation = r["organisation"]
        points.append(
            {
                "max_parallelism": parallelism,
                "wall_seconds": r["wall_seconds"],
                "limits_seconds": r["bounds"]["limits_seconds"],
                "ratio_to_limits_bound": r["ratio_to_limits_bound"],
                "total_calls": r["bounds"]["total_calls"],
                "busy_share_of_wall": r["busy_share_of_wall"],
                "cpu_ms_per_aws_call": r["cpu_ms_per_aws_call"],
            }
        )
    return {"size": size_name, "organisation": organisation, "latency_ms": base.latency * 1000, "points": points}


def run_size(size: SyncSize, size_name: str, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    sandbox = SandboxProcess.start(size.seed(), workdir / "sandbox.log")
    cp: ControlPlaneProcess | None = None
    agent: AgentProcess | None = None
    try:
        seed = sandbox.seed
        capacity = sandbox_capacity(sandbox, seed["clusters_sample"][0], size.max_parallelism, size.capacity_seconds)
        floor_before = botocore_floor(size.max_parallelism, size.floor_seconds)
        sandbox.add_fault(kind="latency", seconds=size.latency)
        sandbox.add_fault(kind="rate_limit", service="eks", rate=size.rate, burst=size.burst)
        sandbox.add_fault(
            kind="rate_limit", service="sso-admin", rate=size.sso_rate, burst=int(size.sso_rate), per="service"
        )
        sandbox.add_fault(
            kind="concurrency",
            service="sso-admin",
            operation="CreateAccountAssignment",
            limit=size.sso_outstanding_creates,
        )
        cp = ControlPlaneProcess.start(workdir / "cp")
        aws_env = dict(sandbox.env)
        agent = AgentProcess.start(cp, workdir / "agent-sync.log", concurrency=2, aws_env=aws_env, sweeper=False)
        time.sleep(1.0)
        idle = rss_mb(agent.proc.pid)
        pids = {"agent": agent.proc.pid, "controlplane": cp.proc.pid, "sandbox": sandbox.proc.pid}
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        sandbox.reset()
        settings = {
            "management_account_role_arn": seed["management_role_arn"],
            "member_role_name": seed["member_role_name"],
            "external_id": seed["external_id"],
            "regions": list(size.regions),
            "max_parallelism": size.max_parallelism,
            "sso_region": "us-east-1",
        }
        types = ["organization", "eks_cluster"] + (["identity_center"] if size.permission_sets else [])
        started = time.perf_counter()
        record = cp.admin.enqueue_sync(
            "bench-connector",
            "org-bench",
            "aws_organization",
            settings,
            resource_types=types,
            timeout=3600,
        )
        samples: list[tuple[float, float]] = []
        while True:
            done = cp.admin.wait(record.job.id, timeout=1.0)
            samples.append((round(time.perf_counter() - started, 1), rss_mb(agent.proc.pid)["rss_mb"]))
            if done.state in (admin_pb2.JOB_STATE_SUCCEEDED, admin_pb2.JOB_STATE_FAILED, admin_pb2.JOB_STATE_CANCELLED):
                break
        wall = time.perf_counter() - started
        if done.state != admin_pb2.JOB_STATE_SUCCEEDED:
            raise BenchError(f"the sync job ended {admin_pb2.JobState.Name(done.state)}: {done.error}")
        cpu = {name: round(cpu_seconds(pid) - cpu0[name], 1) for name, pid in pids.items()}
        # The floor again right after the sync: on a shared machine the load moves, and a process's CPU per call
        # moves with it; the sync is compared with the mean of the two.
        floor = mean_floor(floor_before, botocore_floor(size.max_parallelism, size.floor_seconds))
        memory = {name: rss_mb(pid) for name, pid in pids.items()}
        timing = sandbox.timing()
        counts = sandbox.counts()
        bounds = sync_bounds(
            timing["graph"],
            latency=size.latency,
            parallelism=size.max_parallelism,
            rate_limits=[
                RateLimit(size.rate, size.burst, "eks"),
                RateLimit(size.sso_rate, int(size.sso_rate), "sso-admin", per="service"),
            ],
        )
        ic = bounds["shared_rate_limits"].get("sso-admin")
        if ic:
            ic["seconds"] = timing.get("span_seconds", {}).get("sso-admin")
            ic["ratio"] = (
                round(ic["seconds"] / ic["bound_seconds"], 2) if ic["seconds"] and ic["bound_seconds"] else None
            )
            bounds["identity_center"] = ic
        bounds["cpu_seconds_at_sandbox_capacity"] = round(bounds["total_calls"] / capacity["calls_per_second"], 1)
        # The machine's bound: the CPU the agent and the sandbox needed, spread over every core at once.
        cores = os.cpu_count() or 1
        bounds["cores"] = cores
        bounds["cpu_seconds"] = round((cpu["agent"] + cpu["sandbox"]) / cores, 3)
        # ...and one Python process (the agent, its GIL) cannot use more than one core of it.
        bounds["agent_process_seconds"] = cpu["agent"]
        bounds["larger_seconds"] = max(bounds["limits_seconds"], bounds["cpu_seconds"])
        bounds["larger_is"] = "cpu" if bounds["cpu_seconds"] > bounds["limits_seconds"] else "limits"
        agent_ms = cpu["agent"] / max(bounds["total_calls"], 1) * 1000
        from google.protobuf.json_format import MessageToDict

        result = MessageToDict(done.result)
        return {
            "size": size_name,
            "organisation": {k: v for k, v in seed.items() if k != "clusters_sample" and not k.endswith("_arn")},
            "settings": {
                "latency_ms": size.latency * 1000,
                "rate_limit": {
                    "service": "eks",
                    "per": "account/region/operation",
                    "rate": size.rate,
                    "burst": size.burst,
                },
                "max_parallelism": size.max_parallelism,
                "regions": list(size.regions),
            },
            "wall_seconds": round(wall, 2),
            "bounds": bounds,
            "ratio_to_limits_bound": round(wall / bounds["limits_seconds"], 2) if bounds["limits_seconds"] else None,
            "ratio_to_design_bound": round(wall / bounds["design_seconds"], 2) if bounds["design_seconds"] else None,
            "ratio_to_larger_bound": round(wall / bounds["larger_seconds"], 2) if bounds["larger_seconds"] else None,
            "botocore_floor": floor,
            "agent_cpu_ms_per_call": round(agent_ms, 3),
            "agent_cpu_per_call_vs_floor": round(agent_ms / floor["cpu_ms_per_call"], 2)
            if floor["cpu_ms_per_call"]
            else None,
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
            "inventory_items": int(done.inventory_items),
            "job_result": result,
            "calls_by_operation": dict(sorted(counts["by_operation"].items())),
            "calls_faulted": counts["faulted"],
            "sandbox_seconds_serving": timing["total_seconds"],
            "cpu_seconds": cpu,
            "cpu_cores_busy": round(sum(cpu.values()) / wall, 2),
            # Each process's CPU as a share of the wall time (a Python process near 1.0 is bound by its GIL), and
            # per AWS call: which side of the HTTP connection the sync waited for.
            "busy_share_of_wall": {name: round(seconds / wall, 2) for name, seconds in cpu.items()},
            "cpu_ms_per_aws_call": {
                name: round(seconds / max(bounds["total_calls"], 1) * 1000, 2) for name, seconds in cpu.items()
            },
            "bottleneck": max(cpu, key=lambda name: cpu[name]),
            "memory_mb": memory,
            "agent_idle_before_sync_mb": idle["rss_mb"],
            "agent_peak_rss_mb": memory["agent"]["peak_rss_mb"],
            "agent_rss_samples": samples[:: max(1, len(samples) // 200)],
            "agent_rss_median_mb": statistics.median(s[1] for s in samples) if samples else 0.0,
            "sandbox_capacity": capacity,
        }
    finally:
        for proc in (agent, cp, sandbox):
            if proc is not None:
                proc.stop()
