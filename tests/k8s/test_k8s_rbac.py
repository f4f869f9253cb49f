"""Kubernetes RBAC grant / revoke / sync against the schema-validating fake API server (real client, real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fake_apiserver import FakeApiServer
from k8s_helpers import RecordingContext, cluster_role, namespace, role, role_binding, services
from kubernetes.client.exceptions import ApiException

from connector.errors import ConnectorError, ErrorCode, InvalidJob, InvalidSettings
from connector.integrations.base import GrantRequest, RevokeRequest, SyncRequest
from connector.integrations.kubernetes import KubernetesIntegration
from connector.k8s import names
from connector.k8s.client import KubeApi, token_client

pytestmark = pytest.mark.timeout(120)

NS_TARGET = {"scope": "namespace", "namespaces": ["dev", "stage"], "role_kind": "ClusterRole", "role": "view"}
CLUSTER_TARGET = {"scope": "cluster", "role_kind": "ClusterRole", "role": "view", "subject_kind": "Group"}


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        for ns in ("dev", "stage", "prod"):
            server.seed(namespace(ns))
        server.seed(cluster_role("view", {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}))
        server.seed(cluster_role("edit", aggregate=True))
        server.seed(role("dev", "config-reader"))
        yield server


def integration(server: FakeApiServer, **settings: Any) -> KubernetesIntegration:
    return KubernetesIntegration("k8s-int", {"connection": "host", "host": server.url, **settings}, services())


def grant(grant_id: str, target: dict[str, Any], principal: str = "alice@example.com", **kw: Any) -> GrantRequest:
    return GrantRequest(
        grant_id=grant_id,
        principal=principal,
        target=target,
        expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        **kw,
    )


def revoke(grant_id: str, target: dict[str, Any], principal: str = "alice@example.com", **kw: Any) -> RevokeRequest:
    return RevokeRequest(grant_id=grant_id, principal=principal, target=target, **kw)


def test_the_fake_rejects_an_invalid_body_with_422() -> None:
    """Proof that a malformed object would fail a test: the fake answers 422 like an API server."""
    with FakeApiServer() as server:
        server.seed(namespace("dev"))
        kube = KubeApi(token_client(server.url, None, None))
        bad_field = role_binding("dev", "rb", "view", "alice")
        bad_field["roleRef"]["nmae"] = "typo"  # unknown field: strict schema
        bad_label = role_binding("dev", "rb2", "view", "alice", labels={"grant": "has spaces and /"})
        missing = role_binding("dev", "rb3", "view", "alice")
        del missing["roleRef"]
        for body in (bad_field, bad_label, missing):
            with pytest.raises(ApiException) as info:
                kube.rbac.create_namespaced_role_binding("dev", body)
            assert info.value.status == 422
        assert [r["reason"] for r in server.rejections] == ["Invalid"] * 3
        assert "nmae" in server.rejections[0]["message"]
        assert server.names("rolebindings") == []
        # and a valid one is accepted
        kube.rbac.create_namespaced_role_binding("dev", role_binding("dev", "ok", "view", "alice"))
        assert server.names("rolebindings") == [("dev", "ok")]


def test_namespace_grant_creates_labelled_bindings_then_is_idempotent(api: FakeApiServer) -> None:
    k8s = integration(api)
    result = k8s.grant(grant("grant-1", NS_TARGET), RecordingContext())
    name = names.binding_name("grant-1")
    assert name == "ac-grant-grant-1"
    assert [(b["namespace"], b["name"], b["created"]) for b in result["bindings"]] == [
        ("dev", name, True),
        ("stage", name, True),
    ]
    assert api.names("rolebindings") == [("dev", name), ("stage", name)]
    obj = api.get("rolebindings", name, "dev")
    assert obj is not None
    assert obj["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "access-connector",
        "access-connector/grant-id": "grant-1",
    }
    assert obj["metadata"]["annotations"]["access-connector/expires-at"] == "2030-01-02T03:04:05+00:00"
    assert obj["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
    assert obj["subjects"] == [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice@example.com"}]
    assert api.get("rolebindings", name, "prod") is None

    uids = {b["namespace"]: b["uid"] for b in result["bindings"]}
    again = k8s.grant(grant("grant-1", NS_TARGET), RecordingContext())
    assert [(b["namespace"], b["created"], b["uid"]) for b in again["bindings"]] == [
        ("dev", False, uids["dev"]),
        ("stage", False, uids["stage"]),
    ]
    assert api.names("rolebindings") == [("dev", name), ("stage", name)]
    assert api.rejections[-1]["reason"] == "AlreadyExists"


def test_cluster_grant_and_revoke(api: FakeApiServer) -> None:
    k8s = integration(api)
    result = k8s.grant(grant("G-2", CLUSTER_TARGET, principal="oncall"), RecordingContext())
    (binding,) = result["bindings"]
    assert binding["kind"] == "ClusterRoleBinding"
    obj = api.get("clusterrolebindings", binding["name"])
    assert obj is not None and obj["subjects"][0] == {
        "kind": "Group",
        "apiGroup": "rbac.authorization.k8s.io",
        "name": "oncall",
    }
    # "G-2" is not DNS-safe as is: the name is sanitised and carries a hash of the original id.
    assert binding["name"].startswith("ac-grant-g-2-") and names.is_dns_label(binding["name"])

    out = k8s.revoke(revoke("G-2", CLUSTER_TARGET, principal="oncall"), RecordingContext())
    assert out["deleted"] == [{"kind": "ClusterRoleBinding", "namespace": "", "name": binding["name"]}]
    assert api.names("clusterrolebindings") == []
    again = k8s.revoke(revoke("G-2", CLUSTER_TARGET, principal="oncall"), RecordingContext())
    assert again["already_revoked"] is True and again["deleted"] == []


def test_revoke_deletes_exactly_the_grants_bindings(api: FakeApiServer) -> None:
    k8s = integration(api)
    k8s.grant(grant("grant-a", NS_TARGET), RecordingContext())
    k8s.grant(grant("grant-b", {**NS_TARGET, "namespaces": ["dev"]}), RecordingContext())
    # someone else's binding, and one that copies our labels but not our annotation
    api.seed(role_binding("dev", "team-binding", "edit", "bob"))
    api.seed(
        role_binding(
            "stage",
            "copycat",
            "edit",
            "mallory",
            labels=names.grant_labels("grant-a"),
        )
    )
    before = set(api.names("rolebindings"))
    out = k8s.revoke(revoke("grant-a", NS_TARGET), RecordingContext())
    assert sorted((d["namespace"], d["name"]) for d in out["deleted"]) == [
        ("dev", "ac-grant-grant-a"),
        ("stage", "ac-grant-grant-a"),
    ]
    assert set(api.names("rolebindings")) == before - {("dev", "ac-grant-grant-a"), ("stage", "ac-grant-grant-a")}
    assert ("dev", "ac-grant-grant-b") in api.names("rolebindings")
    # duplicate revoke: success, nothing deleted
    writes = len(api.writes())
    assert k8s.revoke(revoke("grant-a", NS_TARGET), RecordingContext())["already_revoked"] is True
    assert len(api.writes()) == writes


def test_foreign_binding_with_our_name_is_a_conflict_and_untouched(api: FakeApiServer) -> None:
    foreign = api.seed(role_binding("stage", names.binding_name("grant-x"), "edit", "bob"))
    k8s = integration(api)
    with pytest.raises(ConnectorError) as info:
        k8s.grant(grant("grant-x", NS_TARGET), RecordingContext())
    assert info.value.code == ErrorCode.CONFLICT and info.value.retryable is False
    assert "stage/ac-grant-grant-x" in info.value.message and "not created by the connector" in info.value.message
    assert api.get("rolebindings", "ac-grant-grant-x", "stage") == foreign  # never overwritten
    # the binding made in "dev" before the conflict was rolled back: no access left behind
    assert api.get("rolebindings", "ac-grant-grant-x", "dev") is None
    # revoke leaves the foreign object alone
    k8s.revoke(revoke("grant-x", NS_TARGET), RecordingContext())
    assert api.get("rolebindings", "ac-grant-grant-x", "stage") == foreign


def test_same_grant_id_with_a_different_role_is_refused(api: FakeApiServer) -> None:
    k8s = integration(api)
    k8s.grant(grant("grant-r", NS_TARGET), RecordingContext())
    with pytest.raises(ConnectorError) as info:
        k8s.grant(grant("grant-r", {**NS_TARGET, "role": "edit"}), RecordingContext())
    assert info.value.code == ErrorCode.CONFLICT and "different role or subject" in info.value.message


def test_missing_namespace_and_missing_role_are_clear_errors(api: FakeApiServer) -> None:
    k8s = integration(api)
    with pytest.raises(ConnectorError) as info:
        k8s.grant(grant("g-ns", {**NS_TARGET, "namespaces": ["dev", "nope"]}), RecordingContext())
    assert info.value.code == ErrorCode.NOT_FOUND and "namespace 'nope' does not exist" in info.value.message
    assert api.names("rolebindings") == []  # dev's binding rolled back
    with pytest.raises(ConnectorError) as info:
        k8s.grant(grant("g-role", {**NS_TARGET, "role": "no-such-role"}), RecordingContext())
    assert info.value.code == ErrorCode.NOT_FOUND and "ClusterRole 'no-such-role' does not exist" in info.value.message
    # a namespaced Role
    ok = k8s.grant(
        grant("g-role2", {"scope": "namespace", "namespaces": ["dev"], "role_kind": "Role", "role": "config-reader"}),
        RecordingContext(),
    )
    assert ok["bindings"][0]["created"] is True
    with pytest.raises(ConnectorError) as info:
        k8s.grant(
            grant(
                "g-role3", {"scope": "namespace", "namespaces": ["stage"], "role_kind": "Role", "role": "config-reader"}
            ),
            RecordingContext(),
        )
    assert info.value.code == ErrorCode.NOT_FOUND


def test_dry_run_makes_no_write_and_lists_the_exact_calls(api: FakeApiServer) -> None:
    k8s = integration(api)
    before = len(api.requests)
    out = k8s.grant(grant("grant-d", NS_TARGET, dry_run=True), RecordingContext())
    assert len(api.requests) == before  # not even a read
    assert [c["path"] for c in out["calls"]] == [
        "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/stage/rolebindings",
    ]
    # the planned bodies are exactly what a real grant sends (the fake validates them)
    k8s.grant(grant("grant-d", NS_TARGET), RecordingContext())
    stored = api.get("rolebindings", "ac-grant-grant-d", "dev")
    assert stored is not None
    assert {k: stored[k] for k in ("roleRef", "subjects")} == {
        k: out["calls"][0]["body"][k] for k in ("roleRef", "subjects")
    }
    writes = len(api.writes())
    planned = k8s.revoke(revoke("grant-d", NS_TARGET, dry_run=True), RecordingContext())
    assert len(api.writes()) == writes
    assert [c["method"] for c in planned["calls"]] == ["DELETE", "DELETE"]
    assert api.names("rolebindings") == [("dev", "ac-grant-grant-d"), ("stage", "ac-grant-grant-d")]


@pytest.mark.parametrize(
    ("target", "principal", "fragment"),
    [
        ({"scope": "everywhere", "role": "view"}, "alice", "target.scope"),
        ({"scope": "namespace", "role": "view"}, "alice", "namespaces is required"),
        ({"scope": "namespace", "namespaces": ["Bad_NS"], "role": "view"}, "alice", "not a valid namespace"),
        ({"scope": "cluster", "role_kind": "Role", "role": "view"}, "alice", "needs role_kind 'ClusterRole'"),
        ({"scope": "cluster", "role": ""}, "alice", "target.role"),
        ({"scope": "cluster", "role": "view", "subject_kind": "ServiceAccount"}, "alice", "subject_kind"),
        ({"scope": "cluster", "role": "view", "subject_kind": "Group"}, "system:authenticated", "reserved"),
        ({"scope": "namespace", "namespaces": [f"ns{i}" for i in range(101)], "role": "view"}, "a", "at most 100"),
    ],
)
def test_bad_targets_are_refused_before_any_call(
    api: FakeApiServer, target: dict[str, Any], principal: str, fragment: str
) -> None:
    before = len(api.requests)
    with pytest.raises(InvalidJob) as info:
        integration(api).grant(grant("g", target, principal=principal), RecordingContext())
    assert fragment in info.value.message
    assert info.value.retryable is False
    assert len(api.requests) == before


def test_settings_are_validated_naming_the_setting(api: FakeApiServer) -> None:
    with pytest.raises(InvalidSettings) as info:
        KubernetesIntegration("i", {"connection": "host", "host": "http://10.0.0.1:6443"}, services())
    assert info.value.setting == "host"
    with pytest.raises(InvalidSettings) as info:
        KubernetesIntegration("i", {"connection": "eks", "region": "eu-west-1"}, services())
    assert info.value.setting == "cluster_name"
    with pytest.raises(InvalidSettings) as info:
        KubernetesIntegration("i", {"connection": "kubeconfig"}, services())
    assert info.value.setting == "connection"
    with pytest.raises(InvalidSettings) as info:
        integration(api, allowed_roles="view")
    assert info.value.setting == "allowed_roles"
    guarded = integration(api, allowed_roles=["view"])
    with pytest.raises(ConnectorError) as err:
        guarded.grant(grant("g", {**NS_TARGET, "role": "edit"}), RecordingContext())
    assert err.value.code == ErrorCode.GUARDRAIL_DENIED


def test_throttling_and_server_errors_are_retried(api: FakeApiServer) -> None:
    api.fail_next("POST", "rolebindings", 503, times=2)
    api.fail_next("GET", "clusterroles", 429, times=1)
    out = integration(api).grant(grant("g-retry", NS_TARGET), RecordingContext())
    assert [b["created"] for b in out["bindings"]] == [True, True]
    # persistent 503 -> UNAVAILABLE, retryable
    api.fail_next("POST", "rolebindings", 503, times=10)
    with pytest.raises(ConnectorError) as info:
        integration(api).grant(grant("g-down", NS_TARGET), RecordingContext())
    assert info.value.code == ErrorCode.UNAVAILABLE and info.value.retryable is True


def test_sync_pages_through_everything(api: FakeApiServer) -> None:
    for i in range(7):
        api.seed(namespace(f"team-{i}"))
    api.seed(role_binding("dev", "devs-view", "view", "carol"))
    sa_only = role_binding("dev", "robot", "view", "x")
    sa_only["subjects"] = [{"kind": "ServiceAccount", "name": "robot", "namespace": "dev"}]
    api.seed(sa_only)
    k8s = integration(api, page_size=3)
    k8s.grant(grant("grant-s", CLUSTER_TARGET, principal="sre"), RecordingContext())
    ctx = RecordingContext()
    result = k8s.sync(SyncRequest(), ctx)
    by_type: dict[str, list[Any]] = {}
    for item in ctx.items:
        by_type.setdefault(item.type, []).append(item)
    assert sorted(i.id for i in by_type["k8s.namespace"]) == sorted(
        ["dev", "stage", "prod"] + [f"team-{i}" for i in range(7)]
    )
    assert {i.id for i in by_type["k8s.clusterrole"]} == {"view", "edit"}
    view = next(i for i in by_type["k8s.clusterrole"] if i.id == "view")
    assert view.attributes["aggregation_labels"] == {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}
    edit = next(i for i in by_type["k8s.clusterrole"] if i.id == "edit")
    assert edit.attributes["aggregates"] == [{"rbac.authorization.k8s.io/aggregate-to-edit": "true"}]
    assert [i.id for i in by_type["k8s.role"]] == ["dev/config-reader"]
    bindings = {i.id: i.attributes for i in by_type["k8s.binding"]}
    assert set(bindings) == {"rolebinding/dev/devs-view", f"clusterrolebinding/{names.binding_name('grant-s')}"}
    assert bindings["rolebinding/dev/devs-view"]["subjects"] == [{"kind": "User", "name": "carol"}]
    assert bindings[f"clusterrolebinding/{names.binding_name('grant-s')}"]["grant_id"] == "grant-s"
    assert result["items"]["k8s.namespace"] == 10
    # 10 namespaces at 3 per page = 4 list calls carrying limit/continue
    ns_lists = [p for m, p in api.requests if m == "GET" and p == "/api/v1/namespaces"]
    assert len(ns_lists) == 4
    only = RecordingContext()
    integration(api).sync(SyncRequest(resource_types=("k8s.role",)), only)
    assert {i.type for i in only.items} == {"k8s.role"}
