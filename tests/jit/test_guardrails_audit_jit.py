"""The customer's guardrail file refuses grants through the dispatcher before any change; every grant and
revoke emits exactly one audit line without secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from connector.errors import ErrorCode
from connector.jobs.guardrails import load_guardrails
from tests.jit.conftest import admin, dispatcher, job, mutating_calls, ok, run

pytestmark = pytest.mark.timeout(120)

GUARDRAILS = """
version: 1
max_duration: 2h
permission_sets: ["ReadOnly*"]
access_policies: ["AmazonEKSViewPolicy", "AmazonEKSEditPolicy"]
allow_cluster_admin: false
"""


@pytest.fixture
def guarded(sandbox, tmp_path):
    path = tmp_path / "guardrails.yaml"
    path.write_text(GUARDRAILS)
    return dispatcher(sandbox, guardrails=load_guardrails(path))


def _eks_target(c, policy):
    return {
        "resource_type": "eks_cluster",
        "account_id": c.account,
        "region": c.region,
        "cluster": c.name,
        "access_policies": [policy],
        "scope": "cluster",
    }


def _ic_target(sb, ps):
    return {
        "resource_type": "identity_center_assignment",
        "account_id": sb.seed_info.account("prod-0000").id,
        "permission_set": ps,
        "principal_type": "USER",
    }


def test_guardrail_refusals_make_no_change(sandbox, guarded):
    sb = sandbox
    c = next(c for c in sb.seed_info.clusters if c.mode == "API")
    user = sb.seed_info.identity_center.users["user0@example.com"]
    soon = datetime.now(UTC) + timedelta(hours=1)
    cases = [
        (
            job(
                sb,
                "grant",
                "gr-1",
                f"arn:aws:iam::{c.account}:role/x",
                _eks_target(c, "AmazonEKSClusterAdminPolicy"),
                expires_at=soon,
            ),
            "access_policies",
        ),
        (job(sb, "grant", "gr-2", user, _ic_target(sb, "EksClusterAdmin"), expires_at=soon), "permission_sets"),
        (
            job(sb, "grant", "gr-3", user, _ic_target(sb, "ReadOnly"), expires_at=soon + timedelta(hours=5)),
            "max_duration",
        ),
        (job(sb, "grant", "gr-4", user, _ic_target(sb, "ReadOnly")), "max_duration"),
    ]
    sb.faults.reset_counts()
    for j, rule in cases:
        out = run(guarded, j)
        assert out.outcome == "failed" and out.error.code == ErrorCode.GUARDRAIL_DENIED, out.error
        assert rule in out.error.message and not out.error.retryable
    assert mutating_calls(sb) == {}
    # Within the rules, the same dispatcher grants.
    ok(run(guarded, job(sb, "grant", "gr-ok", user, _ic_target(sb, "ReadOnly"), expires_at=soon)))
    ok(run(guarded, job(sb, "revoke", "gr-ok", user, _ic_target(sb, "ReadOnly"))))


def test_iam_role_named_admin_is_not_mistaken_for_a_kubernetes_role(sandbox, guarded):
    sb = sandbox
    account = sb.seed_info.account("prod-0000").id
    admin(sb, "iam", account).create_role(RoleName="admin", AssumeRolePolicyDocument=json.dumps({"Statement": []}))
    target = {
        "resource_type": "iam_resource_access",
        "account_id": account,
        "role": "admin",
        "resources": [f"arn:aws:sns:us-east-1:{account}:alerts"],
    }
    soon = datetime.now(UTC) + timedelta(hours=1)
    ok(run(guarded, job(sb, "grant", "gr-iam", "alice", target, expires_at=soon)))
    ok(run(guarded, job(sb, "revoke", "gr-iam", "alice", target)))


def test_exactly_one_audit_line_per_grant_and_revoke(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    user = sb.seed_info.identity_center.users["user1@example.com"]
    jobs = [
        job(sb, "grant", "au-1", user, _ic_target(sb, "ReadOnly")),
        job(sb, "grant", "au-1", user, _ic_target(sb, "ReadOnly")),
        job(sb, "grant", "au-bad", "not-an-id", _ic_target(sb, "ReadOnly")),
        job(sb, "revoke", "au-1", user, _ic_target(sb, "ReadOnly"), dry_run=True),
        job(sb, "revoke", "au-1", user, _ic_target(sb, "ReadOnly")),
    ]
    with structlog.testing.capture_logs() as logs:
        outcomes = [run(d, j) for j in jobs]
    audits = [entry for entry in logs if entry["event"] == "audit"]
    assert [a["job_id"] for a in audits] == [j.id for j in jobs]
    assert [a["outcome"] for a in audits] == [o.outcome for o in outcomes]
    first = audits[0]
    assert first["action"] == "grant" and first["grant_id"] == "au-1" and first["principal"] == user
    assert first["policies"] == ["ReadOnly"] and first["scope"]["account_id"] == _ic_target(sb, "x")["account_id"]
    assert first["dry_run"] is False and first["duration_ms"] >= 0 and first["calls"] == 2
    assert audits[2]["error_code"] == "INVALID_JOB"
    assert audits[3]["dry_run"] is True and audits[3]["action"] == "revoke"
    text = json.dumps(audits, default=str)
    for secret in (sb.env()["AWS_SECRET_ACCESS_KEY"], sb.env()["AWS_SESSION_TOKEN"], sb.env()["AWS_ACCESS_KEY_ID"]):
        assert secret not in text
