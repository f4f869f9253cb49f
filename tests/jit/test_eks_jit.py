"""EKS access-entry grants through the Dispatcher against the sandbox (real botocore over HTTP)."""

from __future__ import annotations

import pytest

from connector.errors import ErrorCode
from connector.integrations import ledger
from connector.integrations.eks_access import entries as eks_access
from tests.jit.conftest import admin, dispatcher, job, mutating_calls, ok, run

pytestmark = pytest.mark.timeout(120)
VIEW = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"


def _cluster(sb, mode):
    return next(c for c in sb.seed_info.clusters if c.mode == mode)


def _target(c, **extra):
    base = {
        "resource_type": "eks_cluster",
        "account_id": c.account,
        "region": c.region,
        "cluster": c.name,
        "access_policies": ["AmazonEKSViewPolicy"],
        "scope": "namespace",
        "namespaces": ["team-a"],
    }
    return base | extra


def _entry(sb, c, principal):
    eks = admin(sb, "eks", c.account, c.region)
    try:
        entry = eks.describe_access_entry(clusterName=c.name, principalArn=principal)["accessEntry"]
    except eks.exceptions.ResourceNotFoundException:
        return None, {}
    assoc = eks.list_associated_access_policies(clusterName=c.name, principalArn=principal)["associatedAccessPolicies"]
    return entry, {a["policyArn"].rsplit("/", 1)[-1]: a["accessScope"] for a in assoc}


def _entries(sb, c):
    return admin(sb, "eks", c.account, c.region).list_access_entries(clusterName=c.name)["accessEntries"]


def test_duplicate_grant_and_duplicate_revoke(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    c = _cluster(sb, "API")
    principal = f"arn:aws:iam::{c.account}:role/dev-jit-1"
    before = len(_entries(sb, c))
    sb.faults.reset_counts()
    first = ok(run(d, job(sb, "grant", "g-dup", principal, _target(c))))
    assert first["entry_created"] is True
    # Four EKS calls: the cluster's mode, the entry (absent), create (its answer is the entry: not read back),
    # associate.
    eks_calls = {op: n for op, n in sb.faults.counts()["by_operation"].items() if op.startswith("eks:")}
    assert eks_calls == {
        "eks:DescribeCluster": 1,
        "eks:DescribeAccessEntry": 1,
        "eks:CreateAccessEntry": 1,
        "eks:AssociateAccessPolicy": 1,
    }
    sb.faults.reset_counts()
    second = ok(run(d, job(sb, "grant", "g-dup", principal, _target(c))))
    assert second["calls"] == [] and mutating_calls(sb) == {}  # a re-delivery changes nothing
    entry, assoc = _entry(sb, c, principal)
    assert len(_entries(sb, c)) == before + 1
    assert assoc == {"AmazonEKSViewPolicy": {"type": "namespace", "namespaces": ["team-a"]}}
    assert entry["tags"][eks_access.MANAGED_BY_KEY] == eks_access.MANAGED_BY_VALUE

    r1 = ok(run(d, job(sb, "revoke", "g-dup", principal, _target(c))))
    assert r1["entry_deleted"] is True
    sb.faults.reset_counts()
    r2 = ok(run(d, job(sb, "revoke", "g-dup", principal, _target(c))))
    assert r2["already_revoked"] is True and mutating_calls(sb) == {}
    assert _entry(sb, c, principal)[0] is None
    assert len(_entries(sb, c)) == before


def test_crash_between_create_and_associate_then_redelivery(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    c = _cluster(sb, "API_AND_CONFIG_MAP")
    principal = f"arn:aws:iam::{c.account}:role/dev-jit-crash"
    # The "crash": AssociateAccessPolicy fails (non-retryable, so botocore does not retry it) after the
    # entry was created and tagged.
    rule = sb.faults.add(
        kind="error", service="eks", operation="AssociateAccessPolicy", status=400, code="InvalidRequestException"
    )
    failed = run(d, job(sb, "grant", "g-crash", principal, _target(c)))
    sb.faults.remove(rule)
    assert failed.outcome == "failed"
    entry, assoc = _entry(sb, c, principal)
    assert entry is not None and assoc == {}  # half done: entry, no association
    again = ok(run(d, job(sb, "grant", "g-crash", principal, _target(c))))
    assert again["entry_created"] is False
    entry, assoc = _entry(sb, c, principal)
    assert [p for p in _entries(sb, c) if p == principal] == [principal]
    assert assoc == {"AmazonEKSViewPolicy": {"type": "namespace", "namespaces": ["team-a"]}}
    ok(run(d, job(sb, "revoke", "g-crash", principal, _target(c))))
    assert _entry(sb, c, principal)[0] is None


def test_two_grants_share_an_entry_and_revoking_one_keeps_the_other(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    c = _cluster(sb, "API")
    principal = f"arn:aws:iam::{c.account}:role/dev-jit-shared"
    ok(run(d, job(sb, "grant", "g-a", principal, _target(c, namespaces=["team-a"]))))
    ok(run(d, job(sb, "grant", "g-b", principal, _target(c, namespaces=["team-b"]))))
    _, assoc = _entry(sb, c, principal)
    assert assoc["AmazonEKSViewPolicy"] == {"type": "namespace", "namespaces": ["team-a", "team-b"]}
    ok(run(d, job(sb, "revoke", "g-a", principal, _target(c, namespaces=["team-a"]))))
    entry, assoc = _entry(sb, c, principal)
    assert entry is not None
    assert assoc["AmazonEKSViewPolicy"] == {"type": "namespace", "namespaces": ["team-b"]}
    assert ledger.grant_key("g-b") in entry["tags"] and ledger.grant_key("g-a") not in entry["tags"]
    ok(run(d, job(sb, "revoke", "g-b", principal, _target(c, namespaces=["team-b"]))))
    assert _entry(sb, c, principal)[0] is None


def test_foreign_entry_is_never_deleted(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    c = _cluster(sb, "API")
    principal = c.access_entries[0]  # seeded by the customer, with its own association
    entry0, assoc0 = _entry(sb, c, principal)
    ok(run(d, job(sb, "grant", "g-foreign", principal, _target(c, access_policies=["AmazonEKSEditPolicy"]))))
    _, assoc = _entry(sb, c, principal)
    assert assoc["AmazonEKSEditPolicy"] == {"type": "namespace", "namespaces": ["team-a"]}
    result = ok(run(d, job(sb, "revoke", "g-foreign", principal, _target(c, access_policies=["AmazonEKSEditPolicy"]))))
    assert result["entry_deleted"] is False
    entry, assoc = _entry(sb, c, principal)
    assert entry is not None and entry["accessEntryArn"] == entry0["accessEntryArn"]
    assert assoc == assoc0  # the customer's association untouched, ours gone
    assert not any(k.startswith("access-connector/") for k in entry["tags"])


def test_assumed_role_arn_refused_before_any_call(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    c = _cluster(sb, "API")
    sb.faults.reset_counts()
    out = run(d, job(sb, "grant", "g-sts", f"arn:aws:sts::{c.account}:assumed-role/dev/alice", _target(c)))
    assert out.outcome == "failed" and out.error.code == ErrorCode.INVALID_JOB and not out.error.retryable
    assert f"arn:aws:iam::{c.account}:role/dev" in out.error.message
    assert sb.faults.counts()["by_operation"] == {}


def test_config_map_cluster_refused_with_hint(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    c = _cluster(sb, "CONFIG_MAP")
    sb.faults.reset_counts()
    out = run(d, job(sb, "grant", "g-cm", f"arn:aws:iam::{c.account}:role/dev", _target(c)))
    assert out.outcome == "failed" and out.error.code == ErrorCode.PRECONDITION_FAILED
    assert f"aws eks update-cluster-config --name {c.name}" in out.error.message
    assert mutating_calls(sb) == {}


def test_dry_run_lists_calls_and_makes_none(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    c = _cluster(sb, "API")
    principal = f"arn:aws:iam::{c.account}:role/dev-jit-dry"
    sb.faults.reset_counts()
    result = ok(run(d, job(sb, "grant", "g-dry", principal, _target(c), dry_run=True)))
    assert [call["operation"] for call in result["calls"]] == ["create_access_entry", "associate_access_policy"]
    assert result["calls"][1]["params"]["policyArn"] == VIEW
    assert mutating_calls(sb) == {}
    assert _entry(sb, c, principal)[0] is None


def test_tag_limit_refused_before_any_write(sandbox):
    """An access entry holds at most 50 tags and every live grant costs one: a grant that would pass the limit
    is refused with a message saying what to do, before any write."""
    sb, d = sandbox, dispatcher(sandbox)
    c = _cluster(sb, "API")
    principal = f"arn:aws:iam::{c.account}:role/dev-jit-tags"
    ok(run(d, job(sb, "grant", "g-tags-0", principal, _target(c))))
    entry, _ = _entry(sb, c, principal)
    filler = {f"team/label-{i:02d}": "x" for i in range(50 - len(entry["tags"]))}
    admin(sb, "eks", c.account, c.region).tag_resource(resourceArn=entry["accessEntryArn"], tags=filler)
    sb.faults.reset_counts()
    refused = run(d, job(sb, "grant", "g-tags-1", principal, _target(c)))
    assert refused.error is not None and refused.error.code == ErrorCode.PRECONDITION_FAILED
    assert not refused.error.retryable
    assert "AWS allows 50" in refused.error.message and "revoked" in refused.error.message
    assert mutating_calls(sb) == {}
