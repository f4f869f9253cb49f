"""Long work shows progress to a person at a terminal (console logs): a drain says every second how many jobs
still run and how long they have; a sync's accounts are reported at most every second. JSON logs stay terse:
one drain line, sync progress at each tenth."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

from connector.agent.executor import RunningJob
from connector.logging import configure_logging
from connector.v1 import connector_pb2
from tests.agent.agent_harness import CONNECTOR_ID, AgentThread, agent_env, cp_settings, start_cp, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_drain_progress(fmt: str, tmp_path: Path) -> None:
    logs = io.StringIO()
    configure_logging("info", fmt, stream=logs)
    cp = start_cp(cp_settings(tmp_path))
    try:
        agent = AgentThread(agent_env(cp.address, CONNECTOR_DRAIN_GRACE_SECONDS="10")).start()
        record = cp.admin.enqueue_grant(
            CONNECTOR_ID, "noop-1", "noop", grant_id="g-drain", principal="p", target={"sleep_seconds": 2.5}
        )
        wait_for(lambda: agent.runtime.running, 20, "job running")
        agent.stop()
        assert cp.admin.get(record.job.id).state != 0
    finally:
        cp.stop()
        configure_logging("info", "console")
    text = logs.getvalue()
    draining = re.findall(r"draining.*grace_left_seconds.?=?.?(\d+)", text)
    if fmt == "console":
        assert len(draining) >= 2, text  # one line a second while the 2.5 s job finishes
    else:
        assert not draining and text.count('"drain_waiting"') == 1, text


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_sync_progress_lines(fmt: str, tmp_path: Path) -> None:
    logs = io.StringIO()
    configure_logging("info", fmt, stream=logs)
    try:
        agent = AgentThread(agent_env("127.0.0.1:1"))
        running = RunningJob(job=connector_pb2.Job(id="j-1", attempt=1), lease_until=time.monotonic() + 60)
        agent.runtime._progress(running, 1, 0)  # the walk goes on: no total yet
        for done in range(1, 201):
            agent.runtime._progress(running, done, 200)
    finally:
        configure_logging("info", "console")
    lines = [line for line in logs.getvalue().splitlines() if "sync_progress" in line]
    # JSON: each tenth of the way; console: the first report at once (a person sees it started), then tenths.
    assert len(lines) == (11 if fmt == "console" else 10), lines
