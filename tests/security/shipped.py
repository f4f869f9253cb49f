"""The shipped processes the hostile suite attacks: the reference control plane (`connector controlplane serve`,
its SQLite file readable afterwards) and agents as `python -m connector run` with the sweeper on
(CONNECTOR_EXPIRY_SWEEP_SECONDS small, CONNECTOR_STATE_DIR set), JSON logs to a file, a customer guardrail
file or the default policy. Several agents (one connector id each) can share one control plane, so one test
can send each attempt to the policy it is meant for."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from connector.controlplane.client import AdminClient
from connector.sandbox import Sandbox
from connector.v1 import admin_pb2
from tests.agent.agent_harness import ADMIN_TOKEN, wait_for
from tests.faults.conftest import AgentProcess, free_port

TERMINAL = (admin_pb2.JOB_STATE_SUCCEEDED, admin_pb2.JOB_STATE_FAILED, admin_pb2.JOB_STATE_CANCELLED)
SWEEP_SECONDS = "1"


class ControlPlane:
    """`connector controlplane serve` on a loopback port and a SQLite file, one token file per connector."""

    def __init__(
        self,
        tmp_path: Path,
        tokens: dict[str, str],
        *,
        lease_seconds: float = 30.0,
        max_attempts: int = 3,
        retry_backoff: float = 0.1,
        poll_wait: float = 2.0,
    ) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.db = tmp_path / "cp.sqlite"
        self.log = tmp_path / "cp.log"
        admin_file = _secret_file(tmp_path / "admin.token", ADMIN_TOKEN)
        cmd = [sys.executable, "-m", "connector", "controlplane", "serve", "--bind", self.address]
        cmd += ["--db", str(self.db), "--admin-token-file", str(admin_file), "--log-format", "json"]
        cmd += ["--lease-seconds", str(lease_seconds), "--heartbeat-interval", "1", "--poll-wait", str(poll_wait)]
        cmd += ["--max-attempts", str(max_attempts), "--retry-backoff", str(retry_backoff)]
        for connector_id, token in tokens.items():
            cmd += ["--connector-token", f"{connector_id}={_secret_file(tmp_path / f'{connector_id}.token', token)}"]
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        marker = f"listening on {self.address}"
        wait_for(lambda: marker in self.log.read_text(errors="replace") or self.proc.poll() is not None, 60, marker)
        assert self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
        self.admin = AdminClient(self.address, ADMIN_TOKEN)

    def sqlite_bytes(self) -> bytes:
        """The database as it sits on disk: the main file, its write-ahead log and shared-memory index."""
        return b"".join(p.read_bytes() for p in (self.db, Path(f"{self.db}-wal"), Path(f"{self.db}-shm")) if p.exists())

    def stop(self) -> None:
        self.admin.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _secret_file(path: Path, value: str) -> Path:
    path.write_text(value)
    path.chmod(0o600)
    return path


class Agent(AgentProcess):
    """`python -m connector run` with the sweeper on and its state persisted, JSON logs in `log`."""

    def __init__(
        self,
        sb: Sandbox,
        cp: ControlPlane,
        tmp_path: Path,
        connector_id: str,
        token: str,
        *,
        guardrails: dict[str, Any] | None = None,
        concurrency: int = 16,
        **env: str,
    ) -> None:
        self.connector_id = connector_id
        state = tmp_path / f"state-{connector_id}"
        state.mkdir()
        extra = {
            "CONNECTOR_ID": connector_id,
            "CONNECTOR_TOKEN": token,
            "CONNECTOR_CONCURRENCY": str(concurrency),
            "CONNECTOR_EXPIRY_SWEEP_SECONDS": SWEEP_SECONDS,
            "CONNECTOR_STATE_DIR": str(state),
            "CONNECTOR_DRAIN_GRACE_SECONDS": "10",
        }
        if guardrails is not None:
            policy = tmp_path / f"guardrails-{connector_id}.yaml"
            policy.write_text(yaml.safe_dump(guardrails))
            extra["CONNECTOR_GUARDRAILS_FILE"] = str(policy)
        super().__init__(sb, cp.address, tmp_path / f"agent-{connector_id}.log", **(extra | env))
        self.pid = self.proc.pid
        self.wait_event("registered", 60)
        self.health = self.wait_event("health_listening", 10)[0]["address"]
        policy_line = self.wait_event("guardrails_policy", 10)[0]
        assert (policy_line["source"] == "default") == (guardrails is None), policy_line

    def alive(self) -> bool:
        return self.proc.poll() is None and self.proc.pid == self.pid

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.health}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def task_restarts(self) -> dict[str, float]:
        """connector_task_restarts_total by task, from /metrics."""
        pattern = re.compile(r'^connector_task_restarts_total\{task="([^"]+)"\} ([0-9.e+]+)$', re.M)
        return {task: float(value) for task, value in pattern.findall(self.metrics())}

    def sweeps(self) -> float:
        found = re.search(r"^connector_expiry_sweeps_total ([0-9.e+]+)$", self.metrics(), re.M)
        return float(found.group(1)) if found else 0.0

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> int | None:
        """SIGTERM: the agent drains and exits (0 after a clean drain)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def wait_all(admin: AdminClient, job_ids: Iterable[str], timeout: float) -> dict[str, admin_pb2.JobRecord]:
    """Each job's record once terminal (or as it is when `timeout` ends)."""
    return {job_id: admin.wait(job_id, timeout=timeout) for job_id in job_ids}


def member(sb: Sandbox, service: str, account: str, region: str | None = "us-east-1") -> Any:
    """An admin client acting inside `account` (moto's x-moto-account-id header)."""
    client = sb.client(service, region)

    def header(params: dict[str, Any], **_: Any) -> None:
        params["headers"]["x-moto-account-id"] = account

    client.meta.events.register("before-call.*.*", header)
    return client


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            out.append(line)
    return out
