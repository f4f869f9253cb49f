"""The aws-auth ConfigMap path against the schema-validating fake API server (real client, real HTTP)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fake_apiserver import FakeApiServer
from k8s_helpers import RecordingContext, namespace, services

from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations.aws_auth import AwsAuthIntegration, mapping_username
from connector.integrations.base import GrantRequest, RevokeRequest

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


def grant(grant_id: str = "grant-42", groups: list[str] | None = None, **kw: Any) -> GrantRequest:
    return GrantRequest(grant_id=grant_id, principal=ROLE, target={"groups": groups or ["payments-readers"]}, **kw)


def revoke(grant_id: str = "grant-42", **kw: Any) -> RevokeRequest:
    return RevokeRequest(grant_id=grant_id, principal=ROLE, target={"groups": ["payments-readers"]}, **kw)


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
    k8s = integration(api)
    api.before("PUT", "configmaps", concurrent_edit)
    result = k8s.grant(grant(), RecordingContext())
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
    assert after["metadata"]["annotations"] == CONFIGMAP["metadata"]["annotations"]

    # duplicate grant: no write at all
    writes = puts(api)
    assert integration(api).grant(grant(), RecordingContext())["changed"] is False
    assert puts(api) == writes

    out = k8s.revoke(revoke(), RecordingContext())
    assert out["removed"] == [entries[-1]]
    final = configmap(api)
    assert final["data"]["mapRoles"] == MAP_ROLES + MOVED_IN
    assert {k: v for k, v in final["data"].items() if k != "mapRoles"} == OTHER_DATA

    writes = puts(api)
    assert k8s.revoke(revoke(), RecordingContext())["already_revoked"] is True
    assert puts(api) == writes


def test_two_grants_revoke_only_their_own_entry(api: FakeApiServer) -> None:
    k8s = integration(api)
    other_role = "arn:aws:iam::111122223333:role/team-search"
    k8s.grant(grant("grant-a"), RecordingContext())
    k8s.grant(
        GrantRequest(grant_id="grant-b", principal=other_role, target={"groups": ["search-admins"]}), RecordingContext()
    )
    k8s.revoke(revoke("grant-a"), RecordingContext())
    entries = yaml.safe_load(configmap(api)["data"]["mapRoles"])
    assert [e["rolearn"] for e in entries][-1] == other_role
    assert ROLE not in [e["rolearn"] for e in entries]
    # a revoke naming grant-b with the wrong role removes nothing
    assert k8s.revoke(revoke("grant-b"), RecordingContext())["already_revoked"] is True


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
    k8s = integration(api)
    for call in (lambda: k8s.grant(grant(), RecordingContext()), lambda: k8s.revoke(revoke(), RecordingContext())):
        with pytest.raises(ConnectorError) as info:
            call()
        assert info.value.code == ErrorCode.PRECONDITION_FAILED and info.value.retryable is False
        assert fragment in info.value.message and "kube-system/aws-auth" in info.value.message
    assert configmap(api) == before
    assert puts(api) == 0


def test_an_existing_mapping_for_the_same_role_is_a_conflict(api: FakeApiServer) -> None:
    k8s = integration(api)
    with pytest.raises(ConnectorError) as info:
        k8s.grant(
            GrantRequest(grant_id="g", principal="arn:aws:iam::111122223333:role/admin", target={"groups": ["x"]}),
            RecordingContext(),
        )
    assert info.value.code == ErrorCode.CONFLICT and "admin:{{SessionName}}" in info.value.message
    assert configmap(api)["data"]["mapRoles"] == MAP_ROLES


def test_bad_principals_and_groups_are_refused(api: FakeApiServer) -> None:
    k8s = integration(api)
    cases = [
        ("arn:aws:sts::111122223333:assumed-role/team/alice", ["g"], "assumed-role session ARN"),
        ("alice", ["g"], "must be an IAM role ARN"),
        (ROLE, ["system:masters"], "system group"),
        (ROLE, [], "non-empty list"),
        (ROLE, ["has space"], "not a valid group name"),
    ]
    for principal, groups, fragment in cases:
        with pytest.raises(InvalidJob) as info:
            k8s.grant(GrantRequest(grant_id="g", principal=principal, target={"groups": groups}), RecordingContext())
        assert fragment in info.value.message
    assert puts(api) == 0
    allowed = integration(api, allow_system_groups=True)
    assert allowed.grant(grant("g-sys", ["system:monitoring"]), RecordingContext())["changed"] is True


def test_missing_configmap(api: FakeApiServer) -> None:
    del api.objects[("configmaps", "kube-system", "aws-auth")]
    k8s = integration(api)
    with pytest.raises(ConnectorError) as info:
        k8s.grant(grant(), RecordingContext())
    assert info.value.code == ErrorCode.PRECONDITION_FAILED and "does not exist" in info.value.message
    assert k8s.revoke(revoke(), RecordingContext())["already_revoked"] is True
    assert api.names("configmaps") == []


def test_dry_run_writes_nothing(api: FakeApiServer) -> None:
    k8s = integration(api)
    planned = k8s.grant(grant(dry_run=True), RecordingContext())
    (call,) = planned["calls"]
    assert call["method"] == "PUT" and call["path"] == "/api/v1/namespaces/kube-system/configmaps/aws-auth"
    assert call["data.mapRoles"].startswith(MAP_ROLES) and mapping_username("grant-42") in call["data.mapRoles"]
    assert puts(api) == 0 and configmap(api)["data"]["mapRoles"] == MAP_ROLES
    k8s.grant(grant(), RecordingContext())
    assert configmap(api)["data"]["mapRoles"] == call["data.mapRoles"]
    planned_revoke = k8s.revoke(revoke(dry_run=True), RecordingContext())
    assert planned_revoke["calls"][0]["data.mapRoles"] == MAP_ROLES
    assert puts(api) == 1


def test_conflicts_that_never_stop_become_a_retryable_conflict(api: FakeApiServer) -> None:
    for _ in range(10):
        api.before("PUT", "configmaps", concurrent_edit)
    with pytest.raises(ConnectorError) as info:
        integration(api).grant(grant(), RecordingContext())
    assert info.value.code == ErrorCode.CONFLICT and info.value.retryable is True
    assert mapping_username("grant-42") not in configmap(api)["data"]["mapRoles"]
