"""Long work shows progress to a person at a terminal (console logs): a drain says every second how many jobs
still run and how long they have; a sync's accounts are reported at most every second. JSON logs stay terse:
one drain line, sync progress at each tenth."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.agent.executor import RunningJob
from connector.logging import configure_logging
from connector.v1 import connector_pb2
from tests.agent.agent_harness import CONNECTOR_ID, AgentThread, agent_env, cp_settings, start_cp, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    """A small organisation (two regions) for the one test that runs a real sync through the agent."""
    from connector.sandbox import SeedSpec
    from tests.sandbox_env import sandbox_as_aws

    with sandbox_as_aws(
        SeedSpec(accounts=5, regions=("us-east-1", "eu-west-1"), cluster_accounts=1, identity_center=False)
    ) as sb:
        yield sb


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


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_scope_progress_lines(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scopes finishing between accounts move the terminal's line (at most every second); JSON gets no line of
    its own for them."""
    import connector.agent.runtime as runtime_module

    logs = io.StringIO()
    configure_logging("info", fmt, stream=logs)
    try:
        agent = AgentThread(agent_env("127.0.0.1:1"))
        running = RunningJob(job=connector_pb2.Job(id="j-2", attempt=1), lease_until=time.monotonic() + 60)
        for done in range(1, 51):  # fast: one line a second at most
            running.scopes = (done, 0)
            agent.runtime._scope_progress(running)
        monkeypatch.setattr(runtime_module, "PROGRESS_EVERY", 0.0)  # as if a second passed between each
        for done in range(51, 54):
            running.scopes = (done, 60)
            agent.runtime._scope_progress(running)
    finally:
        configure_logging("info", "console")
    lines = [line for line in logs.getvalue().splitlines() if "sync_progress" in line]
    if fmt == "json":
        assert lines == []
    else:
        assert len(lines) == 4, lines
        assert re.search(r"scopes_done.?=.?1\b", lines[0]) and re.search(r"scopes_total.?=.?60\b", lines[-1]), lines


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_real_sync_reports_its_scopes(fmt: str, tmp_path: Path, sandbox: Any) -> None:
    """Through the agent's executor: a sync of the sandbox organisation; its last progress line counts every
    scope task, which the result counts too."""
    from google.protobuf import json_format

    from connector.controlplane.server import ControlPlaneThread
    from connector.v1 import admin_pb2

    logs = io.StringIO()
    info = sandbox.seed_info
    settings = {
        "management_account_role_arn": info.management_role_arn,
        "external_id": info.external_id,
        "member_role_name": info.member_role_name,
        "regions": ["us-east-1", "eu-west-1"],
        "resource_types": ["organization", "eks_cluster"],
    }
    configure_logging("info", fmt, stream=logs)
    try:
        with ControlPlaneThread(cp_settings(tmp_path)) as cp, AgentThread(agent_env(cp.address)):
            record = cp.admin.enqueue_sync(CONNECTOR_ID, "org", "aws_organization", settings)
            done = cp.admin.wait(record.job.id, timeout=60)
    finally:
        configure_logging("info", "console")
    assert done.state == admin_pb2.JOB_STATE_SUCCEEDED, done.error
    result = json_format.MessageToDict(done.result)
    scopes, accounts = int(result["scopes"]), int(result["accounts_active"])
    lines = [line for line in logs.getvalue().splitlines() if "sync_progress" in line]
    last = lines[-1]
    if fmt == "json":
        fields = json.loads(last)
        assert (fields["scopes_done"], fields["scopes_total"]) == (scopes, scopes) > (0, 0)
        assert (fields["accounts_done"], fields["accounts_total"]) == (accounts, accounts)
        assert len(lines) <= 10  # the tenths, nothing per scope
    else:
        assert re.search(rf"scopes_done.?=.?{scopes}\b", last) and re.search(rf"scopes_total.?=.?{scopes}\b", last)
