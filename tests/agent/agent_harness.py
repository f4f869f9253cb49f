"""Shared set-up for the agent's integration tests: the REAL reference control plane (in a thread, over
loopback gRPC), an in-process agent runtime on its own event loop, and `python -m connector run`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from connector.agent.runtime import AgentRuntime
from connector.config import load_config
from connector.controlplane.server import ControlPlaneThread
from connector.controlplane.settings import ServerSettings
from connector.jobs.runtime import build_dispatcher
from tests.certs import server_tls

CONNECTOR_ID = "conn-1"
TOKEN = "agent-test-token-9f8e7d6c5b4a"
ADMIN_TOKEN = "admin-test-token-0123456789"


def cp_settings(tmp_path: Path, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "bind": "127.0.0.1:0",
        "db_path": str(tmp_path / "cp.sqlite"),
        "connector_tokens": {CONNECTOR_ID: TOKEN},
        "admin_token": ADMIN_TOKEN,
        "lease_seconds": 10.0,
        "heartbeat_interval": 1.0,
        "poll_wait": 5.0,
        "retry_backoff": 0.2,
    }
    return ServerSettings(**(values | overrides))


def agent_env(address: str, **overrides: str) -> dict[str, str]:
    env = {
        "CONNECTOR_ID": CONNECTOR_ID,
        "CONTROL_PLANE_URL": f"http://{address}",
        "CONNECTOR_ALLOW_INSECURE_LOOPBACK": "true",
        "CONNECTOR_TOKEN": TOKEN,
        "CONNECTOR_HEALTH_ADDR": "127.0.0.1:0",
        "CONNECTOR_CONCURRENCY": "2",
        "CONNECTOR_DRAIN_GRACE_SECONDS": "10",
        "CONNECTOR_LOG_FORMAT": "json",
    }
    return env | overrides


class AgentThread:
    """AgentRuntime.run() on its own event loop in a thread, so a synchronous test can drive the admin API."""

    def __init__(self, env: Mapping[str, str], **runtime_options: Any) -> None:
        config = load_config(dict(env))
        dispatcher = build_dispatcher(config)
        sweeper = runtime_options.get("sweeper")
        if sweeper is not None and hasattr(sweeper, "offer"):
            dispatcher.listener = sweeper  # as `connector run` wires it: integrations reach it from the dispatcher
        self.runtime = AgentRuntime(config, dispatcher, **runtime_options)
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="agent-under-test", daemon=True)

    def _main(self) -> None:
        try:
            self.exit_code = asyncio.run(self.runtime.run())
        except BaseException as exc:
            self.error = exc

    def start(self) -> AgentThread:
        self._thread.start()
        wait_for(lambda: self.runtime.health.registered or self.exit_code is not None, 30, "agent registered")
        return self

    def stop(self, timeout: float = 60) -> int | None:
        self.runtime.request_stop_threadsafe("test")
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "agent did not stop"
        if self.error is not None:
            raise self.error
        return self.exit_code

    def join(self, timeout: float) -> int | None:
        self._thread.join(timeout)
        return self.exit_code

    def __enter__(self) -> AgentThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.stop()


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.05)


def start_cp(settings: ServerSettings) -> ControlPlaneThread:
    return ControlPlaneThread(settings).start()


def spawn_agent(env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"} | dict(env)
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "connector", "run"], env=full, stdout=log, stderr=log)


def read_lines(log_path: Path) -> list[dict[str, Any]]:
    import json

    lines = []
    for raw in log_path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            lines.append({"event": "_raw", "text": raw})
    return lines


def wait_log(log_path: Path, event: str, timeout: float, **fields: object) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def check() -> bool:
        found[:] = [
            line
            for line in read_lines(log_path)
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
        ]
        return bool(found)

    wait_for(check, timeout, f"log event {event} {fields} in {log_path}")
    return found[0]


def make_tls_files(directory: Path, hostname: str = "localhost") -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `hostname` and 127.0.0.1: (ca, cert, key) paths."""
    return server_tls(directory, hostname)
