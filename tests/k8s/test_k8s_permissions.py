"""The connector's RBAC is enough for everything it does, and nothing else: the fake enforces exactly it."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
from fake_apiserver import FakeApiServer
from k8s_helpers import (
    REGISTRY,
    RecordingContext,
    cluster_role,
    expired,
    grant,
    grant_request,
    kind_of,
    namespace,
    revoke,
    revoke_request,
    services,
)

from connector.errors import ConnectorError, ErrorCode
from connector.integrations.aws_auth import AwsAuthIntegration
from connector.integrations.base import SyncRequest
from connector.integrations.kubernetes import KubernetesIntegration
from connector.k8s.permissions import aws_auth_role, connector_cluster_role, rbac_reader_rules

pytestmark = pytest.mark.timeout(120)

TARGET = {"scope": "namespace", "namespaces": ["dev"], "role": "view"}


def test_the_rules_are_valid_and_least_privilege() -> None:
    role = connector_cluster_role("access-connector", ["view"])
    kubernetes_validate.validate(role, "1.33", strict=True)
    kubernetes_validate.validate(aws_auth_role("access-connector-aws-auth"), "1.33", strict=True)
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert not {"update", "patch", "escalate", "impersonate"} & set(rule["verbs"])
        assert "secrets" not in rule["resources"]
    (bind,) = [r for r in role["rules"] if "bind" in r["verbs"]]
    assert bind["resourceNames"] == ["view"] and bind["verbs"] == ["bind"]
    # the kubernetes ClusterRole already holds every read that judging a grant needs
    for reader in rbac_reader_rules():
        assert not {"*", "create", "update", "delete"} & set(reader["verbs"])
        for resource in reader["resources"]:
            assert any(
                resource in r["resources"] and set(reader["verbs"]) <= set(r["verbs"]) and "resourceNames" not in r
                for r in role["rules"]
            ), resource


def test_sync_grant_revoke_work_with_exactly_these_rules() -> None:
    with FakeApiServer() as api:
        api.seed(namespace("dev"))
        api.seed(cluster_role("view"))
        api.seed(cluster_role("cluster-admin"))
        api.rbac_rules = connector_cluster_role("access-connector", ["view"])["rules"]
        k8s = KubernetesIntegration("i", {"connection": "host", "host": api.url}, services())
        syncer, kind = REGISTRY.syncer(k8s), kind_of(k8s)
        assert syncer is not None
        syncer.sync(SyncRequest(), RecordingContext())
        for scope in (TARGET, {"scope": "cluster", "role": "view"}):
            grant_id = "g-" + scope["scope"]
            grant(kind, grant_request(grant_id, "alice", scope))
            grant(kind, grant_request(grant_id, "alice", scope))
            assert expired(kind) == []  # the expiry loop's scan needs nothing more either
            revoke(kind, revoke_request(grant_id, "alice", scope))
        assert api.names("rolebindings") == [] and api.names("clusterrolebindings") == []
        assert not [r for r in api.rejections if r["code"] == 403]
        # a role outside the grantable list: the API server's escalation check refuses, we say why
        with pytest.raises(ConnectorError) as info:
            grant(kind, grant_request("g-admin", "alice", {**TARGET, "role": "cluster-admin"}))
        assert info.value.code == ErrorCode.ACCESS_DENIED and "cannot bind ClusterRole" in info.value.message
        assert "ServiceAccount RBAC" in info.value.message
        assert api.names("rolebindings") == []


def test_aws_auth_works_with_its_role_only() -> None:
    with FakeApiServer() as api:
        api.seed(namespace("kube-system"))
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "aws-auth", "namespace": "kube-system"},
            "data": {"mapRoles": "- rolearn: arn:aws:iam::111122223333:role/nodes\n  username: n\n"},
        }
        api.seed(copy.deepcopy(cm))
        # the aws-auth Role, and the RBAC reads that let describe judge the groups by their bindings
        api.rbac_rules = aws_auth_role("access-connector-aws-auth")["rules"] + rbac_reader_rules()
        kind = kind_of(AwsAuthIntegration("i", {"connection": "host", "host": api.url}, services()))
        role = "arn:aws:iam::111122223333:role/team"
        grant(kind, grant_request("g", role, {"groups": ["readers"]}))
        assert expired(kind) == []
        revoke(kind, revoke_request("g", role))
        assert not [r for r in api.rejections if r["code"] == 403]
        stored = api.get("configmaps", "aws-auth", "kube-system")
        assert stored is not None and stored["data"] == cm["data"]
        # without the RBAC reads, describe cannot judge the groups: refused, nothing written
        api.rbac_rules = aws_auth_role("access-connector-aws-auth")["rules"]
        with pytest.raises(ConnectorError) as info:
            grant(kind, grant_request("g2", role, {"groups": ["readers"]}))
        assert info.value.code == ErrorCode.ACCESS_DENIED
        assert api.get("configmaps", "aws-auth", "kube-system") == stored
