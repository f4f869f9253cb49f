"""Expired grants are revoked by ExpirySweeper with no control plane at all, from the records in the
targets, and reported once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from connector.integrations import ledger
from connector.integrations.base import Services
from connector.jobs.expiry import ExpirySweeper
from connector.jobs.registry import build_registry
from connector.v1 import connector_pb2 as pb
from tests.jit.conftest import admin, dispatcher, job, mutating_calls, ok, run, settings

pytestmark = pytest.mark.timeout(180)
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})


def test_sweeper_revokes_expired_grants_once(sandbox, tmp_path):
    sb, d = sandbox, dispatcher(sandbox)
    info = sb.seed_info
    # Grants must expire in the future when they are made; the sweep then looks from a time past that.
    soon = datetime.now(UTC) + timedelta(minutes=5)
    future = datetime.now(UTC) + timedelta(hours=1)
    later = datetime.now(UTC) + timedelta(minutes=10)
    c = next(c for c in info.clusters if c.mode == "API")
    eks_target = {
        "resource_type": "eks_cluster",
        "account_id": c.account,
        "region": c.region,
        "cluster": c.name,
        "access_policies": ["AmazonEKSViewPolicy"],
        "scope": "namespace",
        "namespaces": ["ops"],
    }
    eks_principal = f"arn:aws:iam::{c.account}:role/oncall"
    account = info.account("dev-0001").id
    iam = admin(sb, "iam", account)
    iam.create_role(RoleName="expiring-role", AssumeRolePolicyDocument=TRUST)
    iam_target = {
        "resource_type": "iam_resource_access",
        "account_id": account,
        "role": "expiring-role",
        "resources": [f"arn:aws:sqs:us-east-1:{account}:q1"],
    }
    ic = info.identity_center
    user = ic.users["user2@example.com"]
    ic_target = {
        "resource_type": "identity_center_assignment",
        "account_id": account,
        "permission_set": "ReadOnly",
        "principal_type": "USER",
    }

    ok(run(d, job(sb, "grant", "exp-eks", eks_principal, eks_target, expires_at=soon)))
    ok(run(d, job(sb, "grant", "live-eks", eks_principal, eks_target | {"namespaces": ["dev"]}, expires_at=future)))
    ok(run(d, job(sb, "grant", "exp-iam", "alice", iam_target, expires_at=soon)))
    ok(run(d, job(sb, "grant", "exp-ic", user, ic_target, expires_at=soon)))

    # A fresh process: no control plane, no dispatcher state, only the settings it persisted earlier.
    state = tmp_path / "expiry-state.json"
    ExpirySweeper(build_registry(), Services(connector_id=info.connector_id), state_file=state).observe(
        "int-aws", "aws_organization", settings(sb)
    )
    sweeper = ExpirySweeper(build_registry(), Services(connector_id=info.connector_id), state_file=state)
    events = sweeper.sweep(later)
    by_grant = {e.grant_id: e for e in events}
    assert set(by_grant) == {"exp-eks", "exp-iam", "exp-ic"}, events
    assert all(e.outcome == "succeeded" and e.type == "grant.expired_revoked" for e in events)
    assert by_grant["exp-eks"].details["kind"] == "eks_cluster" and by_grant["exp-eks"].id.startswith("expiry-")
    proto = by_grant["exp-ic"].to_proto()  # what the agent sends in ReportEventsRequest
    assert (
        proto.type == "grant.expired_revoked" and proto.grant_id == "exp-ic" and proto.outcome == pb.OUTCOME_SUCCEEDED
    )
    assert proto.details["kind"] == "identity_center_assignment" and proto.integration_id == "int-aws"

    # EKS: the expired grant's namespace is gone, the live grant keeps the entry and its own scope.
    eks = admin(sb, "eks", c.account, c.region)
    entry = eks.describe_access_entry(clusterName=c.name, principalArn=eks_principal)["accessEntry"]
    assert ledger.grant_key("exp-eks") not in entry["tags"] and ledger.grant_key("live-eks") in entry["tags"]
    assoc = eks.list_associated_access_policies(clusterName=c.name, principalArn=eks_principal)[
        "associatedAccessPolicies"
    ]
    assert assoc[0]["accessScope"] == {"type": "namespace", "namespaces": ["dev"]}
    # IAM: the policy and its record are gone.
    assert iam.list_role_policies(RoleName="expiring-role")["PolicyNames"] == []
    assert ledger.grant_key("exp-iam") not in {t["Key"] for t in iam.list_role_tags(RoleName="expiring-role")["Tags"]}
    # Identity Center: the assignment is gone.
    sso = admin(sb, "sso-admin", info.management_account_id, ic.region)
    left = sso.list_account_assignments(
        InstanceArn=ic.instance_arn, AccountId=account, PermissionSetArn=ic.permission_sets["ReadOnly"]
    )["AccountAssignments"]
    assert user not in [a["PrincipalId"] for a in left]

    # A second sweep (full scan again, to be sure): nothing found, nothing changed.
    sweeper.full_scan_interval = 0
    sb.faults.reset_counts()
    assert sweeper.sweep(later) == []
    assert mutating_calls(sb) == {}

    # The same event id for the same grant and expiry, whoever computes it.
    again = ExpirySweeper(build_registry(), Services(connector_id=info.connector_id))
    again.observe("int-aws", "aws_organization", settings(sb))
    ok(run(d, job(sb, "grant", "exp-iam", "alice", iam_target, expires_at=soon)))
    assert [e.id for e in again.sweep(later)] == [by_grant["exp-iam"].id]
    ok(run(d, job(sb, "revoke", "live-eks", eks_principal, eks_target | {"namespaces": ["dev"]})))


def test_failed_expiry_revoke_is_reported_once_and_retried(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    info = sb.seed_info
    account = info.account("prod-0002").id
    admin(sb, "iam", account).create_role(RoleName="flaky-role", AssumeRolePolicyDocument=TRUST)
    target = {
        "resource_type": "iam_resource_access",
        "account_id": account,
        "role": "flaky-role",
        "resources": [f"arn:aws:sqs:us-east-1:{account}:q2"],
    }
    ok(run(d, job(sb, "grant", "exp-flaky", "alice", target, expires_at=datetime.now(UTC) + timedelta(seconds=30))))
    later = datetime.now(UTC) + timedelta(minutes=1)
    # Built on the dispatcher's Services: it knows where this process granted, so every sweep checks there.
    sweeper = ExpirySweeper(d.registry, d.services, full_scan_interval=3600)
    sweeper.observe("int-aws", "aws_organization", settings(sb))
    rule = sb.faults.add(kind="error", service="iam", operation="DeleteRolePolicy", status=403, code="AccessDenied")
    first = sweeper.sweep(later)
    second = sweeper.sweep(later)
    sb.faults.remove(rule)
    assert [(e.grant_id, e.outcome, e.error_code) for e in first] == [("exp-flaky", "failed", "ACCESS_DENIED")]
    assert second == []  # still failing: retried, but reported once
    third = sweeper.sweep(later)
    assert [(e.grant_id, e.outcome) for e in third] == [("exp-flaky", "succeeded")]
    assert third[0].id != first[0].id
    failed = first[0].to_proto()
    assert failed.outcome == pb.OUTCOME_FAILED and failed.error.code == "ACCESS_DENIED" and not failed.error.retryable
    assert admin(sb, "iam", account).list_role_policies(RoleName="flaky-role")["PolicyNames"] == []
