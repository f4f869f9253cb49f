"""Kubernetes RBAC grant / revoke / sync against the schema-validating fake API server (real client, real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fake_apiserver import FakeApiServer
from k8s_helpers import (
    EXPIRES_AT,
    REGISTRY,
    RecordingContext,
    cluster_role,
    describe,
    expired,
    grant_request,
    kind_of,
    namespace,
    revoke_request,
    role,
    role_binding,
    services,
)
from k8s_helpers import grant as granted
from k8s_helpers import revoke as revoked
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


class Rbac:
    """The kubernetes_rbac kind of an integration on `server`, used as the dispatcher uses it."""

    def __init__(self, server: FakeApiServer, **settings: Any) -> None:
        self.integration = integration(server, **settings)
        self.kind = kind_of(self.integration, "kubernetes_rbac")

    def grant(self, grant_id: str, target: dict[str, Any], principal: str = "alice@example.com", **kw: Any) -> Any:
        return granted(self.kind, grant(grant_id, target, principal, **kw))

    def revoke(self, grant_id: str, target: dict[str, Any], principal: str = "alice@example.com", **kw: Any) -> Any:
        return revoked(self.kind, revoke(grant_id, target, principal, **kw))


def grant(grant_id: str, target: dict[str, Any], principal: str = "alice@example.com", **kw: Any) -> GrantRequest:
    return grant_request(grant_id, principal, target, **kw)


def revoke(grant_id: str, target: dict[str, Any], principal: str = "alice@example.com", **kw: Any) -> RevokeRequest:
    return revoke_request(grant_id, principal, target, **kw)


def version(server: FakeApiServer, name: str, ns: str) -> str:
    obj = server.get("rolebindings", name, ns)
    assert obj is not None
    return str(obj["metadata"]["resourceVersion"])


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


def test_the_fake_checks_annotation_keys_as_the_api_server_does() -> None:
    """The keys the kinds write are accepted; keys a real API server refuses are refused here too."""
    with FakeApiServer() as server:
        server.seed(namespace("dev"))
        kube = KubeApi(token_client(server.url, None, None))
        good = {
            "access-connector/grant": "exp=1",
            "grants.access-connector/" + "g" * 63: "{}",
            "Example.COM/Upper": "annotation keys are checked lower-cased",
            "plain": "no prefix",
        }
        kube.rbac.create_namespaced_role_binding("dev", role_binding("dev", "ok", "view", "a", annotations=good))
        bad = [
            "access-connector/grant/g-1",  # two slashes: what the ledger docstring once said for aws-auth
            "/no-prefix",
            "grants.access-connector/" + "g" * 64,
            "grants.access-connector/-dash-first",
            "bad_prefix/name",
        ]
        for index, key in enumerate(bad):
            with pytest.raises(ApiException) as info:
                kube.rbac.create_namespaced_role_binding(
                    "dev", role_binding("dev", f"rb{index}", "view", "a", annotations={key: "x"})
                )
            assert info.value.status == 422, key
        huge = {f"k{i}": "x" * 1024 for i in range(257)}  # over 256 KiB together
        with pytest.raises(ApiException) as info:
            kube.rbac.create_namespaced_role_binding("dev", role_binding("dev", "big", "view", "a", annotations=huge))
        assert info.value.status == 422 and "at most 262144 bytes" in server.rejections[-1]["message"]
        assert server.names("rolebindings") == [("dev", "ok")]


def test_namespace_grant_creates_labelled_bindings_then_is_idempotent(api: FakeApiServer) -> None:
    k8s = Rbac(api)
    result = k8s.grant("grant-1", NS_TARGET)
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
    assert obj["metadata"]["annotations"] == {
        "access-connector/grant-id": "grant-1",
        "access-connector/grant": f"exp={int(EXPIRES_AT.timestamp())}",  # the ledger record the expiry loop reads
        "access-connector/expires-at": EXPIRES_AT.isoformat(),
    }
    assert obj["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
    assert obj["subjects"] == [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice@example.com"}]
    assert api.get("rolebindings", name, "prod") is None

    uids = {b["namespace"]: b["uid"] for b in result["bindings"]}
    versions = {ns: version(api, name, ns) for ns in ("dev", "stage")}
    again = k8s.grant("grant-1", NS_TARGET)
    assert [(b["namespace"], b["created"], b["uid"]) for b in again["bindings"]] == [
        ("dev", False, uids["dev"]),
        ("stage", False, uids["stage"]),
    ]
    assert api.names("rolebindings") == [("dev", name), ("stage", name)]
    assert api.rejections[-1]["reason"] == "AlreadyExists"
    # the same grant again changed nothing: same objects, same versions, no delete
    assert {ns: version(api, name, ns) for ns in ("dev", "stage")} == versions
    assert not [m for m, _ in api.writes() if m == "DELETE"]


def test_a_redelivery_with_another_expiry_rewrites_the_record(api: FakeApiServer) -> None:
    """The ledger says what the grant now is: a shorter (or longer) expiry is not lost on an existing binding."""
    k8s = Rbac(api)
    k8s.grant("grant-e", NS_TARGET)
    sooner = EXPIRES_AT - timedelta(hours=3)
    out = k8s.grant("grant-e", NS_TARGET, expires_at=sooner)
    assert [(b["namespace"], b["created"], b.get("replaced")) for b in out["bindings"]] == [
        ("dev", True, True),
        ("stage", True, True),
    ]
    for ns in ("dev", "stage"):
        obj = api.get("rolebindings", "ac-grant-grant-e", ns)
        assert obj is not None
        assert obj["metadata"]["annotations"]["access-connector/grant"] == f"exp={int(sooner.timestamp())}"
    found = expired(k8s.kind, sooner + timedelta(seconds=1))
    assert [f.request.grant_id for f in found if f.request] == ["grant-e"]


def test_cluster_grant_and_revoke(api: FakeApiServer) -> None:
    k8s = Rbac(api)
    result = k8s.grant("G-2", CLUSTER_TARGET, principal="oncall")
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

    out = k8s.revoke("G-2", CLUSTER_TARGET, principal="oncall")
    assert out["deleted"] == [{"kind": "ClusterRoleBinding", "namespace": "", "name": binding["name"]}]
    assert api.names("clusterrolebindings") == []
    again = k8s.revoke("G-2", CLUSTER_TARGET, principal="oncall")
    assert again["already_revoked"] is True and again["deleted"] == []


def test_revoke_deletes_exactly_the_grants_bindings(api: FakeApiServer) -> None:
    k8s = Rbac(api)
    k8s.grant("grant-a", NS_TARGET)
    k8s.grant("grant-b", {**NS_TARGET, "namespaces": ["dev"]})
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
    out = k8s.revoke("grant-a", NS_TARGET)
    assert sorted((d["namespace"], d["name"]) for d in out["deleted"]) == [
        ("dev", "ac-grant-grant-a"),
        ("stage", "ac-grant-grant-a"),
    ]
    assert set(api.names("rolebindings")) == before - {("dev", "ac-grant-grant-a"), ("stage", "ac-grant-grant-a")}
    assert ("dev", "ac-grant-grant-b") in api.names("rolebindings")
    # duplicate revoke: success, nothing deleted
    writes = len(api.writes())
    assert k8s.revoke("grant-a", NS_TARGET)["already_revoked"] is True
    assert len(api.writes()) == writes


def test_foreign_binding_with_our_name_is_a_conflict_and_untouched(api: FakeApiServer) -> None:
    foreign = api.seed(role_binding("stage", names.binding_name("grant-x"), "edit", "bob"))
    k8s = Rbac(api)
    with pytest.raises(ConnectorError) as info:
        k8s.grant("grant-x", NS_TARGET)
    assert info.value.code == ErrorCode.CONFLICT and info.value.retryable is False
    assert "stage/ac-grant-grant-x" in info.value.message and "not created by the connector" in info.value.message
    assert api.get("rolebindings", "ac-grant-grant-x", "stage") == foreign  # never overwritten
    # the binding made in "dev" before the conflict was rolled back: no access left behind
    assert api.get("rolebindings", "ac-grant-grant-x", "dev") is None
    # revoke leaves the foreign object alone
    k8s.revoke("grant-x", NS_TARGET)
    assert api.get("rolebindings", "ac-grant-grant-x", "stage") == foreign


def test_same_grant_id_with_a_different_role_is_refused(api: FakeApiServer) -> None:
    k8s = Rbac(api)
    k8s.grant("grant-r", NS_TARGET)
    with pytest.raises(ConnectorError) as info:
        k8s.grant("grant-r", {**NS_TARGET, "role": "edit"})
    assert info.value.code == ErrorCode.CONFLICT and "different role or subject" in info.value.message


def test_missing_namespace_and_missing_role_are_clear_errors(api: FakeApiServer) -> None:
    k8s = Rbac(api)
    with pytest.raises(ConnectorError) as info:
        k8s.grant("g-ns", {**NS_TARGET, "namespaces": ["dev", "nope"]})
    assert info.value.code == ErrorCode.NOT_FOUND and "namespace 'nope' does not exist" in info.value.message
    assert api.names("rolebindings") == []  # dev's binding rolled back
    with pytest.raises(ConnectorError) as info:
        k8s.grant("g-role", {**NS_TARGET, "role": "no-such-role"})
    assert info.value.code == ErrorCode.NOT_FOUND and "ClusterRole 'no-such-role' does not exist" in info.value.message
    # a namespaced Role
    ok = k8s.grant(
        "g-role2", {"scope": "namespace", "namespaces": ["dev"], "role_kind": "Role", "role": "config-reader"}
    )
    assert ok["bindings"][0]["created"] is True
    # RBAC would accept a binding to a Role missing in one namespace (and it would give nothing until a Role of
    # that name appears there): refused before anything is written, naming the namespace.
    writes = len(api.writes())
    with pytest.raises(ConnectorError) as info:
        k8s.grant(
            "g-role3",
            {"scope": "namespace", "namespaces": ["dev", "stage"], "role_kind": "Role", "role": "config-reader"},
        )
    assert info.value.code == ErrorCode.NOT_FOUND and info.value.retryable is False
    assert "Role 'config-reader' does not exist in namespaces ['stage']" in info.value.message
    assert len(api.writes()) == writes
    assert api.get("rolebindings", names.binding_name("g-role3"), "dev") is None


def test_dry_run_makes_no_write_and_lists_the_exact_calls(api: FakeApiServer) -> None:
    k8s = Rbac(api)
    request = grant("grant-d", NS_TARGET, dry_run=True)
    effect = describe(k8s.kind, request)  # describe reads (the role's rules) and never writes
    assert api.writes() == []
    before = len(api.requests)
    out = k8s.kind.grant(request, effect, RecordingContext())
    assert len(api.requests) == before  # the dry run itself: not even a read
    assert [c["path"] for c in out["calls"]] == [
        "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/stage/rolebindings",
    ]
    # the planned bodies are exactly what a real grant sends (the fake validates them)
    k8s.grant("grant-d", NS_TARGET)
    stored = api.get("rolebindings", "ac-grant-grant-d", "dev")
    assert stored is not None
    assert {k: stored[k] for k in ("roleRef", "subjects")} == {
        k: out["calls"][0]["body"][k] for k in ("roleRef", "subjects")
    }
    assert stored["metadata"]["annotations"] == out["calls"][0]["body"]["metadata"]["annotations"]
    writes = len(api.writes())
    planned = k8s.revoke("grant-d", NS_TARGET, dry_run=True)
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
        ({"scope": "cluster", "role": "view", "cluster": "sandbox"}, "alice", "target.cluster: unknown field"),
        ({"scope": "cluster", "role": "view", "resource_type": "eks_cluster"}, "alice", "target.resource_type"),
    ],
)
def test_bad_targets_are_refused_before_any_call(
    api: FakeApiServer, target: dict[str, Any], principal: str, fragment: str
) -> None:
    before = len(api.requests)
    with pytest.raises(InvalidJob) as info:
        Rbac(api).grant("g", target, principal=principal)
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
    guarded = Rbac(api, allowed_roles=["view"])
    with pytest.raises(ConnectorError) as err:
        guarded.grant("g", {**NS_TARGET, "role": "edit"})
    assert err.value.code == ErrorCode.GUARDRAIL_DENIED
    assert api.writes() == []


def test_throttling_and_server_errors_are_retried(api: FakeApiServer) -> None:
    api.fail_next("POST", "rolebindings", 503, times=2)
    api.fail_next("GET", "clusterroles", 429, times=1)
    out = Rbac(api).grant("g-retry", NS_TARGET)
    assert [b["created"] for b in out["bindings"]] == [True, True]
    # persistent 503 -> UNAVAILABLE, retryable
    api.fail_next("POST", "rolebindings", 503, times=10)
    with pytest.raises(ConnectorError) as info:
        Rbac(api).grant("g-down", NS_TARGET)
    assert info.value.code == ErrorCode.UNAVAILABLE and info.value.retryable is True


def test_sync_pages_through_everything(api: FakeApiServer) -> None:
    for i in range(7):
        api.seed(namespace(f"team-{i}"))
    api.seed(role_binding("dev", "devs-view", "view", "carol"))
    sa_only = role_binding("dev", "robot", "view", "x")
    sa_only["subjects"] = [{"kind": "ServiceAccount", "name": "robot", "namespace": "dev"}]
    api.seed(sa_only)
    k8s = Rbac(api, page_size=3)
    k8s.grant("grant-s", CLUSTER_TARGET, principal="sre")
    syncer = REGISTRY.syncer(k8s.integration)
    assert syncer is not None
    ctx = RecordingContext()
    result = syncer.sync(SyncRequest(), ctx)
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
    other = REGISTRY.syncer(integration(api))
    assert other is not None
    other.sync(SyncRequest(resource_types=("k8s.role",)), only)
    assert {i.type for i in only.items} == {"k8s.role"}
    with pytest.raises(InvalidJob):
        other.sync(SyncRequest(resource_types=("k8s.secret",)), RecordingContext())
