"""Kubernetes RBAC and aws-auth grants expire: each kind's ExpiryScanner finds its expired (or undecodable)
records in the cluster, and its own revoke removes the access and the record. Real client, fake API server."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from fake_apiserver import FakeApiServer
from k8s_helpers import (
    EXPIRES_AT,
    cluster_role,
    expired,
    grant,
    grant_request,
    kind_of,
    namespace,
    revoke,
    role_binding,
    services,
)

from connector.integrations import ledger
from connector.integrations.aws_auth import AwsAuthIntegration
from connector.integrations.aws_auth.provisioner import mapping_username, record_key
from connector.integrations.kubernetes import KubernetesIntegration
from connector.jobs.registry import build_registry
from connector.k8s import names

pytestmark = pytest.mark.timeout(120)

ROLE = "arn:aws:iam::111122223333:role/team-payments"
NODES = "- rolearn: arn:aws:iam::111122223333:role/eks-nodes\n  username: system:node:{{EC2PrivateDNSName}}\n"
NS_TARGET = {"scope": "namespace", "namespaces": ["dev", "stage"], "role": "view"}


def soon() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=60)


def after(when: datetime) -> int:
    return int(when.timestamp()) + 1


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        for ns in ("dev", "stage", "kube-system"):
            server.seed(namespace(ns))
        server.seed(cluster_role("view"))
        server.seed(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "aws-auth", "namespace": "kube-system", "annotations": {"platform/owner": "ops"}},
                "data": {"mapRoles": NODES},
            }
        )
        yield server


def rbac(server: FakeApiServer) -> Any:
    return kind_of(KubernetesIntegration("k8s-int", {"connection": "host", "host": server.url}, services()))


def aws_auth(server: FakeApiServer) -> Any:
    return kind_of(AwsAuthIntegration("aws-auth-int", {"connection": "host", "host": server.url}, services()))


def bindings_of(server: FakeApiServer, grant_id: str) -> list[dict[str, Any]]:
    """Every binding anywhere that names the grant (by its id annotation)."""
    found = []
    for resource in ("rolebindings", "clusterrolebindings"):
        for ns, name in server.names(resource):
            obj = server.get(resource, name, ns) or {}
            if (obj["metadata"].get("annotations") or {}).get(names.GRANT_ID_ANNOTATION) == grant_id:
                found.append(obj)
    return found


def configmap(server: FakeApiServer) -> dict[str, Any]:
    obj = server.get("configmaps", "aws-auth", "kube-system")
    assert obj is not None
    return obj


def edit_configmap(server: FakeApiServer, change: Any) -> None:
    """Someone edits aws-auth by hand (kubectl edit)."""
    obj = copy.deepcopy(configmap(server))
    change(obj)
    obj["metadata"]["resourceVersion"] = ""
    server.seed_replace(obj)


def entries(server: FakeApiServer) -> list[dict[str, Any]]:
    return list(yaml.safe_load(configmap(server)["data"]["mapRoles"]) or [])


def test_both_kinds_are_expiry_scanners_of_their_integrations(api: FakeApiServer) -> None:
    registry = build_registry()
    k8s = KubernetesIntegration("k8s-int", {"connection": "host", "host": api.url}, services())
    assert [r for r, _ in registry.scanners(k8s)] == ["kubernetes_rbac"]
    mapping = AwsAuthIntegration("aws-auth-int", {"connection": "host", "host": api.url}, services())
    assert [r for r, _ in registry.scanners(mapping)] == ["aws_auth_mapping"]


# -- kubernetes_rbac ------------------------------------------------------------------------------------------
def test_an_expired_rbac_grant_is_found_and_its_revoke_leaves_nothing(api: FakeApiServer) -> None:
    kind = rbac(api)
    short = soon()
    grant(kind, grant_request("g-short", "alice", NS_TARGET, expires_at=short))
    grant(kind, grant_request("g-live", "bob", NS_TARGET))
    assert expired(kind) == []  # nothing is due yet

    found = expired(kind, after(short))
    assert len(found) == 1  # one per grant, though it made two bindings
    (item,) = found
    assert item.grant_key == ledger.grant_key("g-short")
    assert item.expires_epoch == int(short.timestamp()) and item.problem == ""
    assert item.place.startswith("RoleBinding/") and names.binding_name("g-short") in item.place
    assert item.request is not None and item.request.grant_id == "g-short"

    out = revoke(kind, item.request)
    assert len(out["deleted"]) == 2
    assert bindings_of(api, "g-short") == []  # no binding, so no record annotation either
    assert len(bindings_of(api, "g-live")) == 2
    assert expired(kind, after(short)) == []
    # revoking again is harmless
    assert revoke(kind, item.request)["already_revoked"] is True
    # the live grant is found once it is due
    assert [f.request.grant_id for f in expired(kind, after(EXPIRES_AT)) if f.request] == ["g-live"]


@pytest.mark.parametrize(
    ("annotations", "problem"),
    [
        ({"access-connector/grant": "exp=soon"}, "is not whole seconds since 1970"),
        ({"access-connector/grant": "exp=-5"}, "is not whole seconds since 1970"),
        ({"access-connector/grant": "hello"}, "has no expiry"),
        ({}, "carries no grant record"),
        ({"access-connector/expires-at": "next tuesday"}, "cannot be read"),
    ],
)
def test_a_binding_of_ours_whose_record_cannot_be_read_counts_as_expired(
    api: FakeApiServer, annotations: dict[str, str], problem: str
) -> None:
    kind = rbac(api)
    grant(kind, grant_request("g-bad", "alice", {**NS_TARGET, "namespaces": ["dev"]}))
    obj = copy.deepcopy(api.get("rolebindings", names.binding_name("g-bad"), "dev"))
    assert obj is not None
    obj["metadata"]["annotations"] = {names.GRANT_ID_ANNOTATION: "g-bad", **annotations}
    obj["metadata"]["resourceVersion"] = ""
    api.seed_replace(obj)

    (item,) = expired(kind)  # now: long before the grant's real expiry
    assert item.expires_epoch is None and problem in item.problem
    assert item.request is not None and item.request.grant_id == "g-bad"
    revoke(kind, item.request)
    assert bindings_of(api, "g-bad") == [] and expired(kind) == []


def test_a_legacy_binding_with_only_the_readable_expiry_is_still_swept(api: FakeApiServer) -> None:
    kind = rbac(api)
    grant(kind, grant_request("g-old", "alice", {**NS_TARGET, "namespaces": ["dev"]}))
    obj = copy.deepcopy(api.get("rolebindings", names.binding_name("g-old"), "dev"))
    assert obj is not None
    del obj["metadata"]["annotations"]["access-connector/grant"]
    obj["metadata"]["resourceVersion"] = ""
    api.seed_replace(obj)
    assert expired(kind) == []
    (item,) = expired(kind, after(EXPIRES_AT))
    assert item.expires_epoch == int(EXPIRES_AT.timestamp()) and item.request is not None


def test_bindings_that_only_look_like_ours_are_reported_not_revoked(api: FakeApiServer) -> None:
    kind = rbac(api)
    api.seed(role_binding("dev", "copycat", "view", "mallory", labels=names.grant_labels("g-x")))
    api.seed(
        role_binding(
            "dev",
            "impostor",
            "view",
            "mallory",
            labels=names.grant_labels("g-y"),
            annotations={names.GRANT_ID_ANNOTATION: "g-y", "access-connector/grant": "exp=1"},
        )
    )
    found = {f.place: f for f in expired(kind)}
    assert set(found) == {"RoleBinding/dev/copycat", "RoleBinding/dev/impostor"}
    assert all(f.request is None and f.problem for f in found.values())
    assert "delete it by hand" in found["RoleBinding/dev/impostor"].problem


def test_a_repeated_rbac_grant_with_the_same_expiry_changes_nothing(api: FakeApiServer) -> None:
    kind = rbac(api)
    grant(kind, grant_request("g-rep", "alice", NS_TARGET))
    before = copy.deepcopy(bindings_of(api, "g-rep"))
    writes = [w for w in api.writes() if w[0] != "POST"]
    again = grant(kind, grant_request("g-rep", "alice", NS_TARGET))
    assert [b["created"] for b in again["bindings"]] == [False, False]
    assert bindings_of(api, "g-rep") == before
    assert [w for w in api.writes() if w[0] != "POST"] == writes  # the only writes were refused creates (409)


# -- aws_auth_mapping -----------------------------------------------------------------------------------------
def test_an_expired_aws_auth_grant_is_found_and_its_revoke_leaves_no_entry_and_no_record(
    api: FakeApiServer,
) -> None:
    kind = aws_auth(api)
    short = soon()
    grant(kind, grant_request("g-short", ROLE, {"groups": ["readers"]}, expires_at=short))
    other = "arn:aws:iam::111122223333:role/team-search"
    grant(kind, grant_request("g-live", other, {"groups": ["searchers"]}))
    assert expired(kind) == []

    (item,) = expired(kind, after(short))
    assert item.grant_key == record_key("g-short") == "grants.access-connector/g-short"
    assert item.expires_epoch == int(short.timestamp()) and item.problem == ""
    assert item.request is not None
    assert (item.request.grant_id, item.request.principal) == ("g-short", ROLE)

    revoke(kind, item.request)
    assert [e["username"] for e in entries(api)] == ["system:node:{{EC2PrivateDNSName}}", mapping_username("g-live")]
    assert set(configmap(api)["metadata"]["annotations"]) == {"platform/owner", record_key("g-live")}
    assert expired(kind, after(short)) == []
    puts = len(api.writes())
    assert revoke(kind, item.request)["already_revoked"] is True  # twice: harmless, no write
    assert len(api.writes()) == puts


def test_an_entry_of_ours_without_a_record_counts_as_expired(api: FakeApiServer) -> None:
    kind = aws_auth(api)
    ours = "- rolearn: arn:aws:iam::111122223333:role/old\n  username: access-connector:old-grant:{{SessionName}}\n"
    edit_configmap(api, lambda cm: cm["data"].update(mapRoles=NODES + ours))

    (item,) = expired(kind)
    assert item.expires_epoch is None and "no grant record" in item.problem
    assert item.request is not None
    assert (item.request.grant_id, item.request.principal) == ("old-grant", "arn:aws:iam::111122223333:role/old")
    revoke(kind, item.request)
    assert configmap(api)["data"]["mapRoles"] == NODES
    assert expired(kind) == []


def test_a_record_removed_by_hand_leaves_the_entry_expired(api: FakeApiServer) -> None:
    kind = aws_auth(api)
    grant(kind, grant_request("g-1", ROLE, {"groups": ["readers"]}))
    edit_configmap(api, lambda cm: cm["metadata"]["annotations"].pop(record_key("g-1")))
    (item,) = expired(kind)
    assert item.expires_epoch is None and item.request is not None and item.request.grant_id == "g-1"


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (lambda r: dict(r, exp="soon"), "is not whole seconds since 1970"),
        (lambda r: {k: v for k, v in r.items() if k != "exp"}, "has no expiry"),
        (lambda r: dict(r, exp="99999999999999"), "is not whole seconds since 1970"),
        (lambda r: "not json", "not JSON"),
        (lambda r: ["a", "list"], "not a JSON object"),
    ],
)
def test_a_record_with_a_garbage_expiry_counts_as_expired(api: FakeApiServer, record: Any, problem: str) -> None:
    kind = aws_auth(api)
    grant(kind, grant_request("g-1", ROLE, {"groups": ["readers"]}))
    key = record_key("g-1")

    def garble(cm: dict[str, Any]) -> None:
        changed = record(json.loads(cm["metadata"]["annotations"][key]))
        cm["metadata"]["annotations"][key] = changed if isinstance(changed, str) else json.dumps(changed)

    edit_configmap(api, garble)
    (item,) = expired(kind)  # once: the record and its entry are one grant
    assert item.expires_epoch is None and problem in item.problem
    assert item.request is not None and (item.request.grant_id, item.request.principal) == ("g-1", ROLE)
    revoke(kind, item.request)
    assert configmap(api)["data"]["mapRoles"] == NODES
    assert set(configmap(api)["metadata"]["annotations"]) == {"platform/owner"}
    assert expired(kind) == []


def test_an_entry_edited_to_map_another_role_is_still_revoked_on_expiry(api: FakeApiServer) -> None:
    kind = aws_auth(api)
    short = soon()
    grant(kind, grant_request("g-1", ROLE, {"groups": ["readers"]}, expires_at=short))
    other = "arn:aws:iam::111122223333:role/someone-else"
    edit_configmap(api, lambda cm: cm["data"].update(mapRoles=cm["data"]["mapRoles"].replace(ROLE, other)))
    (item,) = expired(kind, after(short))
    assert item.request is not None and item.request.principal == other
    revoke(kind, item.request)
    assert configmap(api)["data"]["mapRoles"] == NODES and expired(kind, after(short)) == []


def test_an_orphan_record_is_cleaned_up_and_an_unreadable_one_reported(api: FakeApiServer) -> None:
    kind = aws_auth(api)
    grant(kind, grant_request("g-1", ROLE, {"groups": ["readers"]}, expires_at=soon()))
    edit_configmap(api, lambda cm: cm["data"].update(mapRoles=NODES))  # the entry removed by hand
    (item,) = expired(kind, time.time() + 3600)
    assert item.request is not None
    revoke(kind, item.request)
    assert set(configmap(api)["metadata"]["annotations"]) == {"platform/owner"}
    edit_configmap(api, lambda cm: cm["metadata"]["annotations"].update({record_key("g-2"): "garbage"}))
    (item,) = expired(kind)
    assert item.request is None and "not JSON" in item.problem and item.grant_key == record_key("g-2")


def test_a_repeated_aws_auth_grant_with_the_same_expiry_changes_nothing(api: FakeApiServer) -> None:
    kind = aws_auth(api)
    grant(kind, grant_request("g-rep", ROLE, {"groups": ["readers"]}))
    before = copy.deepcopy(configmap(api))
    writes = len(api.writes())
    assert grant(kind, grant_request("g-rep", ROLE, {"groups": ["readers"]}))["changed"] is False
    assert len(api.writes()) == writes and configmap(api) == before
