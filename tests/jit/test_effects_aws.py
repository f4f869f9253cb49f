"""The guardrails judge what an AWS grant really gives, through the Dispatcher against the sandbox: an
Identity Center permission set by its resolved name and its content (never by what the job calls it), and an
EKS access entry's Kubernetes groups and username as well as its access policies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector.errors import ErrorCode
from connector.jobs.guardrails import DEFAULT, Guardrails
from tests.jit.conftest import admin, dispatcher, job, mutating_calls, ok, run

pytestmark = pytest.mark.timeout(120)


def _allow(**rules: Any) -> Guardrails:
    """A policy like the default one (12 h, no cluster-admin) plus `rules`."""
    return Guardrails(max_duration="12h", **rules)


def _refused(out: Any, rule: str) -> str:
    assert out.outcome == "failed" and out.error is not None, out.result
    assert out.error.code == ErrorCode.GUARDRAIL_DENIED and not out.error.retryable, out.error
    assert f"guardrail {rule!r}" in out.error.message, out.error.message
    return str(out.error.message)


# -- Identity Center -------------------------------------------------------------------------------------
def _statement(action: Any, key: str = "Action") -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", key: action, "Resource": "*"}]}


# name -> (AWS-managed policies attached, inline policy, customer-managed policy references)
SETS: dict[str, tuple[tuple[str, ...], dict[str, Any] | None, tuple[str, ...]]] = {
    "AdministratorAccess": (("AdministratorAccess",), None, ()),
    "ReadOnlyX": (("AdministratorAccess",), None, ()),  # a harmless name, AdministratorAccess inside
    "InlineStar": ((), _statement("*"), ()),
    "InlinePutRolePolicy": (("ReadOnlyAccess",), _statement(["s3:GetObject", "iam:PutRolePolicy"]), ()),
    "InlineLowerCase": ((), _statement("IAM:putrolepolicy"), ()),  # IAM action names are case-insensitive
    "InlinePassWildcard": ((), _statement("iam:Pass*"), ()),  # matches iam:PassRole
    "InlineStsAll": ((), _statement("sts:*"), ()),  # matches sts:AssumeRole
    "InlineNotAction": ((), _statement(["s3:*"], key="NotAction"), ()),
    "CustomerRef": (("ReadOnlyAccess",), None, ("TeamPolicy",)),
    "PowerUser": (("PowerUserAccess",), None, ()),  # an AWS-managed policy the connector does not know
    "ReadOnlyInline": (("ReadOnlyAccess",), _statement(["s3:Get*", "ec2:Describe*", "iam:List*"]), ()),
}
ADMIN_SETS = [n for n in SETS if n not in ("CustomerRef", "PowerUser", "ReadOnlyInline")]


@pytest.fixture(scope="module")
def sets(sandbox) -> dict[str, str]:
    """Permission sets made by hand in Identity Center: name -> ARN (the seed's ReadOnly included)."""
    ic = sandbox.seed_info.identity_center
    sso = admin(sandbox, "sso-admin", sandbox.seed_info.management_account_id, ic.region)
    where = {"InstanceArn": ic.instance_arn}
    arns = dict(ic.permission_sets)
    for name, (managed, inline, customer) in SETS.items():
        arn = sso.create_permission_set(Name=name, **where)["PermissionSet"]["PermissionSetArn"]
        for policy in managed:
            sso.attach_managed_policy_to_permission_set(
                PermissionSetArn=arn, ManagedPolicyArn=f"arn:aws:iam::aws:policy/{policy}", **where
            )
        if inline is not None:
            sso.put_inline_policy_to_permission_set(PermissionSetArn=arn, InlinePolicy=json.dumps(inline), **where)
        for ref in customer:
            sso.attach_customer_managed_policy_reference_to_permission_set(
                PermissionSetArn=arn, CustomerManagedPolicyReference={"Name": ref, "Path": "/"}, **where
            )
        arns[name] = arn
    return arns


def _ic_target(sb, permission_set: str) -> dict[str, Any]:
    return {
        "resource_type": "identity_center_assignment",
        "account_id": sb.seed_info.account("prod-0000").id,
        "permission_set": permission_set,
        "principal_type": "USER",
    }


def _user(sb, n: int = 0) -> str:
    return sb.seed_info.identity_center.users[f"user{n}@example.com"]


@pytest.mark.parametrize("name", ADMIN_SETS)
def test_admin_level_permission_set_given_by_arn_is_refused(sandbox, sets, name):
    """Judged on its content under its resolved name: even a policy that allows every set name refuses it,
    and so does the default policy."""
    sb = sandbox
    for policy in (DEFAULT, _allow(permission_sets=("*",))):
        sb.faults.reset_counts()
        out = run(dispatcher(sb, policy), job(sb, "grant", f"ps-{name}", _user(sb), _ic_target(sb, sets[name])))
        message = _refused(out, "allow_cluster_admin")
        assert name in message  # the set is named by its resolved name, not its ARN
        assert out.effect is not None and out.effect["permission_sets"] == [name]
        assert out.effect["level"] == "admin"
        assert mutating_calls(sb) == {}


def test_read_only_set_given_by_arn_is_allowed_under_its_name(sandbox, sets):
    """The permission_sets allow-list sees the set's name when the job gives its ARN."""
    sb = sandbox
    d = dispatcher(sb, _allow(permission_sets=("ReadOnly", "ReadOnlyInline")))
    for name in ("ReadOnly", "ReadOnlyInline"):
        target = _ic_target(sb, sets[name])
        result = ok(run(d, job(sb, "grant", f"ps-ok-{name}", _user(sb, 1), target)))
        assert result["effect"]["permission_sets"] == [name] and result["effect"]["level"] == "read"
        assert result["assignment_created"] is True
        ok(run(d, job(sb, "revoke", f"ps-ok-{name}", _user(sb, 1), target)))


def test_permission_sets_allow_list_refuses_a_set_given_by_arn(sandbox, sets):
    sb = sandbox
    d = dispatcher(sb, _allow(permission_sets=("ReadOnly*",)))
    sb.faults.reset_counts()
    out = run(d, job(sb, "grant", "ps-list", _user(sb), _ic_target(sb, sets["AdministratorAccess"])))
    assert "'AdministratorAccess' is not allowed" in _refused(out, "permission_sets")
    # ReadOnlyX passes the name rule but not the content rule.
    out = run(d, job(sb, "grant", "ps-list-x", _user(sb), _ic_target(sb, sets["ReadOnlyX"])))
    assert "AWS-managed AdministratorAccess" in _refused(out, "allow_cluster_admin")
    assert mutating_calls(sb) == {}


@pytest.mark.parametrize("name", ["CustomerRef", "PowerUser"])
def test_set_the_connector_cannot_judge_is_refused_unless_the_policy_names_it(sandbox, sets, name):
    """Customer-managed policies live in each account, and an AWS-managed policy the connector does not know
    could give anything: such a set counts as admin until the customer's permission_sets names it."""
    sb = sandbox
    target = _ic_target(sb, sets[name])
    out = run(dispatcher(sb, DEFAULT), job(sb, "grant", f"ps-unres-{name}", _user(sb, 2), target))
    assert f"{name!r} (permission_sets)" in _refused(out, "allow_cluster_admin")
    assert out.effect["unresolved"] == [f"permission_sets:{name}"]
    out = run(dispatcher(sb, _allow(permission_sets=("ReadOnly*",))), job(sb, "grant", "x", _user(sb, 2), target))
    _refused(out, "permission_sets")
    d = dispatcher(sb, _allow(permission_sets=(name,)))
    ok(run(d, job(sb, "grant", f"ps-unres-{name}", _user(sb, 2), target)))
    ok(run(d, job(sb, "revoke", f"ps-unres-{name}", _user(sb, 2), target)))


# -- EKS access entries ----------------------------------------------------------------------------------
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


def _principal(c, name: str) -> str:
    return f"arn:aws:iam::{c.account}:role/{name}"


def _entry(sb, c, principal: str) -> dict[str, Any] | None:
    eks = admin(sb, "eks", c.account, c.region)
    try:
        return dict(eks.describe_access_entry(clusterName=c.name, principalArn=principal)["accessEntry"])
    except eks.exceptions.ResourceNotFoundException:
        return None


def test_system_masters_is_admin_whatever_the_groups_rule(sandbox):
    sb, c = sandbox, _cluster(sandbox)
    target = _eks_target(c, kubernetes_groups=["system:masters"])
    for policy in (DEFAULT, _allow(kubernetes_groups=("*",), access_policies=("*",))):
        sb.faults.reset_counts()
        out = run(dispatcher(sb, policy), job(sb, "grant", "eks-masters", _principal(c, "m"), target))
        assert "system:masters bypasses RBAC" in _refused(out, "allow_cluster_admin")
        assert out.effect["kubernetes_groups"] == ["system:masters"] and out.effect["level"] == "admin"
        assert sb.faults.counts()["by_operation"] == {}  # judged before any AWS call


def test_kubernetes_group_is_refused_unless_the_policy_names_it(sandbox):
    sb, c = sandbox, _cluster(sandbox)
    principal = _principal(c, "eks-groups")
    target = _eks_target(c, kubernetes_groups=["ops"])
    sb.faults.reset_counts()
    out = run(dispatcher(sb, DEFAULT), job(sb, "grant", "eks-ops", principal, target))
    assert "'ops' (kubernetes_groups)" in _refused(out, "allow_cluster_admin")
    out = run(dispatcher(sb, _allow(kubernetes_groups=("dev-*",))), job(sb, "grant", "eks-ops", principal, target))
    _refused(out, "kubernetes_groups")
    assert sb.faults.counts()["by_operation"] == {}
    d = dispatcher(sb, _allow(kubernetes_groups=("ops",)))
    ok(run(d, job(sb, "grant", "eks-ops", principal, target)))
    assert _entry(sb, c, principal)["kubernetesGroups"] == ["ops"]
    ok(run(d, job(sb, "revoke", "eks-ops", principal, target)))
    assert _entry(sb, c, principal) is None


def test_username_other_than_the_default_is_refused_unless_the_policy_names_it(sandbox):
    sb, c = sandbox, _cluster(sandbox)
    principal = _principal(c, "eks-username")
    target = _eks_target(c, username="alice")
    out = run(dispatcher(sb, DEFAULT), job(sb, "grant", "eks-user", principal, target))
    assert "'alice' (kubernetes_usernames)" in _refused(out, "allow_cluster_admin")
    d = dispatcher(sb, _allow(kubernetes_usernames=("alice",)))
    ok(run(d, job(sb, "grant", "eks-user", principal, target)))
    assert _entry(sb, c, principal)["username"] == "alice"
    ok(run(d, job(sb, "revoke", "eks-user", principal, target)))
    # The default username needs no naming.
    ok(run(dispatcher(sb, DEFAULT), job(sb, "grant", "eks-user-default", principal, _eks_target(c))))
    ok(run(dispatcher(sb, DEFAULT), job(sb, "revoke", "eks-user-default", principal, _eks_target(c))))


@pytest.mark.parametrize(
    ("field", "value"),
    [("username", "system:node:x"), ("username", "eks:bootstrap"), ("kubernetes_groups", ["system:nodes"])],
)
def test_reserved_identities_are_refused_by_every_policy(sandbox, field, value):
    sb, c = sandbox, _cluster(sandbox)
    loose = Guardrails(
        max_duration=None, allow_cluster_admin=True, kubernetes_usernames=("*",), kubernetes_groups=("*",)
    )
    sb.faults.reset_counts()
    for policy in (DEFAULT, loose):
        out = run(
            dispatcher(sb, policy),
            job(sb, "grant", "eks-reserved", _principal(c, "r"), _eks_target(c, **{field: value})),
        )
        _refused(out, "reserved")
    assert sb.faults.counts()["by_operation"] == {}


def test_unknown_access_policy_counts_as_admin(sandbox):
    sb, c = sandbox, _cluster(sandbox)
    target = _eks_target(c, access_policies=["AmazonEKSViewPolicy", "AmazonEKSMysteryPolicy"])
    for policy in (DEFAULT, _allow(access_policies=("*",))):
        out = run(dispatcher(sb, policy), job(sb, "grant", "eks-mystery", _principal(c, "u"), target))
        assert "AmazonEKSMysteryPolicy is not one the connector knows" in _refused(out, "allow_cluster_admin")
        assert out.effect["level"] == "admin"


def test_grants_on_one_entry_share_its_kubernetes_identity(sandbox):
    """Groups belong to the entry, not to a grant: a second grant that does not ask for the first one's
    groups would hold them for its own lifetime, unjudged. It is refused, with no change."""
    sb, c = sandbox, _cluster(sandbox)
    principal = _principal(c, "eks-shared-identity")
    d = dispatcher(sb, _allow(kubernetes_groups=("ops",)))
    with_ops = _eks_target(c, kubernetes_groups=["ops"])
    ok(run(d, job(sb, "grant", "eks-id-a", principal, with_ops)))
    sb.faults.reset_counts()
    out = run(d, job(sb, "grant", "eks-id-b", principal, _eks_target(c, namespaces=["team-b"])))
    assert out.error is not None and out.error.code == ErrorCode.CONFLICT and not out.error.retryable, out.error
    assert "share its identity" in out.error.message
    assert mutating_calls(sb) == {}
    ok(run(d, job(sb, "grant", "eks-id-b", principal, with_ops | {"namespaces": ["team-b"]})))  # same groups: fine
    ok(run(d, job(sb, "revoke", "eks-id-a", principal, with_ops)))
    ok(run(d, job(sb, "revoke", "eks-id-b", principal, with_ops)))
    assert _entry(sb, c, principal) is None
    # Once no grant lives there, a grant may ask for another identity: the entry is made (or set) afresh.
    ok(run(d, job(sb, "grant", "eks-id-c", principal, _eks_target(c))))
    assert _entry(sb, c, principal)["kubernetesGroups"] == []
    ok(run(d, job(sb, "revoke", "eks-id-c", principal, _eks_target(c))))


def test_record_too_long_for_a_tag_is_refused_before_any_call(sandbox):
    sb, c = sandbox, _cluster(sandbox)
    target = _eks_target(c, namespaces=[f"team-{i:03d}" for i in range(40)])
    sb.faults.reset_counts()
    out = run(dispatcher(sb, DEFAULT), job(sb, "grant", "eks-long", _principal(c, "l"), target))
    assert out.error is not None and out.error.code == ErrorCode.INVALID_JOB and "split it" in out.error.message
    assert sb.faults.counts()["by_operation"] == {}


def test_a_set_made_again_under_the_same_name_is_judged_afresh(sandbox):
    """Names are resolved once per integration and cached; a set deleted and made again under its name (now
    holding something else) is found and judged anew, not refused for ever as missing."""
    sb = sandbox
    ic = sb.seed_info.identity_center
    sso = admin(sb, "sso-admin", sb.seed_info.management_account_id, ic.region)
    where = {"InstanceArn": ic.instance_arn}
    first = sso.create_permission_set(Name="Rotating", **where)["PermissionSet"]["PermissionSetArn"]
    sso.attach_managed_policy_to_permission_set(
        PermissionSetArn=first, ManagedPolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess", **where
    )
    d = dispatcher(sb, DEFAULT)
    target = _ic_target(sb, "Rotating")
    ok(run(d, job(sb, "grant", "rot-1", _user(sb), target)))
    ok(run(d, job(sb, "revoke", "rot-1", _user(sb), target)))
    sso.delete_permission_set(PermissionSetArn=first, **where)
    second = sso.create_permission_set(Name="Rotating", **where)["PermissionSet"]["PermissionSetArn"]
    sso.attach_managed_policy_to_permission_set(
        PermissionSetArn=second, ManagedPolicyArn="arn:aws:iam::aws:policy/AdministratorAccess", **where
    )
    # A revoke by the name finds the new set (which holds no record of the old grant): nothing to do.
    assert ok(run(d, job(sb, "revoke", "rot-1", _user(sb), target)))["already_revoked"] is True
    out = run(d, job(sb, "grant", "rot-2", _user(sb), target))
    assert "AWS-managed AdministratorAccess" in _refused(out, "allow_cluster_admin")
    assert out.effect["permission_sets"] == ["Rotating"]
