"""The aws-auth ConfigMap path against the schema-validating fake API server (real client, real HTTP)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import yaml
from fake_apiserver import FakeApiServer
from k8s_helpers import (
    ADMIN_ALLOWED,
    EXPIRES_AT,
    STAR_RULES,
    VIEW_RULES,
    cluster_role,
    cluster_role_binding,
    describe,
    grant_request,
    kind_of,
    namespace,
    revoke_request,
    role,
    services,
)
from k8s_helpers import grant as granted
from k8s_helpers import revoke as revoked

from connector.errors import ConnectorError, ErrorCode, GuardrailDenied, InvalidJob, InvalidSettings
from connector.integrations.aws_auth import AwsAuthIntegration
from connector.integrations.aws_auth.provisioner import mapping_username, record_key
from connector.integrations.base import GrantRequest, RevokeRequest
from connector.integrations.capabilities import ExpiryScan
from connector.integrations.effect import Level
from connector.jobs.guardrails import Guardrails

pytestmark = pytest.mark.timeout(120)

ROLE = "arn:aws:iam::111122223333:role/team-payments"
MAP_ROLES = """# nodes first, then humans. Do not reorder!
- rolearn: arn:aws:iam::111122223333:role/eks-nodes
  username: system:node:{{EC2PrivateDNSName}}
  groups:
    - system:bootstrappers
    - system:nodes
- rolearn: "arn:aws:iam::111122223333:role/Admin"   # break-glass
  username: admin:{{SessionName}}
  groups: [ops-admins]
"""
OTHER_DATA = {
    "mapUsers": "- userarn: arn:aws:iam::111122223333:user/legacy\n  username: legacy\n  groups:\n  - viewers\n",
    "mapAccounts": '- "444455556666"\n',
    "x-custom-notes": "owned by platform team\n\n  keep   this   spacing\n",
}
CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {
        "name": "aws-auth",
        "namespace": "kube-system",
        "labels": {"app.kubernetes.io/part-of": "eks"},
        "annotations": {"platform/owner": "ops"},
    },
    "data": {"mapRoles": MAP_ROLES, **OTHER_DATA},
}
MOVED_IN = "- rolearn: arn:aws:iam::111122223333:role/ci\n  username: ci\n  groups:\n  - deployers\n"


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        server.seed(namespace("kube-system"))
        server.seed(copy.deepcopy(CONFIGMAP))
        yield server


def integration(server: FakeApiServer, **settings: Any) -> AwsAuthIntegration:
    return AwsAuthIntegration("aws-auth-int", {"connection": "host", "host": server.url, **settings}, services())


class AwsAuth:
    """The aws_auth_mapping kind of an integration on `server`, used as the dispatcher uses it."""

    def __init__(self, server: FakeApiServer, **settings: Any) -> None:
        self.kind = kind_of(integration(server, **settings))

    def grant(self, request: GrantRequest, policy: Any = None) -> Any:
        return granted(self.kind, request) if policy is None else granted(self.kind, request, policy)

    def revoke(self, request: RevokeRequest) -> Any:
        return revoked(self.kind, request)


def grant(grant_id: str = "grant-42", groups: list[str] | None = None, **kw: Any) -> GrantRequest:
    return grant_request(grant_id, kw.pop("principal", ROLE), {"groups": groups or ["payments-readers"]}, **kw)


def revoke(grant_id: str = "grant-42", **kw: Any) -> RevokeRequest:
    return revoke_request(grant_id, kw.pop("principal", ROLE), {"groups": ["payments-readers"]}, **kw)


def record_of(api: FakeApiServer, grant_id: str = "grant-42") -> dict[str, Any] | None:
    """The grant's ledger record on the ConfigMap, decoded (None when there is none)."""
    text = (configmap(api)["metadata"].get("annotations") or {}).get(record_key(grant_id))
    return None if text is None else dict(json.loads(text))


def configmap(api: FakeApiServer) -> dict[str, Any]:
    obj = api.get("configmaps", "aws-auth", "kube-system")
    assert obj is not None
    return obj


def puts(api: FakeApiServer) -> int:
    return sum(1 for m, p in api.requests if m == "PUT")


def concurrent_edit(server: FakeApiServer) -> None:
    """Another actor (eksctl, a human) appends an entry between our read and our write."""
    obj = copy.deepcopy(configmap(server))
    obj["data"]["mapRoles"] += MOVED_IN
    obj["metadata"]["resourceVersion"] = ""
    server.seed_replace(obj)


def test_grant_and_revoke_keep_every_foreign_byte_even_across_a_conflict(api: FakeApiServer) -> None:
    k8s = AwsAuth(api)
    api.before("PUT", "configmaps", concurrent_edit)
    result = k8s.grant(grant())
    assert result["changed"] is True
    assert result["write_attempts"] == 2  # the first replace met a real 409 on a stale resourceVersion
    assert any(r["reason"] == "Conflict" for r in api.rejections)

    after = configmap(api)
    text = after["data"]["mapRoles"]
    assert text.startswith(MAP_ROLES + MOVED_IN)  # foreign entries byte-for-byte, order kept
    entries = yaml.safe_load(text)
    assert entries[-1] == {"rolearn": ROLE, "username": mapping_username("grant-42"), "groups": ["payments-readers"]}
    assert entries[-1]["username"] == "access-connector:grant-42:{{SessionName}}"
    assert {k: v for k, v in after["data"].items() if k != "mapRoles"} == OTHER_DATA
    assert after["metadata"]["labels"] == CONFIGMAP["metadata"]["labels"]
    # foreign annotations kept; the grant's ledger record written in the same replace as its entry
    assert after["metadata"]["annotations"] == {
        **CONFIGMAP["metadata"]["annotations"],
        "grants.access-connector/grant-42": json.dumps(
            {
                "exp": str(int(EXPIRES_AT.timestamp())),
                "grant_id": "grant-42",
                "rolearn": ROLE,
                "username": mapping_username("grant-42"),
            },
            sort_keys=True,
            separators=(",", ":"),
        ),
    }
    assert puts(api) == 2  # the conflicting one and the one that landed: entry and record never apart

    # duplicate grant (same expiry): no write at all
    writes = puts(api)
    assert AwsAuth(api).grant(grant())["changed"] is False
    assert puts(api) == writes

    out = k8s.revoke(revoke())
    assert out["removed"] == [entries[-1]]
    final = configmap(api)
    assert final["data"]["mapRoles"] == MAP_ROLES + MOVED_IN
    assert {k: v for k, v in final["data"].items() if k != "mapRoles"} == OTHER_DATA
    assert final["metadata"]["annotations"] == CONFIGMAP["metadata"]["annotations"]  # the record went too

    writes = puts(api)
    assert k8s.revoke(revoke())["already_revoked"] is True
    assert puts(api) == writes


def test_a_redelivery_with_another_expiry_rewrites_only_the_record(api: FakeApiServer) -> None:
    k8s = AwsAuth(api)
    k8s.grant(grant())
    text = configmap(api)["data"]["mapRoles"]
    sooner = EXPIRES_AT - timedelta(hours=1)
    assert k8s.grant(grant(expires_at=sooner))["changed"] is True
    assert configmap(api)["data"]["mapRoles"] == text  # one entry, unchanged
    record = record_of(api)
    assert record is not None and record["exp"] == str(int(sooner.timestamp()))


def test_two_grants_revoke_only_their_own_entry(api: FakeApiServer) -> None:
    k8s = AwsAuth(api)
    other_role = "arn:aws:iam::111122223333:role/team-search"
    k8s.grant(grant("grant-a"))
    k8s.grant(grant("grant-b", ["search-admins"], principal=other_role))
    k8s.revoke(revoke("grant-a"))
    entries = yaml.safe_load(configmap(api)["data"]["mapRoles"])
    assert [e["rolearn"] for e in entries][-1] == other_role
    assert ROLE not in [e["rolearn"] for e in entries]
    assert record_of(api, "grant-a") is None and record_of(api, "grant-b") is not None
    # a revoke naming grant-b with the wrong role removes nothing, not even grant-b's record (which the expiry
    # loop needs to revoke grant-b in time)
    writes = puts(api)
    assert k8s.revoke(revoke("grant-b"))["already_revoked"] is True
    assert puts(api) == writes and record_of(api, "grant-b") is not None


@pytest.mark.parametrize(
    ("map_roles", "fragment"),
    [
        ("- rolearn: [unclosed\n", "not valid YAML at line"),
        ("rolearn: arn:aws:iam::111122223333:role/x\nusername: x\n", "must be a YAML list of mappings, found a dict"),
        ("- arn:aws:iam::111122223333:role/x\n", "item 1 is a str, expected a mapping"),
        ("- username: no-role\n", "item 1 has no rolearn"),
        ("- rolearn: arn:aws:iam::111122223333:role/x\n  groups: admins\n", "groups must be a list of strings"),
    ],
)
def test_a_malformed_aws_auth_is_reported_and_never_overwritten(
    api: FakeApiServer, map_roles: str, fragment: str
) -> None:
    broken = copy.deepcopy(configmap(api))
    broken["data"]["mapRoles"] = map_roles
    api.seed_replace(broken)
    before = copy.deepcopy(configmap(api))
    k8s = AwsAuth(api)
    for call in (lambda: k8s.grant(grant()), lambda: k8s.revoke(revoke())):
        with pytest.raises(ConnectorError) as info:
            call()
        assert info.value.code == ErrorCode.PRECONDITION_FAILED and info.value.retryable is False
        assert fragment in info.value.message and "kube-system/aws-auth" in info.value.message
    assert configmap(api) == before
    assert puts(api) == 0


def test_an_existing_mapping_for_the_same_role_is_a_conflict(api: FakeApiServer) -> None:
    with pytest.raises(ConnectorError) as info:
        AwsAuth(api).grant(grant("g", ["x"], principal="arn:aws:iam::111122223333:role/admin"))
    assert info.value.code == ErrorCode.CONFLICT and "admin:{{SessionName}}" in info.value.message
    assert configmap(api)["data"]["mapRoles"] == MAP_ROLES


def test_bad_principals_and_groups_are_refused(api: FakeApiServer) -> None:
    k8s = AwsAuth(api)
    cases = [
        ("arn:aws:sts::111122223333:assumed-role/team/alice", ["g"], "assumed-role session ARN"),
        ("alice", ["g"], "must be an IAM role ARN"),
        (ROLE, [], "non-empty list"),
        (ROLE, ["has space"], "not a valid group name"),
        (ROLE, [f"g{i}" for i in range(21)], "at most 20"),
    ]
    for principal, groups, fragment in cases:
        with pytest.raises(InvalidJob) as info:
            k8s.grant(GrantRequest(grant_id="g", principal=principal, target={"groups": groups}, expires_at=EXPIRES_AT))
        assert fragment in info.value.message
    assert api.requests == []  # refused before any call
    # system groups other than system:masters are the cluster's own: always refused, whatever the policy
    for policy in (None, ADMIN_ALLOWED):
        with pytest.raises(GuardrailDenied) as denied:
            k8s.grant(grant("g-sys", ["readers", "system:monitoring"]), policy)
        assert denied.value.rule == "reserved"
    assert puts(api) == 0


def test_a_decoy_cluster_in_the_target_is_refused_and_changes_nothing(api: FakeApiServer) -> None:
    k8s = AwsAuth(api)
    for decoy in ("cluster", "cluster_name", "region"):
        request = grant_request("g", ROLE, {"groups": ["system:masters"], decoy: "sandbox"})
        with pytest.raises(InvalidJob) as info:
            k8s.grant(request, ADMIN_ALLOWED)
        assert f"target.{decoy}: unknown field" in info.value.message
    assert api.requests == [] and configmap(api)["data"]["mapRoles"] == MAP_ROLES
    effect = describe(k8s.kind, grant())
    assert effect.cluster is not None and effect.cluster.name == api.url


def test_system_masters_is_admin_and_needs_the_customers_allow_cluster_admin(api: FakeApiServer) -> None:
    k8s = AwsAuth(api)
    request = grant("g-masters", ["system:masters"])
    effect = describe(k8s.kind, request)
    assert effect.level is Level.ADMIN and "system:masters bypasses RBAC" in effect.reasons[0]
    with pytest.raises(GuardrailDenied) as info:
        k8s.grant(request)  # the default policy
    assert info.value.rule == "allow_cluster_admin"
    with pytest.raises(GuardrailDenied):
        k8s.grant(request, Guardrails(max_duration="12h", kubernetes_groups=("system:*",)))
    assert puts(api) == 0 and configmap(api)["data"]["mapRoles"] == MAP_ROLES
    # the job's own settings cannot unlock it: the setting that once did is refused outright
    for value in (True, "true", 1):
        with pytest.raises(InvalidSettings) as bad:
            integration(api, allow_system_groups=value)
        assert bad.value.setting == "allow_system_groups" and "allow_cluster_admin" in bad.value.message
    assert isinstance(integration(api, allow_system_groups=False), AwsAuthIntegration)
    # only the customer's guardrail file can
    assert k8s.grant(request, ADMIN_ALLOWED)["changed"] is True
    assert yaml.safe_load(configmap(api)["data"]["mapRoles"])[-1]["groups"] == ["system:masters"]


def test_groups_are_judged_by_the_bindings_that_name_them(api: FakeApiServer) -> None:
    api.seed(cluster_role("cluster-admin", rules=STAR_RULES))
    api.seed(cluster_role("view", rules=VIEW_RULES))
    api.seed(cluster_role_binding("platform-admins", "cluster-admin", "platform-admins"))
    api.seed(namespace("dev"))
    api.seed(role("dev", "dev-everything", rules=STAR_RULES))
    readers = role_binding_to_group("dev", "readers-view", "ClusterRole", "view", "payments-readers")
    api.seed(readers)
    k8s = AwsAuth(api)
    assert describe(k8s.kind, grant("g1", ["payments-readers"])).level is Level.READ
    assert describe(k8s.kind, grant("g2", ["nobody-binds-this"])).level is Level.READ  # mapped: at least read
    admin = describe(k8s.kind, grant("g3", ["payments-readers", "platform-admins"]))
    assert admin.level is Level.ADMIN and any("platform-admins" in r for r in admin.reasons)
    with pytest.raises(GuardrailDenied) as info:
        k8s.grant(grant("g3", ["platform-admins"]))
    assert info.value.rule == "allow_cluster_admin"
    # a RoleBinding to a namespaced Role counts too
    api.seed(role_binding_to_group("dev", "dev-all", "Role", "dev-everything", "dev-team"))
    assert describe(k8s.kind, grant("g4", ["dev-team"])).level is Level.ADMIN
    # and so does what every authenticated identity gets
    api.seed(cluster_role_binding("oops", "cluster-admin", "system:authenticated"))
    assert describe(k8s.kind, grant("g5", ["payments-readers"])).level is Level.ADMIN
    assert puts(api) == 0


def role_binding_to_group(ns: str, name: str, role_kind: str, role_name: str, group: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group}],
    }


def test_missing_configmap(api: FakeApiServer) -> None:
    del api.objects[("configmaps", "kube-system", "aws-auth")]
    k8s = AwsAuth(api)
    with pytest.raises(ConnectorError) as info:
        k8s.grant(grant())
    assert info.value.code == ErrorCode.PRECONDITION_FAILED and "does not exist" in info.value.message
    assert k8s.revoke(revoke())["already_revoked"] is True
    assert list(k8s.kind.expired(ExpiryScan(now=0, full=True))) == []
    assert api.names("configmaps") == []


def test_dry_run_writes_nothing(api: FakeApiServer) -> None:
    k8s = AwsAuth(api)
    planned = k8s.grant(grant(dry_run=True))
    (call,) = planned["calls"]
    assert call["method"] == "PUT" and call["path"] == "/api/v1/namespaces/kube-system/configmaps/aws-auth"
    assert call["data.mapRoles"].startswith(MAP_ROLES) and mapping_username("grant-42") in call["data.mapRoles"]
    assert call["metadata.annotations"] == [record_key("grant-42")]
    assert puts(api) == 0 and configmap(api)["data"]["mapRoles"] == MAP_ROLES and record_of(api) is None
    k8s.grant(grant())
    assert configmap(api)["data"]["mapRoles"] == call["data.mapRoles"]
    planned_revoke = k8s.revoke(revoke(dry_run=True))
    assert planned_revoke["calls"][0]["data.mapRoles"] == MAP_ROLES
    assert planned_revoke["calls"][0]["metadata.annotations"] == []
    assert puts(api) == 1 and record_of(api) is not None


def test_conflicts_that_never_stop_become_a_retryable_conflict(api: FakeApiServer) -> None:
    for _ in range(10):
        api.before("PUT", "configmaps", concurrent_edit)
    with pytest.raises(ConnectorError) as info:
        AwsAuth(api).grant(grant())
    assert info.value.code == ErrorCode.CONFLICT and info.value.retryable is True
    assert mapping_username("grant-42") not in configmap(api)["data"]["mapRoles"]
    assert record_of(api) is None
