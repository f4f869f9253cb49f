"""Fault 7: the sandbox answers a share of calls with 500s and holds another share without answering. Every
error is retried (botocore) or reported (a typed, retryable job error that the control plane re-queues), no
call waits longer than its read timeout, every job ends inside its deadline, the agent stays responsive, and
each grant's effect exists once.

The agent runs in the test process here (real gRPC to the real control plane, real botocore over HTTP to the
sandbox) because the botocore timeouts live in connector.aws.sessions.ClientSettings, which no environment
variable sets: the test gives the agent's AwsSessions a 2 s read timeout so a 5 s hang is a timeout, as a
30 s read timeout would make a 45 s hang one in production.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from connector.aws.sessions import AwsSessions, ClientSettings
from connector.v1 import admin_pb2
from tests.agent.agent_harness import AgentThread, agent_env, cp_settings, start_cp
from tests.faults.conftest import (
    connector_entries,
    effect,
    eks_grants,
    enqueue_grant,
    job_figures,
    revoke_all,
    summarize,
    terminal_records,
)

GRANTS = 6
JOB_TIMEOUT = 60.0
READ_TIMEOUT = 2.0
HANG = 5.0


def _ts(t: object) -> float:
    return t.seconds + t.nanos / 1e9  # type: ignore[attr-defined]


@pytest.mark.timeout(240)
def test_500s_and_hangs_are_retried_or_reported_and_jobs_end_in_time(sandbox, tmp_path):
    with start_cp(cp_settings(tmp_path, lease_seconds=10.0, heartbeat_interval=1.0, max_attempts=5)) as cp:
        agent = AgentThread(agent_env(cp.address, CONNECTOR_CONCURRENCY="3"))
        services = agent.runtime.dispatcher.services
        services.aws = AwsSessions(
            services.connector_id, ClientSettings(read_timeout=READ_TIMEOUT, connect_timeout=READ_TIMEOUT)
        )
        with agent:
            rules = [
                sandbox.faults.error(fraction=0.25, service="eks", seed=3),
                sandbox.faults.hang(HANG, fraction=0.15, service="eks", seed=4),
                sandbox.faults.error(fraction=0.2, service="sts", seed=5),
                sandbox.faults.hang(HANG, fraction=0.1, service="sts", seed=6),
            ]
            grants = eks_grants(sandbox, "flaky", GRANTS)
            records = [enqueue_grant(cp.admin, sandbox, g, timeout=JOB_TIMEOUT) for g in grants]
            final = terminal_records(cp.admin, [r.job.id for r in records], timeout=JOB_TIMEOUT + 30)
            counts = sandbox.faults.counts()
            for rule in rules:
                sandbox.faults.remove(rule)
            # A held call is processed when its hold ends, after the client gave up on it and retried. Let the
            # last ones land before checking and revoking: a CreateAccessEntry landing after the revoke would
            # bring the entry back. AWS deduplicates such a late request by its clientRequestToken (the
            # connector sends a stable one per grant); the sandbox does not (see docs/reliability.md).
            time.sleep(HANG + 1.0)
            took = [_ts(r.finished) - _ts(r.job.created) for r in final if r.HasField("finished")]
            effects = [effect(sandbox, g) for g in grants]

            # Responsive throughout: /healthz answers, and a job after the storm runs at once.
            with urllib.request.urlopen(f"http://{agent.runtime.health_address}/healthz", timeout=5) as health:
                healthy = health.status == 200
            started = time.monotonic()
            revoke_all(cp.admin, sandbox, grants)
            revoke_seconds = time.monotonic() - started
            left = connector_entries(sandbox, "flaky-")
        figures = job_figures(final)
        faulted = counts["faulted"]
        summarize(
            "errors_and_hangs",
            **figures,
            duplicated=sum(1 for e in effects if e.entries > 1 or e.associations > 1 or e.grant_tags > 1),
            grants_left_behind=len(left),
            calls=sum(n for op, n in counts["by_operation"].items() if op.split(":")[0] in ("eks", "sts")),
            answered_500=sum(n for op, n in faulted.items() if op.split(":")[0] in ("eks", "sts")),
            max_job_seconds=round(max(took), 1),
            job_deadline_seconds=JOB_TIMEOUT,
            read_timeout_seconds=READ_TIMEOUT,
            revoke_all_seconds=round(revoke_seconds, 1),
        )
        assert all(r.state == admin_pb2.JOB_STATE_SUCCEEDED for r in final), [
            (r.job.attempt, admin_pb2.JobState.Name(r.state), r.error.code, r.error.message) for r in final
        ]
        assert len(took) == GRANTS and max(took) < JOB_TIMEOUT, took
        assert max(took) > READ_TIMEOUT, "no call timed out: the hang rules never fired"
        assert all(e.once for e in effects), effects
        assert healthy
        assert not left
