"""Sync progress (accounts done / total) reaches the agent's metrics and log."""

from __future__ import annotations

import io
import json
import time

from connector.agent.executor import RunningJob
from connector.agent.runtime import AgentRuntime
from connector.config import load_config
from connector.jobs.runtime import build_dispatcher
from connector.logging import configure_logging
from connector.v1 import connector_pb2

from .agent_harness import agent_env


def test_progress_sets_gauges_and_logs_each_tenth():
    config = load_config(agent_env("127.0.0.1:9"))
    runtime = AgentRuntime(config, build_dispatcher(config))
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    job = connector_pb2.Job(
        id="j1", attempt=1, integration=connector_pb2.Integration(id="org", type="aws_organization")
    )
    running = RunningJob(job=job, lease_until=time.monotonic() + 30)
    for done in range(1, 41):
        runtime._progress(running, done, 40)
    registry = runtime.metrics.registry
    assert registry.get_sample_value("connector_sync_accounts_done", {"integration": "org"}) == 40
    assert registry.get_sample_value("connector_sync_accounts_total", {"integration": "org"}) == 40
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if "sync_progress" in line]
    assert [line["accounts_done"] for line in lines] == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
