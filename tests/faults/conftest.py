"""The fault suite's shared pieces: one seeded sandbox (moto state is process-global), the reference control
plane as a real subprocess that can be SIGKILLed and restarted on the same port and SQLite file, agents as
`python -m connector run` subprocesses, EKS grants whose effect can be counted in the sandbox, and the
one summary line each test prints (jobs run, lost, duplicated, grants left behind)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.controlplane.client import AdminClient
from connector.integrations.eks_access.entries import GRANT_PREFIX, MANAGED_BY_KEY
from connector.sandbox import Sandbox, SeedSpec
from connector.v1 import admin_pb2
from tests.agent.agent_harness import ADMIN_TOKEN, CONNECTOR_ID, TOKEN, agent_env, wait_for
from tests.sandbox_env import sandbox_as_aws

# Two workload accounts with one cluster each (modes API and API_AND_CONFIG_MAP: both take access entries).
SPEC = SeedSpec(accounts=4, regions=("us-east-1",), cluster_accounts=2, account_without_member_role=None, users=2)
INTEGRATION = "org"


@pytest.fixture(scope="package")
def sandbox() -> Iterator[Sandbox]:
    with sandbox_as_aws(SPEC) as sb:
        yield sb


@pytest.fixture(autouse=True)
def _clean_faults(sandbox: Sandbox) -> Iterator[None]:
    sandbox.faults.clear()
    sandbox.faults.reset_counts()
    yield
    sandbox.faults.clear()


def org_settings(sb: Sandbox, **extra: Any) -> dict[str, Any]:
    info = sb.seed_info
    return {
        "management_account_role_arn": info.management_role_arn,
        "member_role_name": info.member_role_name,
        "external_id": info.external_id,
        "regions": ["us-east-1"],
    } | extra


def aws_env(sb: Sandbox) -> dict[str, str]:
    return sb.env() | {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the control plane as a process ------------------------------------------------------------------


class ControlPlaneProcess:
    """`python -m connector controlplane serve` on a fixed loopback port and SQLite file, so it can be
    SIGKILLed and started again exactly where the agents expect it."""

    def __init__(self, tmp_path: Path, *, lease_seconds: float = 4.0, retry_backoff: float = 0.2) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.db = tmp_path / "cp.sqlite"
        self.log = tmp_path / "cp.log"
        self.lease_seconds = lease_seconds
        self.retry_backoff = retry_backoff
        self.admin_file = tmp_path / "admin.token"
        self.token_file = tmp_path / "conn.token"
        for path, value in ((self.admin_file, ADMIN_TOKEN), (self.token_file, TOKEN)):
            path.write_text(value)
            path.chmod(0o600)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.admin = AdminClient(self.address, ADMIN_TOKEN)

    def start(self) -> ControlPlaneProcess:
        cmd = [
            sys.executable,
            "-m",
            "connector",
            "controlplane",
            "serve",
            "--bind",
            self.address,
            "--db",
            str(self.db),
            "--admin-token-file",
            str(self.admin_file),
            "--connector-token",
            f"{CONNECTOR_ID}={self.token_file}",
            "--lease-seconds",
            str(self.lease_seconds),
            "--heartbeat-interval",
            "1",
            "--poll-wait",
            "5",
            "--retry-backoff",
            str(self.retry_backoff),
            "--log-format",
            "json",
        ]
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        self.starts += 1
        marker = f"listening on {self.address}"
        proc = self.proc
        wait_for(
            lambda: self.log.read_text(errors="replace").count(marker) >= self.starts or proc.poll() is not None,
            60,
            "control plane listening",
        )
        assert proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
        return self

    def kill(self) -> None:
        """SIGKILL: no drain, no clean close of the database."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        self.admin.close()


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    cp = ControlPlaneProcess(tmp_path)
    yield cp
    cp.close()


# -- agents as processes -------------------------------------------------------------------------------


class AgentProcess:
    def __init__(self, sb: Sandbox, address: str, log: Path, **env: str) -> None:
        self.log = log
        full = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"} | agent_env(address) | aws_env(sb) | env
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "connector", "run"], env=full, stdout=out, stderr=out)

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for raw in self.log.read_text(errors="replace").splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("event") == name:
                out.append(line)
        return out

    def wait_event(self, name: str, timeout: float, count: int = 1) -> list[dict[str, Any]]:
        wait_for(lambda: len(self.events(name)) >= count or self.proc.poll() is not None, timeout, f"{count}x {name}")
        found = self.events(name)
        assert len(found) >= count, f"agent exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.stop()


# -- EKS grants and their effect -----------------------------------------------------------------------


@dataclass(frozen=True)
class EksGrant:
    grant_id: str
    principal: str
    target: dict[str, Any]


def eks_grants(sb: Sandbox, prefix: str, count: int) -> list[EksGrant]:
    """`count` grants spread over the sandbox's clusters, one principal each (so each effect is countable)."""
    clusters = [c for c in sb.seed_info.clusters if c.mode in ("API", "API_AND_CONFIG_MAP")]
    out = []
    for i in range(count):
        c = clusters[i % len(clusters)]
        out.append(
            EksGrant(
                grant_id=f"{prefix}-{i}",
                principal=f"arn:aws:iam::{c.account}:role/{prefix}-{i}",
                target={
                    "resource_type": "eks_cluster",
                    "account_id": c.account,
                    "region": c.region,
                    "cluster": c.name,
                    "access_policies": ["AmazonEKSViewPolicy"],
                    "scope": "namespace",
                    "namespaces": ["faults"],
                },
            )
        )
    return out


def enqueue_grant(
    admin: AdminClient, sb: Sandbox, grant: EksGrant, *, expires_in: float = 3600, timeout: float | None = None
) -> admin_pb2.JobRecord:
    return admin.enqueue_grant(
        CONNECTOR_ID,
        INTEGRATION,
        "aws_organization",
        grant_id=grant.grant_id,
        principal=grant.principal,
        target=grant.target,
        settings=org_settings(sb),
        expires_in=expires_in,
        timeout=timeout,
    )


def member_eks(sb: Sandbox, account: str, region: str) -> Any:
    client = sb.client("eks", region)

    def header(params: dict[str, Any], **_: Any) -> None:
        params["headers"]["x-moto-account-id"] = account

    client.meta.events.register("before-call.*.*", header)
    return client


@dataclass
class Effect:
    entries: int  # access entries for the principal (0 or 1: EKS refuses a second)
    associations: int  # policy associations with the grant's scope
    grant_tags: int  # this grant's record on the entry
    managed: bool  # the entry carries the connector's managed-by tag

    @property
    def once(self) -> bool:
        return self.entries == 1 and self.associations == 1 and self.grant_tags == 1 and self.managed

    @property
    def absent(self) -> bool:
        return self.entries == 0


def effect(sb: Sandbox, grant: EksGrant) -> Effect:
    t = grant.target
    eks = member_eks(sb, t["account_id"], t["region"])
    principals = [
        p
        for page in eks.get_paginator("list_access_entries").paginate(clusterName=t["cluster"])
        for p in page["accessEntries"]
    ]
    entries = principals.count(grant.principal)
    if not entries:
        return Effect(0, 0, 0, False)
    try:
        policies = eks.list_associated_access_policies(clusterName=t["cluster"], principalArn=grant.principal)[
            "associatedAccessPolicies"
        ]
        tags = eks.describe_access_entry(clusterName=t["cluster"], principalArn=grant.principal)["accessEntry"]["tags"]
    except eks.exceptions.ResourceNotFoundException:
        return Effect(0, 0, 0, False)  # revoked (by the sweeper) between the list and these reads
    return Effect(
        entries=entries,
        associations=len(policies),
        grant_tags=sum(1 for k in tags if k == GRANT_PREFIX + grant.grant_id),
        managed=tags.get(MANAGED_BY_KEY) == "access-connector",
    )


def connector_entries(sb: Sandbox, prefix: str = "") -> list[str]:
    """Principals of the access entries the connector manages on every seeded cluster (only the principals
    of grants made with `prefix` when given, so one test's leftovers are not blamed on the next)."""
    out = []
    for c in sb.seed_info.clusters:
        if c.mode == "CONFIG_MAP":
            continue
        eks = member_eks(sb, c.account, c.region)
        for page in eks.get_paginator("list_access_entries").paginate(clusterName=c.name):
            for principal in page["accessEntries"]:
                tags = eks.describe_access_entry(clusterName=c.name, principalArn=principal)["accessEntry"]["tags"]
                if tags.get(MANAGED_BY_KEY) == "access-connector" and f":role/{prefix}" in principal:
                    out.append(principal)
    return out


def revoke_all(admin: AdminClient, sb: Sandbox, grants: list[EksGrant]) -> None:
    """Clean up after a test through the connector's own revoke path (so later tests start empty)."""
    records = [
        admin.enqueue_revoke(
            CONNECTOR_ID,
            INTEGRATION,
            "aws_organization",
            grant_id=g.grant_id,
            principal=g.principal,
            target=g.target,
            settings=org_settings(sb),
        )
        for g in grants
    ]
    for record in records:
        done = admin.wait(record.job.id, timeout=60)
        assert done.state == admin_pb2.JOB_STATE_SUCCEEDED, done


# -- the summary line ----------------------------------------------------------------------------------

RESULTS_ENV = "FAULTS_RESULTS_FILE"  # optional: also append each summary as a JSON line (for the report)


def summarize(fault: str, **figures: Any) -> None:
    """Print what the test survived; the report in docs/reliability.md is built from these lines."""
    line = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\nFAULT {fault}: {line}")
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"fault": fault, **figures, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}) + "\n")


def terminal_records(admin: AdminClient, job_ids: list[str], timeout: float) -> list[admin_pb2.JobRecord]:
    return [admin.wait(job_id, timeout=timeout) for job_id in job_ids]


def job_figures(records: list[admin_pb2.JobRecord]) -> dict[str, int]:
    succeeded = sum(1 for r in records if r.state == admin_pb2.JOB_STATE_SUCCEEDED)
    return {
        "jobs_run": len(records),
        "succeeded": succeeded,
        "lost": len(records) - succeeded,
        "attempts": sum(r.job.attempt for r in records),
        "stale_finishes_refused": sum(r.stale_finishes_refused for r in records),
    }
