"""What an RBAC grant really gives, judged from the role's rules read from the cluster (never from its name),
and the guardrails' verdict on it: the real client against the fake API server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_apiserver import FakeApiServer
from k8s_helpers import (
    ADMIN_ALLOWED,
    EDIT_RULES,
    STAR_RULES,
    VIEW_RULES,
    RecordingContext,
    cluster_role,
    describe,
    grant,
    grant_request,
    kind_of,
    namespace,
    role,
    services,
)

from connector.errors import ConnectorError, ErrorCode, GuardrailDenied
from connector.integrations.effect import IN_CLUSTER, ClusterRef, Level
from connector.integrations.kubernetes import KubernetesIntegration
from connector.jobs.guardrails import Guardrails
from connector.k8s import names
from connector.k8s.client import KubeApi, token_client

pytestmark = pytest.mark.timeout(120)

AGGREGATE = "example.com/aggregate-to-support"


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        for ns in ("dev", "stage"):
            server.seed(namespace(ns))
        yield server


def rbac(server: FakeApiServer) -> Any:
    return kind_of(KubernetesIntegration("k8s-int", {"connection": "host", "host": server.url}, services()))


def cluster_target(role_name: str, **extra: Any) -> dict[str, Any]:
    return {"scope": "cluster", "role_kind": "ClusterRole", "role": role_name, **extra}


def ns_target(role_name: str, role_kind: str = "ClusterRole") -> dict[str, Any]:
    return {"scope": "namespace", "namespaces": ["dev"], "role_kind": role_kind, "role": role_name}


def level_of(server: FakeApiServer, target: dict[str, Any]) -> Level:
    return describe(rbac(server), grant_request("g-level", "alice", target)).level


def test_a_role_with_star_on_star_under_a_harmless_name_is_admin_and_refused_by_default(api: FakeApiServer) -> None:
    api.seed(cluster_role("view-ish", rules=STAR_RULES))
    kind = rbac(api)
    request = grant_request("g-viewish", "alice", cluster_target("view-ish"))
    effect = describe(kind, request)
    assert effect.level is Level.ADMIN
    assert effect.kubernetes_roles == ("view-ish",) and effect.scope == "cluster"
    assert any("ClusterRole view-ish allows `*` verbs on `*` resources" in r for r in effect.reasons)
    with pytest.raises(GuardrailDenied) as info:
        grant(kind, request)  # the default policy: no guardrail file
    assert info.value.rule == "allow_cluster_admin" and "view-ish" in info.value.message
    assert api.writes() == []
    # in namespaces too: cluster-admin level within its scope
    with pytest.raises(GuardrailDenied):
        grant(kind, grant_request("g-viewish-ns", "alice", ns_target("view-ish")))
    assert api.writes() == []
    # the customer's guardrail file may allow it
    result = grant(kind, request, ADMIN_ALLOWED)
    assert result["bindings"][0]["created"] is True
    assert api.names("clusterrolebindings") == [("", names.binding_name("g-viewish"))]


def test_an_aggregated_cluster_role_counts_with_the_rules_of_its_members(api: FakeApiServer) -> None:
    """The aggregated role holds no rules of its own here (the fake runs no aggregation controller): its
    members' rules decide."""
    api.seed(cluster_role("support", rules=[], selectors=[{"matchLabels": {AGGREGATE: "true"}}]))
    api.seed(cluster_role("support-view", {AGGREGATE: "true"}, rules=VIEW_RULES))
    assert level_of(api, cluster_target("support")) is Level.READ
    api.seed(
        cluster_role(
            "support-binder",
            {AGGREGATE: "true"},
            rules=[{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"]}],
        )
    )
    effect = describe(rbac(api), grant_request("g-agg", "alice", cluster_target("support")))
    assert effect.level is Level.ADMIN and any("bind verb" in r for r in effect.reasons)
    with pytest.raises(GuardrailDenied) as info:
        grant(rbac(api), grant_request("g-agg", "alice", cluster_target("support")))
    assert info.value.rule == "allow_cluster_admin"
    assert api.writes() == []


def test_an_escalate_member_reached_through_a_nested_aggregation_is_admin(api: FakeApiServer) -> None:
    api.seed(cluster_role("outer", rules=[], selectors=[{"matchLabels": {"tier": "inner"}}]))
    api.seed(cluster_role("inner", {"tier": "inner"}, rules=[], selectors=[{"matchLabels": {"tier": "leaf"}}]))
    assert level_of(api, cluster_target("outer")) is Level.READ  # no rules yet: a binding is still access
    api.seed(
        cluster_role(
            "leaf",
            {"tier": "leaf"},
            rules=[{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}],
        )
    )
    assert level_of(api, cluster_target("outer")) is Level.ADMIN


@pytest.mark.parametrize(
    "selector",
    [
        {},  # an empty selector matches every ClusterRole (cluster-admin included)
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold", "platinum"]}]},
        {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
        {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]},
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["bronze"]}]},
    ],
)
def test_aggregation_selectors_match_as_the_controller_matches(api: FakeApiServer, selector: dict[str, Any]) -> None:
    api.seed(cluster_role("cluster-admin-ish", {"tier": "gold"}, rules=STAR_RULES))
    api.seed(cluster_role("picky", rules=[], selectors=[selector]))
    assert level_of(api, cluster_target("picky")) is Level.ADMIN


def test_a_selector_that_matches_nothing_adds_nothing(api: FakeApiServer) -> None:
    api.seed(cluster_role("cluster-admin-ish", {"tier": "gold"}, rules=STAR_RULES))
    api.seed(
        cluster_role(
            "picky",
            rules=VIEW_RULES,
            selectors=[
                {"matchLabels": {"tier": "gold"}, "matchExpressions": [{"key": "team", "operator": "Exists"}]},
                {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]},
            ],
        )
    )
    assert level_of(api, cluster_target("picky")) is Level.READ


@pytest.mark.parametrize(
    ("rules", "level"),
    [
        (VIEW_RULES, Level.READ),
        (EDIT_RULES, Level.WRITE),
        ([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}], Level.WRITE),
        ([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}], Level.WRITE),
        ([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"]}], Level.WRITE),  # secrets included
        ([{"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]}], Level.ADMIN),
        ([{"apiGroups": [""], "resources": ["users"], "verbs": ["*"]}], Level.ADMIN),  # `*` includes impersonate
        ([{"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "verbs": ["*"]}], Level.ADMIN),
        ([{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["*"]}], Level.WRITE),
        (
            [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["create"]}],
            Level.ADMIN,
        ),
        ([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["create"]}], Level.ADMIN),
        (
            [{"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews"], "verbs": ["create"]}],
            Level.READ,
        ),
        ([{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}], Level.READ),  # at least read: a binding is access
        ([], Level.READ),
    ],
)
def test_levels_come_from_the_rules(api: FakeApiServer, rules: list[dict[str, Any]], level: Level) -> None:
    api.seed(cluster_role("custom", rules=rules))
    assert level_of(api, cluster_target("custom")) is level
    api.seed(role("dev", "custom", rules=rules))
    assert level_of(api, ns_target("custom", role_kind="Role")) is level


def test_edit_is_allowed_by_default_and_a_namespaced_star_role_is_not(api: FakeApiServer) -> None:
    api.seed(cluster_role("edit", rules=EDIT_RULES))
    api.seed(role("dev", "everything", rules=STAR_RULES))
    kind = rbac(api)
    assert grant(kind, grant_request("g-edit", "alice", ns_target("edit")))["bindings"][0]["created"] is True
    with pytest.raises(GuardrailDenied):
        grant(kind, grant_request("g-star", "alice", ns_target("everything", role_kind="Role")))
    assert api.get("rolebindings", names.binding_name("g-star"), "dev") is None


def test_kubernetes_roles_rule_judges_the_role_bound(api: FakeApiServer) -> None:
    api.seed(cluster_role("view", rules=VIEW_RULES))
    api.seed(cluster_role("edit", rules=EDIT_RULES))
    policy = Guardrails(max_duration="12h", kubernetes_roles=("view",), namespaces=("dev",))
    kind = rbac(api)
    grant(kind, grant_request("g-view", "alice", ns_target("view")), policy)
    with pytest.raises(GuardrailDenied) as info:
        grant(kind, grant_request("g-edit", "alice", ns_target("edit")), policy)
    assert info.value.rule == "kubernetes_roles"
    with pytest.raises(GuardrailDenied) as info:
        grant(kind, grant_request("g-wide", "alice", cluster_target("view")), policy)
    assert info.value.rule == "namespaces"


def test_a_decoy_cluster_in_the_target_is_refused_and_creates_nothing(api: FakeApiServer) -> None:
    api.seed(cluster_role("view", rules=VIEW_RULES))
    api.seed(cluster_role("everything", rules=STAR_RULES))
    kind = rbac(api)
    policy = Guardrails(max_duration="12h", clusters=("sandbox-*",), allow_cluster_admin=True)
    for decoy in ({"cluster": "sandbox-1"}, {"cluster_name": "sandbox-1"}, {"account_id": "111122223333"}):
        with pytest.raises(ConnectorError) as info:
            grant(kind, grant_request("g-decoy", "alice", cluster_target("everything", **decoy)), policy)
        assert info.value.code == ErrorCode.INVALID_JOB and next(iter(decoy)) in info.value.message
    # the cluster judged is the one the connection reaches: this host is not a sandbox-* cluster
    with pytest.raises(GuardrailDenied) as denied:
        grant(kind, grant_request("g-real", "alice", cluster_target("everything")), policy)
    assert denied.value.rule == "clusters" and api.url in denied.value.message
    assert api.writes() == []
    allowed = Guardrails(max_duration="12h", clusters=(api.url,))
    grant(kind, grant_request("g-real", "alice", cluster_target("view")), allowed)
    assert api.names("clusterrolebindings") == [("", names.binding_name("g-real"))]


def test_the_effect_names_the_cluster_the_connection_reaches(api: FakeApiServer) -> None:
    api.seed(cluster_role("view", rules=VIEW_RULES))
    host = KubernetesIntegration("h", {"connection": "host", "host": api.url}, services())
    effect = describe(kind_of(host), grant_request("g", "alice", cluster_target("view")))
    assert effect.cluster == ClusterRef(api.url) and effect.account_id == ""
    # in_cluster: the client is the pod's (here pointed at the fake); the Effect names the connector's cluster
    in_cluster = KubernetesIntegration("ic", {}, services())
    in_cluster.connection._api = KubeApi(token_client(api.url, None, None))
    effect = describe(kind_of(in_cluster), grant_request("g", "alice", cluster_target("view")))
    assert effect.cluster == ClusterRef(IN_CLUSTER)
    assert effect.summary()["cluster"] == "//in-cluster"
    # (connection eks: tests/k8s/test_k8s_eks_sandbox.py, against DescribeCluster)


def test_a_missing_role_is_not_found_before_anything_is_written(api: FakeApiServer) -> None:
    api.seed(role("dev", "reader"))
    kind = rbac(api)
    target = {"scope": "namespace", "namespaces": ["dev", "stage"], "role_kind": "Role", "role": "reader"}
    with pytest.raises(ConnectorError) as info:
        describe(kind, grant_request("g-missing", "alice", target), RecordingContext())
    assert info.value.code == ErrorCode.NOT_FOUND and "['stage']" in info.value.message
    assert api.writes() == []
