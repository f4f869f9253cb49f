"""The grant records of the AWS kinds, through the Dispatcher and the ExpirySweeper against the sandbox: an
expiry that is already past is never applied; a record that cannot be decoded counts as expired and its
access is removed; a revoke never takes away what someone else added to a connector-made access entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.errors import ErrorCode
from connector.integrations import ledger
from connector.integrations.base import Services
from connector.integrations.eks_access import entries
from connector.jobs.expiry import ExpirySweeper
from connector.jobs.guardrails import Guardrails
from connector.jobs.registry import build_registry
from tests.jit.conftest import admin, dispatcher, job, mutating_calls, ok, run, settings

pytestmark = pytest.mark.timeout(180)
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})
EDIT = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"


def _cluster(sb):
    return next(c for c in sb.seed_info.clusters if c.mode == "API")


def _eks_target(c, **extra: Any) -> dict[str, Any]:
    return {
        "resource_type": "eks_cluster",
        "account_id": c.account,
        "region": c.region,
        "cluster": c.name,
        "access_policies": ["AmazonEKSViewPolicy"],
        "scope": "namespace",
        "namespaces": ["team-a"],
    } | extra


def _eks(sb, c):
    return admin(sb, "eks", c.account, c.region)


def _entry(sb, c, principal: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    eks = _eks(sb, c)
    try:
        entry = eks.describe_access_entry(clusterName=c.name, principalArn=principal)["accessEntry"]
    except eks.exceptions.ResourceNotFoundException:
        return None, {}
    assoc = eks.list_associated_access_policies(clusterName=c.name, principalArn=principal)["associatedAccessPolicies"]
    return entry, {a["policyArn"].rsplit("/", 1)[-1]: a["accessScope"] for a in assoc}


def _ours(tags: dict[str, str]) -> list[str]:
    """The connector's grant and policy-ownership tags on an entry."""
    return sorted(k for k in tags if k.startswith((ledger.GRANT_PREFIX, entries.POLICY_PREFIX)))


def test_revoke_keeps_an_entry_someone_else_associated_a_policy_with(sandbox):
    """The connector made the entry; someone then associated AmazonEKSEditPolicy with it outside the connector.
    The revoke removes the connector's association, its records and the Kubernetes groups it set, and keeps the
    entry with the other association."""
    sb, c = sandbox, _cluster(sandbox)
    principal = f"arn:aws:iam::{c.account}:role/foreign-assoc"
    target = _eks_target(c, kubernetes_groups=["ops"])
    d = dispatcher(sb, Guardrails(max_duration="12h", kubernetes_groups=("ops",)))
    granted = ok(run(d, job(sb, "grant", "fa-1", principal, target)))
    assert granted["entry_created"] is True
    _eks(sb, c).associate_access_policy(
        clusterName=c.name, principalArn=principal, policyArn=EDIT, accessScope={"type": "cluster"}
    )

    revoked = ok(run(d, job(sb, "revoke", "fa-1", principal, target)))
    assert revoked["entry_deleted"] is False and "AmazonEKSEditPolicy" in revoked["entry_kept"]
    entry, assoc = _entry(sb, c, principal)
    assert entry is not None and entry["accessEntryArn"] == granted["access_entry_arn"]
    assert assoc == {"AmazonEKSEditPolicy": {"type": "cluster", "namespaces": []}}  # theirs stays, ours is gone
    assert _ours(entry["tags"]) == []
    assert entry["kubernetesGroups"] == []  # the groups the grant asked for do not outlive it

    # Idempotent: a second revoke changes nothing.
    sb.faults.reset_counts()
    again = ok(run(d, job(sb, "revoke", "fa-1", principal, target)))
    assert again["already_revoked"] is True and mutating_calls(sb) == {}
    assert _entry(sb, c, principal)[1] == assoc

    # The kept entry is still the connector's: a later grant sets the identity it asks for, and its revoke
    # takes that away again.
    ok(run(d, job(sb, "grant", "fa-2", principal, target | {"username": "apono:{{SessionName}}"})))
    entry, assoc = _entry(sb, c, principal)
    assert entry["kubernetesGroups"] == ["ops"] and set(assoc) == {"AmazonEKSEditPolicy", "AmazonEKSViewPolicy"}
    ok(run(d, job(sb, "revoke", "fa-2", principal, target)))
    entry, assoc = _entry(sb, c, principal)
    assert entry["kubernetesGroups"] == [] and set(assoc) == {"AmazonEKSEditPolicy"} and _ours(entry["tags"]) == []


# -- expiries that are not in the future -----------------------------------------------------------------
PAST = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
BEFORE_1970 = datetime(1969, 7, 20, 20, 17, tzinfo=UTC)


def _targets(sb) -> dict[str, tuple[str, dict[str, Any]]]:
    c = _cluster(sb)
    account = sb.seed_info.account("dev-0001").id
    return {
        "eks": (f"arn:aws:iam::{c.account}:role/past", _eks_target(c)),
        "iam": (
            "alice",
            {
                "resource_type": "iam_resource_access",
                "account_id": account,
                "role": "past-role",
                "resources": [f"arn:aws:sqs:us-east-1:{account}:q"],
            },
        ),
        "ic": (
            sb.seed_info.identity_center.users["user0@example.com"],
            {
                "resource_type": "identity_center_assignment",
                "account_id": account,
                "permission_set": "ReadOnly",
                "principal_type": "USER",
            },
        ),
    }


@pytest.mark.parametrize("kind", ["eks", "iam", "ic"])
@pytest.mark.parametrize("when", [PAST, BEFORE_1970], ids=["past", "before-1970"])
def test_grant_whose_expiry_is_not_in_the_future_is_refused_before_any_call(sandbox, kind, when):
    sb = sandbox
    principal, target = _targets(sb)[kind]
    sb.faults.reset_counts()
    out = run(dispatcher(sb), job(sb, "grant", f"past-{kind}", principal, target, expires_at=when))
    assert out.outcome == "failed" and out.error.code == ErrorCode.INVALID_JOB and not out.error.retryable
    assert "grant.expires_at" in out.error.message and when.isoformat() in out.error.message
    assert sb.faults.counts()["by_operation"] == {}  # not even AssumeRole


# -- records that cannot be decoded ----------------------------------------------------------------------
BAD = {"no-exp": "", "negative": "exp=-5", "garbage-exp": "exp=tomorrow", "garbage": None}


def _spoil(value: str, how: str) -> str:
    """The record with its expiry word replaced as BAD says (garbage: the whole record is garbage)."""
    if BAD[how] is None:
        return "garbage"
    words = [w for w in value.split() if not w.startswith("exp=")]
    return " ".join(([BAD[how]] if BAD[how] else []) + words)


def test_undecodable_records_are_expired_and_revoked_by_the_sweeper(sandbox):
    """A record with no expiry, a negative one or garbage counts as expired (never as "never"): the EKS, IAM
    and Identity Center scanners find it and the sweeper revokes the grant it records."""
    sb, info = sandbox, sandbox.seed_info
    d = dispatcher(sb)
    c = _cluster(sb)
    eks = _eks(sb, c)
    account = info.account("prod-0002").id
    iam = admin(sb, "iam", account)
    iam.create_role(RoleName="spoilt-role", AssumeRolePolicyDocument=TRUST)
    ic = info.identity_center
    sso = admin(sb, "sso-admin", info.management_account_id, ic.region)
    read_only = ic.permission_sets["ReadOnly"]
    foreign = c.access_entries[0]  # the customer's own entry: the connector only adds an association to it
    foreign_before = _entry(sb, c, foreign)[1]

    spoilt: dict[str, str] = {}  # grant id -> how its record was spoilt
    for n, how in enumerate(BAD):
        # EKS: on an entry the connector makes, and (garbage: the record names no policy) on the customer's
        # entry, where only the association the connector owns may go.
        principal = foreign if how == "garbage" else f"arn:aws:iam::{c.account}:role/spoilt-{n}"
        eks_target = _eks_target(c, access_policies=["AmazonEKSEditPolicy"]) if how == "garbage" else _eks_target(c)
        ok(run(d, job(sb, "grant", f"bad-eks-{n}", principal, eks_target)))
        entry, _ = _entry(sb, c, principal)
        key = ledger.grant_key(f"bad-eks-{n}")
        eks.tag_resource(resourceArn=entry["accessEntryArn"], tags={key: _spoil(entry["tags"][key], how)})
        # IAM: one role, one record per grant.
        iam_target = {
            "resource_type": "iam_resource_access",
            "account_id": account,
            "role": "spoilt-role",
            "resources": [f"arn:aws:sqs:us-east-1:{account}:q{n}"],
        }
        ok(run(d, job(sb, "grant", f"bad-iam-{n}", "alice", iam_target)))
        key = ledger.grant_key(f"bad-iam-{n}")
        tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName="spoilt-role")["Tags"]}
        iam.tag_role(RoleName="spoilt-role", Tags=[{"Key": key, "Value": _spoil(tags[key], how)}])
        spoilt |= {f"bad-eks-{n}": how, f"bad-iam-{n}": how}
        if how == "garbage":
            continue  # an Identity Center record that names no assignment: see the next test
        # Identity Center: one user per grant on the ReadOnly set.
        ic_target = {
            "resource_type": "identity_center_assignment",
            "account_id": account,
            "permission_set": "ReadOnly",
            "principal_type": "USER",
        }
        ok(run(d, job(sb, "grant", f"bad-ic-{n}", ic.users[f"user{n}@example.com"], ic_target)))
        key = ledger.grant_key(f"bad-ic-{n}")
        tags = {
            t["Key"]: t["Value"]
            for t in sso.list_tags_for_resource(InstanceArn=ic.instance_arn, ResourceArn=read_only)["Tags"]
        }
        sso.tag_resource(
            InstanceArn=ic.instance_arn, ResourceArn=read_only, Tags=[{"Key": key, "Value": _spoil(tags[key], how)}]
        )
        spoilt[f"bad-ic-{n}"] = how

    # A sweep at the present time: every grant above expires hours from now, but no spoilt record says so.
    sweeper = ExpirySweeper(build_registry(), Services(connector_id=info.connector_id))
    sweeper.observe("int-aws", "aws_organization", settings(sb))
    events = {e.grant_id: e for e in sweeper.sweep(datetime.now(UTC))}
    assert set(spoilt) <= set(events), sorted(events)
    for grant_id in spoilt:
        assert events[grant_id].outcome == "succeeded", events[grant_id]
        assert events[grant_id].details["expired_at"].startswith("unknown")

    # EKS: the connector's entries are gone; the customer's entry keeps exactly what it had.
    for n, how in enumerate(BAD):
        if how != "garbage":
            assert _entry(sb, c, f"arn:aws:iam::{c.account}:role/spoilt-{n}")[0] is None
    entry, assoc = _entry(sb, c, foreign)
    assert entry is not None and assoc == foreign_before and _ours(entry["tags"]) == []
    # IAM: every grant's policy and record are gone.
    assert iam.list_role_policies(RoleName="spoilt-role")["PolicyNames"] == []
    assert not [
        t for t in iam.list_role_tags(RoleName="spoilt-role")["Tags"] if t["Key"].startswith(ledger.GRANT_PREFIX)
    ]
    # Identity Center: the assignments and their records are gone.
    left = sso.list_account_assignments(InstanceArn=ic.instance_arn, AccountId=account, PermissionSetArn=read_only)
    assert not {a["PrincipalId"] for a in left["AccountAssignments"]} & {
        ic.users[f"user{n}@example.com"] for n in range(3)
    }
    tags = sso.list_tags_for_resource(InstanceArn=ic.instance_arn, ResourceArn=read_only)["Tags"]
    assert not [t for t in tags if t["Key"].startswith(ledger.GRANT_PREFIX)]

    # Nothing is left to find.
    sweeper.full_scan_interval = 0
    assert [e for e in sweeper.sweep(datetime.now(UTC)) if e.grant_id in spoilt] == []


def test_identity_center_record_that_names_nothing_is_reported_once(sandbox):
    """A record on a permission set that names no account or principal cannot be revoked (nothing says which
    assignment it guards): it is reported as a failed expiry, once, for a person to look at."""
    sb, info = sandbox, sandbox.seed_info
    ic = info.identity_center
    sso = admin(sb, "sso-admin", info.management_account_id, ic.region)
    key = ledger.grant_key("bad-ic-nothing")
    sso.tag_resource(
        InstanceArn=ic.instance_arn,
        ResourceArn=ic.permission_sets["EksClusterAdmin"],
        Tags=[{"Key": key, "Value": "garbage"}],
    )
    sweeper = ExpirySweeper(build_registry(), Services(connector_id=info.connector_id))
    sweeper.observe("int-aws", "aws_organization", settings(sb))
    first = [e for e in sweeper.sweep(datetime.now(UTC)) if e.grant_id == key]
    assert [(e.outcome, e.error_code) for e in first] == [("failed", "PRECONDITION_FAILED")]
    assert "by hand" in first[0].error_message
    assert [e for e in sweeper.sweep(datetime.now(UTC)) if e.grant_id == key] == []
    sso.untag_resource(InstanceArn=ic.instance_arn, ResourceArn=ic.permission_sets["EksClusterAdmin"], TagKeys=[key])


# -- the expiry loop finds every grant it lets through ---------------------------------------------------
def _with_settings(j: Any, **overrides: Any) -> Any:
    """The job with its integration's settings changed (the same integration id)."""
    j.integration.settings.update(overrides)
    for key in [k for k, v in overrides.items() if v is None]:
        del j.integration.settings[key]
    return j


def test_grants_only_where_a_full_expiry_scan_looks(sandbox):
    """After a restart the expiry loop knows only what its full scan finds: the integration's regions and its
    accounts but the excluded ones. A grant elsewhere is refused before any call."""
    sb, info = sandbox, sandbox.seed_info
    c = _cluster(sb)
    principal = f"arn:aws:iam::{c.account}:role/elsewhere"
    account = info.account("prod-0002").id
    iam_target = {
        "resource_type": "iam_resource_access",
        "account_id": account,
        "role": "app",
        "resources": [f"arn:aws:sqs:us-east-1:{account}:q"],
    }
    cases = [
        (job(sb, "grant", "where-1", principal, _eks_target(c, region="eu-west-1")), "target.region eu-west-1"),
        (
            _with_settings(job(sb, "grant", "where-2", principal, _eks_target(c)), excluded_account_ids=[c.account]),
            "excluded",
        ),
        (
            _with_settings(job(sb, "grant", "where-3", "alice", iam_target), excluded_account_ids=[account]),
            "excluded",
        ),
    ]
    sb.faults.reset_counts()
    for j, words in cases:
        out = run(dispatcher(sb), j)
        assert out.outcome == "failed" and out.error.code == ErrorCode.INVALID_JOB, out.error
        assert words in out.error.message
    assert sb.faults.counts()["by_operation"] == {}


def test_full_scan_with_enabled_regions_looks_in_every_enabled_region(sandbox):
    """With `regions: enabled` a grant may go to any region enabled in the account; a sweeper that never saw it
    (a restart) finds it there when it has expired."""
    sb, info = sandbox, sandbox.seed_info
    account = info.account("prod-0002").id
    region = "eu-west-1"
    eks = admin(sb, "eks", account, region)
    eks.create_cluster(
        name="far-away",
        roleArn=f"arn:aws:iam::{account}:role/eks-cluster-role",
        resourcesVpcConfig={"subnetIds": ["subnet-1", "subnet-2"]},
        accessConfig={"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False},
    )
    principal = f"arn:aws:iam::{account}:role/far"
    target = {
        "resource_type": "eks_cluster",
        "account_id": account,
        "region": region,
        "cluster": "far-away",
        "access_policies": ["AmazonEKSViewPolicy"],
        "scope": "cluster",
    }
    soon = datetime.now(UTC) + timedelta(minutes=5)
    enabled = settings(sb) | {"regions": "enabled"}
    ok(
        run(
            dispatcher(sb),
            _with_settings(job(sb, "grant", "far-1", principal, target, expires_at=soon), regions="enabled"),
        )
    )
    assert eks.list_access_entries(clusterName="far-away")["accessEntries"] == [principal]

    sweeper = ExpirySweeper(build_registry(), Services(connector_id=info.connector_id))
    sweeper.observe("int-aws", "aws_organization", enabled)
    events = [e for e in sweeper.sweep(datetime.now(UTC) + timedelta(minutes=10)) if e.grant_id == "far-1"]
    assert [(e.outcome, e.details["target"]["region"]) for e in events] == [("succeeded", region)]
    assert eks.list_access_entries(clusterName="far-away")["accessEntries"] == []


def test_identity_center_grants_expire_whatever_the_integration_syncs(sandbox):
    """Identity Center grants work without `identity_center` in resource_types or an sso_region: their expiry
    must too."""
    sb, info = sandbox, sandbox.seed_info
    ic = info.identity_center
    user = ic.users["user2@example.com"]
    account = info.account("prod-0002").id
    target = {
        "resource_type": "identity_center_assignment",
        "account_id": account,
        "permission_set": "ReadOnly",
        "principal_type": "USER",
    }
    soon = datetime.now(UTC) + timedelta(minutes=5)
    narrow = {"resource_types": ["organization"], "sso_region": None}
    ok(run(dispatcher(sb), _with_settings(job(sb, "grant", "ic-narrow", user, target, expires_at=soon), **narrow)))
    sweeper = ExpirySweeper(build_registry(), Services(connector_id=info.connector_id))
    sweeper.observe("int-aws", "aws_organization", {k: v for k, v in (settings(sb) | narrow).items() if v is not None})
    events = [e for e in sweeper.sweep(datetime.now(UTC) + timedelta(minutes=10)) if e.grant_id == "ic-narrow"]
    assert [e.outcome for e in events] == ["succeeded"]
    sso = admin(sb, "sso-admin", info.management_account_id, ic.region)
    left = sso.list_account_assignments(
        InstanceArn=ic.instance_arn, AccountId=account, PermissionSetArn=ic.permission_sets["ReadOnly"]
    )["AccountAssignments"]
    assert user not in [a["PrincipalId"] for a in left]
