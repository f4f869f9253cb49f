from datetime import UTC, datetime, timedelta

import pytest

from connector.errors import GuardrailDenied
from connector.jobs.guardrails import GuardrailError, load_guardrails

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
EKS = {
    "resource_type": "eks_cluster",
    "account_id": "111122223333",
    "region": "eu-west-1",
    "cluster": "prod-main",
    "access_policies": ["arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"],
    "scope": "namespace",
    "namespaces": ["team-a"],
}


@pytest.fixture
def policy(tmp_path):
    path = tmp_path / "guardrails.yaml"
    path.write_text(
        "version: 1\nmax_duration: 8h\naccounts: ['1111*']\nclusters: ['prod-*']\n"
        "access_policies: [AmazonEKSViewPolicy, AmazonEKSEditPolicy, AmazonEKSClusterAdminPolicy]\n"
        "namespaces: ['team-*']\norganizational_units: ['ou-ab12-*']\n"
    )
    return load_guardrails(path)


def ous(_):
    return ["ou-ab12-prod0001"]


def test_allowed_grant_passes(policy):
    policy.check_grant(EKS, NOW + timedelta(hours=1), NOW, ous)


@pytest.mark.parametrize(
    ("change", "expires", "rule"),
    [
        ({}, None, "max_duration"),
        ({}, NOW + timedelta(hours=9), "max_duration"),
        ({"account_id": "999999999999"}, NOW + timedelta(hours=1), "accounts"),
        ({"cluster": "dev-x"}, NOW + timedelta(hours=1), "clusters"),
        ({"namespaces": ["kube-system"]}, NOW + timedelta(hours=1), "namespaces"),
        ({"access_policies": ["AmazonEKSAdminViewPolicy"]}, NOW + timedelta(hours=1), "access_policies"),
        ({"access_policies": ["AmazonEKSClusterAdminPolicy"]}, NOW + timedelta(hours=1), "allow_cluster_admin"),
        ({"scope": "cluster", "namespaces": []}, NOW + timedelta(hours=1), "namespaces"),
    ],
)
def test_refusals_name_the_rule(policy, change, expires, rule):
    with pytest.raises(GuardrailDenied) as err:
        policy.check_grant(EKS | change, expires, NOW, ous)
    assert err.value.rule == rule
    assert not err.value.retryable


def test_ou_rule_needs_the_account_under_an_allowed_ou(policy):
    with pytest.raises(GuardrailDenied, match="organizational unit"):
        policy.check_grant(EKS, NOW + timedelta(hours=1), NOW, lambda _: ["ou-zz99-other000"])


def test_cluster_admin_allowed_only_explicitly(tmp_path):
    path = tmp_path / "g.json"
    path.write_text('{"allow_cluster_admin": true}')
    load_guardrails(path).check_grant(EKS | {"access_policies": ["AmazonEKSClusterAdminPolicy"]}, None, NOW)
    path.write_text("{}")
    with pytest.raises(GuardrailDenied):
        load_guardrails(path).check_grant({"role": "cluster-admin"}, None, NOW)


@pytest.mark.parametrize(
    "text", ["max_duration: forever\n", "acounts: ['1']\n", "- a\n- b\n", "version: 2\n", "accounts: [unclosed\n"]
)
def test_bad_files_fail_at_start_up(tmp_path, text):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    with pytest.raises(GuardrailError, match="CONNECTOR_GUARDRAILS_FILE"):
        load_guardrails(path)
