"""Fuzzing the shipped agent: hypothesis makes >= 10,000 malformed or hostile jobs of every integration type and
every kind (tests/security/hostile.py), sends each through Admin.EnqueueJob to the reference control plane
(a process), and `connector run` (a process: 64 slots, the expiry sweeper on every second, its state on disk)
polls them over gRPC and runs them against the sandbox, a Kubernetes API server and the customer's Lambda
function. Malformed settings reach the sweeper too (every set that validates is offered to it), which is how
a NaN once ended every replica.

Asserted: the agent process never dies (same pid, connector_task_restarts_total 0 for every task) and still
serves a well-formed job of each type at the end; every job reaches a terminal record; every failure carries
a known ErrorCode and a message without a traceback; malformed input is non-retryable and its message names
the field (FIELD_PATTERNS; the share that does not is printed and must be 0); no planted secret appears in any
result, error, log line or metric. The figures (cases, outcomes by code, duration) are printed.
"""

from __future__ import annotations

import collections
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, Phase, given, settings

from connector.errors import ErrorCode
from connector.sandbox import Sandbox
from connector.v1 import admin_pb2, admin_pb2_grpc
from tests.agent.agent_harness import ADMIN_TOKEN, wait_for
from tests.security import hostile, world
from tests.security.shipped import TERMINAL, Agent, ControlPlane
from tests.security.world import World

pytestmark = pytest.mark.timeout(600)

TARGET_CASES = int(os.environ.get("SECURITY_FUZZ_CASES", "10000"))
MALFORMED = {ErrorCode.INVALID_JOB, ErrorCode.INVALID_SETTINGS, ErrorCode.UNSUPPORTED, ErrorCode.GUARDRAIL_DENIED}
KNOWN_CODES = {c.value for c in ErrorCode}
# How a message names what is wrong with the job: the field, the setting, the integration type.
FIELD_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"\bjob id\b",
        r"\bintegration\.(id|type|settings)\b",
        r"\bintegration type ['\"]",
        r"\bsetting '[^']+'",
        r"\b(grant|revoke)\.(grant_id|principal|target|expires_at|requester_public_key)\b",
        r"\btarget\.",  # target.<key>, whatever the key (a garbage key is named as it was sent)
        r"\btarget: ",
        r"\bsync\.(resource_types|account_ids)\b",
        r"\bprincipal\b",  # the grant's or revoke's principal (one field of both)
        r"\brequester_public_key\b",
        r"^guardrail '\w+'",
    )
)


def names_the_field(message: str) -> bool:
    return any(p.search(message) for p in FIELD_PATTERNS)


def _record_text(record: admin_pb2.JobRecord) -> str:
    body = {"error": json_format.MessageToDict(record.error), "result": json_format.MessageToDict(record.result)}
    return json.dumps(body, ensure_ascii=False)


@pytest.fixture
def shipped(sandbox: Sandbox, hostile_world: World, tmp_path: Path) -> Iterator[tuple[ControlPlane, Agent]]:
    cp = ControlPlane(tmp_path, {hostile.CONNECTOR_ID: hostile.PLANTED_TOKEN}, lease_seconds=60, max_attempts=2)
    agent = None
    try:
        agent = Agent(sandbox, cp, tmp_path, hostile.CONNECTOR_ID, hostile.PLANTED_TOKEN, concurrency=64)
        yield cp, agent
    finally:
        if agent is not None:
            agent.stop()
        cp.stop()


def test_fuzz_hostile_jobs_into_the_shipped_agent(
    hostile_world: World, shipped: tuple[ControlPlane, Agent], tmp_path: Path
) -> None:
    cp, agent = shipped
    w = hostile_world
    eks_target = {
        "resource_type": "eks_cluster",
        "account_id": w.prod_account,
        "region": world.REGION,
        "cluster": w.cluster(w.prod_account),
        "access_policies": ["AmazonEKSViewPolicy"],
        "scope": "namespace",
        "namespaces": ["team-a"],
    }
    places = hostile.Places(
        w.info.management_role_arn, w.prod.url, world.FUNCTION, w.info.external_id, w.info.member_role_name, eks_target
    )
    channel = grpc.insecure_channel(cp.address)
    stub = admin_pb2_grpc.AdminStub(channel)
    metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
    in_flight: collections.deque[grpc.Future] = collections.deque()
    accepted: list[str] = []
    refused_at_enqueue: collections.Counter[str] = collections.Counter()
    enqueue_problems: list[str] = []
    planted_sent: collections.Counter[str] = collections.Counter()
    types_sent: collections.Counter[str] = collections.Counter()
    examples = 0
    sb = w.sb
    reach_before = (
        sum(sb.faults.counts()["by_operation"].values()),
        len(w.prod.requests),
        len(sb.lambdas.invocations()),
    )
    started = time.monotonic()

    @settings(
        max_examples=int(TARGET_CASES * 1.6) + 200,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile.enqueue_requests(places))
    def enqueue(request: admin_pb2.EnqueueJobRequest) -> None:
        nonlocal examples
        if len(accepted) >= TARGET_CASES:
            return
        examples += 1
        wire = request.SerializeToString()
        for secret in hostile.PLANTED[1:]:  # the token is in every call's metadata
            planted_sent[secret] += secret.encode() in wire
        types_sent[request.integration.type if request.integration.type in hostile.TYPES else "(other)"] += 1
        # Pipelined: generating the next case overlaps the previous EnqueueJob calls.
        in_flight.append(stub.EnqueueJob.future(request, metadata=metadata, timeout=60))
        while len(in_flight) > 32:
            collect(in_flight.popleft())

    def collect(future: grpc.Future) -> None:
        try:
            accepted.append(future.result().job.id)
        except grpc.RpcError as exc:
            # The control plane refuses what it cannot store or deliver: a bad timeout, objects nested deeper
            # than it allows (INVALID_ARGUMENT), or deeper than protobuf can parse at all (gRPC's UNKNOWN).
            details = exc.details() or ""
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                refused_at_enqueue[details.removeprefix("EnqueueJobRequest: ")[:48]] += 1
            elif exc.code() == grpc.StatusCode.UNKNOWN and "Exceeded upb_DecodeOptions_MaxDepth" in details:
                refused_at_enqueue["request too deeply nested to parse"] += 1
            else:
                enqueue_problems.append(f"{exc.code()}: {details[:300]}")

    enqueue()
    while in_flight:
        collect(in_flight.popleft())
    assert not enqueue_problems, enqueue_problems[:10]
    enqueued_s = time.monotonic() - started

    def settled() -> bool:
        return not any(cp.admin.list(hostile.CONNECTOR_ID, state, 1) for state in (1, 2))  # QUEUED, LEASED

    wait_for(settled, 300, "every fuzzed job settled")
    settled_s = time.monotonic() - started

    # Every job has a terminal record; every failure explains itself.
    outcomes: collections.Counter[str] = collections.Counter()
    example: dict[str, str] = {}  # one message per error code, for the figures
    unnamed: collections.Counter[str] = collections.Counter()
    malformed = 0
    problems: list[str] = []
    for i in range(0, len(accepted), 200):
        futures = [
            stub.GetJob.future(admin_pb2.GetJobRequest(job_id=j), metadata=metadata, timeout=60)
            for j in accepted[i : i + 200]
        ]
        for future in futures:
            record = future.result(timeout=60)
            text = _record_text(record)
            if record.state not in TERMINAL:
                problems.append(f"{record.job.id} not terminal: {admin_pb2.JobState.Name(record.state)}")
            if record.state == admin_pb2.JOB_STATE_SUCCEEDED:
                outcomes["SUCCEEDED"] += 1
            else:
                code, message = record.error.code, record.error.message
                outcomes[code or "(none)"] += 1
                example.setdefault(code, message[:160])
                if code not in KNOWN_CODES:
                    problems.append(f"{record.job.id}: unknown error code {code!r}: {message[:200]}")
                if not message.strip():
                    problems.append(f"{record.job.id}: {code} without a message")
                if code in MALFORMED:
                    malformed += 1
                    if record.error.retryable:
                        problems.append(f"{record.job.id}: {code} marked retryable: {message[:200]}")
                    if message != hostile.NOOP_FAILURE and not names_the_field(message):
                        unnamed[f"{code}: {re.sub(r'[0-9]+', 'N', message)[:110]}"] += 1
                if code == ErrorCode.INTERNAL and message != hostile.NOOP_FAILURE:
                    problems.append(f"{record.job.id}: INTERNAL (a bug, not a clear error): {message[:300]}")
            if "Traceback" in text or 'File "' in text:
                problems.append(f"{record.job.id}: traceback text in the record: {text[:300]}")
            for secret in hostile.PLANTED:
                if secret in text:
                    problems.append(f"{record.job.id}: planted secret {secret[:12]}... in the record: {text[:300]}")

    reached = sum(outcomes.values())
    reach = {
        "aws calls": sum(sb.faults.counts()["by_operation"].values()) - reach_before[0],
        "kubernetes api requests": len(w.prod.requests) - reach_before[1],
        "lambda invocations": len(sb.lambdas.invocations()) - reach_before[2],
    }
    named_share = 1 - sum(unnamed.values()) / max(malformed, 1)
    print(
        f"\nHOSTILE fuzz: {examples} jobs generated ({dict(types_sent)}); {sum(refused_at_enqueue.values())} "
        f"refused by EnqueueJob; {reached} reached a terminal record through the shipped agent "
        f"(enqueue {enqueued_s:.0f} s, all settled {settled_s:.0f} s); malformed {malformed}, naming the field "
        f"{named_share:.2%}"
    )
    print("outcomes by error code:", json.dumps(dict(outcomes.most_common())))
    print("an example per code:", json.dumps({c: example[c] for c in sorted(example) if c not in MALFORMED}))
    print("refused at enqueue:", json.dumps(dict(refused_at_enqueue.most_common())))
    print("planted secrets sent in jobs:", dict(planted_sent), "reached the outside world:", reach)
    if unnamed:
        print("messages not naming the field:\n  " + "\n  ".join(f"{n:5d} {m}" for m, n in unnamed.most_common(40)))
    if problems:
        print("\n".join(problems[:40]))
    (tmp_path / "fuzz-report.json").write_text(json.dumps({"problems": problems, "unnamed": unnamed}, indent=1))

    # The same process, never restarted anything, still runs a well-formed job of each type.
    assert agent.alive(), f"the agent died:\n{agent.log_text()[-3000:]}"
    final = {
        "noop": cp.admin.enqueue_sync(hostile.CONNECTOR_ID, "noop-final", "noop", {"items": 2}),
        "aws_organization": cp.admin.enqueue_sync(
            hostile.CONNECTOR_ID, "org-final", "aws_organization", w.org_settings(resource_types=["organization"])
        ),
        "kubernetes": cp.admin.enqueue_sync(hostile.CONNECTOR_ID, "k8s-final", "kubernetes", w.k8s_settings(w.prod)),
        "lambda_custom": cp.admin.enqueue_sync(
            hostile.CONNECTOR_ID, "lambda-final", "lambda_custom", w.lambda_settings()
        ),
        "eks_aws_auth": cp.admin.enqueue_grant(  # it has no sync: a dry-run grant reads the cluster instead
            hostile.CONNECTOR_ID,
            "auth-final",
            "eks_aws_auth",
            grant_id="fuzz-final",
            principal=f"arn:aws:iam::{w.prod_account}:role/fuzz-final",
            target={"groups": ["dev-team"]},
            settings=w.k8s_settings(w.prod),
            expires_in=600,
            dry_run=True,
        ),
    }
    for name, record in final.items():
        done = cp.admin.wait(record.job.id, timeout=120)
        assert done.state == admin_pb2.JOB_STATE_SUCCEEDED, (name, done.error)
    restarts = agent.task_restarts()
    assert restarts and not any(restarts.values()), restarts
    assert agent.sweeps() >= 5, "the expiry sweeper did not run"
    assert agent.alive()
    metrics = agent.metrics()
    agent.terminate()

    # No planted secret anywhere: the agent's and the control plane's log lines, /metrics.
    logs = agent.log_text() + cp.log.read_text(errors="replace")
    assert "job_finished" in logs and "expiry" in logs  # the log did see the run (jobs and sweeps)
    for secret in hostile.PLANTED:
        assert secret not in logs, f"planted secret {secret[:12]}... in a log line"
        assert secret not in metrics, f"planted secret {secret[:12]}... in /metrics"
    # By event name (a generated id may spell one of these words): no bug path, no crashed task.
    assert '"event": "job_internal_error"' not in logs and '"event": "task_crashed"' not in logs
    assert '"event": "audit_failed"' not in logs, "a grant or revoke without its audit line"
    assert '"event": "expiry_sweep_integration_crashed"' not in logs
    assert not problems, "\n".join(problems[:40]) + f"\n({len(problems)} problems)"
    assert reached >= TARGET_CASES
    assert set(types_sent) >= set(hostile.TYPES), types_sent
    # The secrets really travelled the risky paths: settings, AssumeRole's ExternalId, a cluster URL, custom
    # parameters; and the jobs reached the outside world, not only the validation.
    assert all(planted_sent[secret] >= TARGET_CASES // 200 for secret in hostile.PLANTED[1:]), planted_sent
    assert outcomes[ErrorCode.ACCESS_DENIED] >= 1 and outcomes[ErrorCode.NOT_FOUND] >= 1, outcomes
    assert all(n >= 10 for n in reach.values()), reach
    assert not unnamed, f"{sum(unnamed.values())} malformed-input failures do not name the field"
    channel.close()
