"""The processes a benchmark runs: the sandbox, the control plane and agent replicas, each its own process so
none shares a GIL with another or with the bench driver. Plus what the bench reads from /proc (RSS, CPU)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from connector.controlplane.client import AdminClient

CONNECTOR_ID = "bench-connector"
START_TIMEOUT = 120.0


class BenchError(RuntimeError):
    """A benchmark could not run (a process did not start, a job failed): the message says which and why."""


def _python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return env | {"PYTHONUNBUFFERED": "1"} | (extra or {})


def _read_line(proc: subprocess.Popen[str], stream: IO[str], prefix: str, what: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise BenchError(f"{what} exited (code {proc.poll()}) before printing {prefix!r}")
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise BenchError(f"{what} did not print {prefix!r} within {timeout:.0f} s")


# -- /proc readings (Linux) ---------------------------------------------------------------------------------


def rss_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident set of a process, in MB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(rest.split()[0]) / 1024, 1)
    return {"rss_mb": values.get("VmRSS", 0.0), "peak_rss_mb": values.get("VmHWM", 0.0)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }


# -- the sandbox --------------------------------------------------------------------------------------------


@dataclass
class SandboxProcess:
    """`python -m connector.bench.sandbox_server`: a seeded sandbox with server-side timing, in its own process."""

    proc: subprocess.Popen[str]
    endpoint: str
    env: dict[str, str]
    seed: dict[str, Any]

    @classmethod
    def start(cls, spec: dict[str, Any], log_path: Path) -> SandboxProcess:
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector.bench.sandbox_server", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=open(log_path, "w"),  # noqa: SIM115 - the child owns it for its lifetime
            text=True,
            env=_python_env(),
        )
        assert proc.stdout is not None
        try:
            ready = json.loads(_read_line(proc, proc.stdout, "ready: ", "the sandbox process", START_TIMEOUT))
        except BaseException:
            proc.kill()
            raise
        return cls(proc, ready["endpoint"], ready["env"], ready["seed"])

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.endpoint + path, data=data, method=method)  # noqa: S310 - loopback
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http://127.0.0.1 only
            return json.loads(response.read() or b"null")

    def add_fault(self, **rule: Any) -> str:
        return str(self._call("POST", "/_sandbox/faults", rule)["id"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/_sandbox/faults")

    def counts(self) -> dict[str, dict[str, int]]:
        return dict(self._call("GET", "/_sandbox/calls"))

    def reset(self) -> None:
        """Zero the call counters and the server-side timing."""
        self._call("DELETE", "/_sandbox/calls")
        self._call("DELETE", "/_bench/timing")

    def timing(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_bench/timing"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the control plane --------------------------------------------------------------------------------------


@dataclass
class ControlPlaneProcess:
    """`python -m connector controlplane serve` (the reference control plane) on a free loopback port."""

    proc: subprocess.Popen[str]
    address: str
    admin_token: str
    connector_token: str
    _admin: AdminClient | None = None

    @classmethod
    def start(cls, workdir: Path, *, lease_seconds: float = 30.0, poll_wait: float = 20.0) -> ControlPlaneProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        admin_token, connector_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        token_file = workdir / "connector.token"
        token_file.write_text(connector_token)
        token_file.chmod(0o600)
        db = workdir / "controlplane.sqlite"
        db.unlink(missing_ok=True)
        args = [sys.executable, "-m", "connector", "controlplane", "serve", "--bind", "127.0.0.1:0", "--db", str(db)]
        args += ["--connector-token", f"{CONNECTOR_ID}={token_file}", "--lease-seconds", str(lease_seconds)]
        args += ["--poll-wait", str(poll_wait), "--heartbeat-interval", "5", "--log-format", "json"]
        args += ["--log-level", "warning"]
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=open(workdir / "controlplane.log", "w"),  # noqa: SIM115 - the child owns it
            text=True,
            env=_python_env({"CONTROLPLANE_ADMIN_TOKEN": admin_token}),
        )
        assert proc.stdout is not None
        try:
            address = _read_line(proc, proc.stdout, "listening on ", "the control plane", START_TIMEOUT)
        except BaseException:
            proc.kill()
            raise
        return cls(proc, address, admin_token, connector_token)

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(self.address, self.admin_token)
        return self._admin

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- agent replicas -----------------------------------------------------------------------------------------


@dataclass
class AgentProcess:
    """`python -m connector run`, configured by environment variables like in ECS, logging JSON to a file."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    lines_read: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        cp: ControlPlaneProcess,
        log_path: Path,
        *,
        concurrency: int,
        aws_env: dict[str, str] | None = None,
        sweeper: bool = True,
    ) -> AgentProcess:
        env = {
            "CONNECTOR_ID": CONNECTOR_ID,
            "CONTROL_PLANE_URL": f"http://{cp.address}",
            "CONNECTOR_ALLOW_INSECURE_LOOPBACK": "true",
            "CONNECTOR_TOKEN": cp.connector_token,
            "CONNECTOR_HEALTH_ADDR": "127.0.0.1:0",
            "CONNECTOR_CONCURRENCY": str(concurrency),
            "CONNECTOR_LOG_FORMAT": "json",
            "CONNECTOR_DRAIN_GRACE_SECONDS": "10",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        } | (aws_env or {})
        with open(log_path, "wb") as log:
            command = ["connector", "run"] if sweeper else ["connector.bench.agent_no_sweeper"]
            proc = subprocess.Popen([sys.executable, "-m", *command], env=_python_env(env), stdout=log, stderr=log)
        agent = cls(proc, log_path)
        agent.wait_event("registered", START_TIMEOUT)
        return agent

    def read_events(self) -> list[dict[str, Any]]:
        """New JSON log lines since the last call (also kept in .events)."""
        lines = self.log_path.read_text().splitlines()
        new: list[dict[str, Any]] = []
        for raw in lines[self.lines_read :]:
            try:
                new.append(json.loads(raw))
            except ValueError:
                new.append({"event": "_raw", "text": raw})
        self.lines_read = len(lines)
        self.events += new
        return new

    def wait_event(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read_events()
            for line in self.events:
                if line.get("event") == event:
                    return line
            if self.proc.poll() is not None:
                raise BenchError(f"the agent exited (code {self.proc.returncode}); see {self.log_path}")
            time.sleep(0.05)
        raise BenchError(f"the agent did not log {event!r} within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
