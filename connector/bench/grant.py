"""Benchmark 3: EKS access-entry grants end to end, with the sandbox's latency at zero, so what is left beyond
the time the sandbox spends serving the AWS calls is the connector's own overhead.

Grants run one at a time (so each one's sandbox time is known exactly: the timing delta around it). Per
grant: sandbox seconds (server side, all of its AWS calls), the agent's job duration (its `job_finished` log
line: dispatcher, integration, botocore, HTTP), and end to end (enqueue -> WaitJob returns). The first grant
assumes the management and member roles and builds the clients: reported as `cold`, left out of the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.bench.procs import CONNECTOR_ID, AgentProcess, BenchError, ControlPlaneProcess, SandboxProcess
from connector.bench.stats import summary_ms
from connector.v1 import admin_pb2


@dataclass(frozen=True)
class GrantSize:
    grants: int


SIZES = {"smoke": GrantSize(grants=4), "full": GrantSize(grants=60)}
SEED = {"accounts": 6, "regions": ["us-east-1"], "account_without_member_role": None, "identity_center": False}


def run(size_name: str, workdir: Path) -> dict[str, Any]:
    size = SIZES[size_name]
    workdir.mkdir(parents=True, exist_ok=True)
    sandbox = SandboxProcess.start(SEED, workdir / "sandbox.log")
    cp: ControlPlaneProcess | None = None
    agent: AgentProcess | None = None
    try:
        seed = sandbox.seed
        cluster = next(c for c in seed["clusters_sample"] if c["mode"] != "CONFIG_MAP")
        cp = ControlPlaneProcess.start(workdir / "cp")
        agent = AgentProcess.start(cp, workdir / "agent-grant.log", concurrency=4, aws_env=dict(sandbox.env))
        settings = {
            "management_account_role_arn": seed["management_role_arn"],
            "member_role_name": seed["member_role_name"],
            "external_id": seed["external_id"],
            "regions": [cluster["region"]],
        }
        target = {
            "resource_type": "eks_cluster",
            "account_id": cluster["account"],
            "region": cluster["region"],
            "cluster": cluster["name"],
            "access_policies": ["AmazonEKSEditPolicy"],
            "scope": "namespace",
            "namespaces": ["payments"],
        }
        rows = []
        for i in range(size.grants):
            before = sandbox.timing()
            started = time.perf_counter()
            record = cp.admin.enqueue_grant(
                CONNECTOR_ID,
                "org-bench",
                "aws_organization",
                grant_id=f"bench-grant-{i}",
                principal=f"arn:aws:iam::{cluster['account']}:role/bench-{i}",
                target=target,
                settings=settings,
                expires_in=3600,
            )
            done = cp.admin.wait(record.job.id, timeout=120)
            e2e = time.perf_counter() - started
            if done.state != admin_pb2.JOB_STATE_SUCCEEDED:
                raise BenchError(f"grant {i} ended {admin_pb2.JobState.Name(done.state)}: {done.error}")
            after = sandbox.timing()
            line = _finished_line(agent, record.job.id)
            rows.append(
                {
                    "sandbox": after["total_seconds"] - before["total_seconds"],
                    "calls": after["total_calls"] - before["total_calls"],
                    "agent": float(line["duration_ms"]) / 1000,
                    "e2e": e2e,
                }
            )
        cold, warm = rows[0], rows[1:]
        overhead = [r["agent"] - r["sandbox"] for r in warm]
        return {
            "size": size_name,
            "grants": len(warm),
            "aws_calls_per_grant": round(sum(r["calls"] for r in warm) / len(warm), 1),
            "sandbox_ms_per_grant": summary_ms([r["sandbox"] for r in warm]),
            "sandbox_ms_per_call": round(sum(r["sandbox"] for r in warm) / sum(r["calls"] for r in warm) * 1000, 2),
            "agent_ms_per_grant": summary_ms([r["agent"] for r in warm]),
            "e2e_ms_per_grant": summary_ms([r["e2e"] for r in warm]),
            "overhead_ms": summary_ms(overhead),
            "e2e_overhead_ms": summary_ms([r["e2e"] - r["sandbox"] for r in warm]),
            "cold": {k: round(v * 1000, 1) if k != "calls" else v for k, v in cold.items()},
        }
    finally:
        for proc in (agent, cp, sandbox):
            if proc is not None:
                proc.stop()


def _finished_line(agent: AgentProcess, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        agent.read_events()
        for line in reversed(agent.events):
            if line.get("event") == "job_finished" and line.get("job_id") == job_id:
                return dict(line)
        time.sleep(0.02)
    raise BenchError(f"the agent logged no job_finished for {job_id}; see {agent.log_path}")
