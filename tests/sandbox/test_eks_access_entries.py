"""EKS access entries and accessConfig through boto3 over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from connector.sandbox import Sandbox, SeedSpec

pytestmark = pytest.mark.timeout(120)
VIEW = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
ADMIN = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
VPC = {"subnetIds": ["subnet-1"], "securityGroupIds": ["sg-1"]}


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox.start(seed=SeedSpec(identity_center=False)) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def account(sb: Sandbox) -> str:
    return sb.seed_info.account("dev-0001").id


@pytest.fixture(scope="module")
def eks(sb: Sandbox, account: str) -> Any:
    return sb.account_session(account).client("eks", endpoint_url=sb.endpoint)


def _cluster(eks: Any, name: str, mode: str | None, bootstrap: bool = False) -> None:
    kwargs: dict[str, Any] = {}
    if mode:
        kwargs["accessConfig"] = {"authenticationMode": mode, "bootstrapClusterCreatorAdminPermissions": bootstrap}
    eks.create_cluster(name=name, roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig=VPC, **kwargs)


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_access_config_round_trip_and_default(eks: Any) -> None:
    _cluster(eks, "ac-api", "API")
    _cluster(eks, "ac-default", None)
    assert eks.describe_cluster(name="ac-api")["cluster"]["accessConfig"]["authenticationMode"] == "API"
    # botocore's doc: created through the API without accessConfig -> CONFIG_MAP
    assert eks.describe_cluster(name="ac-default")["cluster"]["accessConfig"]["authenticationMode"] == "CONFIG_MAP"
    update = eks.update_cluster_config(name="ac-default", accessConfig={"authenticationMode": "API_AND_CONFIG_MAP"})
    assert update["update"]["type"] == "AccessConfigUpdate"
    assert (
        eks.describe_cluster(name="ac-default")["cluster"]["accessConfig"]["authenticationMode"] == "API_AND_CONFIG_MAP"
    )
    with pytest.raises(ClientError) as exc:  # modes never move back towards CONFIG_MAP
        eks.update_cluster_config(name="ac-default", accessConfig={"authenticationMode": "CONFIG_MAP"})
    assert _code(exc) == ("InvalidParameterException", 400)


def test_config_map_cluster_refuses_access_entries(sb: Sandbox, eks: Any, account: str) -> None:
    _cluster(eks, "cm-only", "CONFIG_MAP")
    with pytest.raises(ClientError) as exc:
        eks.create_access_entry(clusterName="cm-only", principalArn=f"arn:aws:iam::{account}:role/x")
    assert _code(exc) == ("InvalidRequestException", 400)
    assert exc.value.response["Error"]["Message"] == (
        "The cluster's authentication mode must be set to one of [API, API_AND_CONFIG_MAP] to perform this operation."
    )
    with pytest.raises(ClientError) as exc:
        eks.list_access_entries(clusterName="cm-only")
    assert _code(exc) == ("InvalidRequestException", 400)


def test_entry_lifecycle_and_errors(eks: Any, account: str) -> None:
    _cluster(eks, "life", "API_AND_CONFIG_MAP")
    role = f"arn:aws:iam::{account}:role/team/platform/oncall"  # a path: '/' in the URL label
    created = eks.create_access_entry(
        clusterName="life", principalArn=role, kubernetesGroups=["viewers"], tags={"grant": "g-1"}
    )["accessEntry"]
    assert created["principalArn"] == role and created["type"] == "STANDARD"
    assert created["username"] == f"arn:aws:sts::{account}:assumed-role/oncall/{{{{SessionName}}}}"
    assert created["accessEntryArn"].startswith(
        f"arn:aws:eks:us-east-1:{account}:access-entry/life/role/{account}/oncall/"
    )

    described = eks.describe_access_entry(clusterName="life", principalArn=role)["accessEntry"]
    assert described["kubernetesGroups"] == ["viewers"] and described["tags"] == {"grant": "g-1"}

    arn = created["accessEntryArn"]
    eks.tag_resource(resourceArn=arn, tags={"owner": "platform"})
    eks.untag_resource(resourceArn=arn, tagKeys=["grant"])
    assert eks.list_tags_for_resource(resourceArn=arn)["tags"] == {"owner": "platform"}
    assert eks.describe_access_entry(clusterName="life", principalArn=role)["accessEntry"]["tags"] == {
        "owner": "platform"
    }

    with pytest.raises(ClientError) as exc:
        eks.create_access_entry(clusterName="life", principalArn=role)
    assert _code(exc) == ("ResourceInUseException", 409)

    updated = eks.update_access_entry(
        clusterName="life", principalArn=role, kubernetesGroups=["editors"], username="oncall"
    )
    assert updated["accessEntry"]["kubernetesGroups"] == ["editors"] and updated["accessEntry"]["username"] == "oncall"

    eks.delete_access_entry(clusterName="life", principalArn=role)
    for call in (eks.describe_access_entry, eks.delete_access_entry):
        with pytest.raises(ClientError) as exc:
            call(clusterName="life", principalArn=role)
        assert _code(exc) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        eks.list_access_entries(clusterName="no-such-cluster")
    assert _code(exc) == ("ResourceNotFoundException", 404)


def test_invalid_principals_and_types(eks: Any, account: str) -> None:
    _cluster(eks, "checks", "API")
    bad = [
        {"principalArn": f"arn:aws:sts::{account}:assumed-role/oncall/session"},  # session ARN refused
        {"principalArn": "not-an-arn"},
        {"principalArn": f"arn:aws:iam::{account}:role/node", "type": "EC2_LINUX", "kubernetesGroups": ["g"]},
        {"principalArn": f"arn:aws:iam::{account}:role/x", "type": "NOT_A_TYPE"},
        {"principalArn": f"arn:aws:iam::{account}:role/x", "kubernetesGroups": ["system:masters"]},
    ]
    for kwargs in bad:
        with pytest.raises(ClientError) as exc:
            eks.create_access_entry(clusterName="checks", **kwargs)
        assert _code(exc) == ("InvalidParameterException", 400), kwargs
    node = f"arn:aws:iam::{account}:role/node"
    entry = eks.create_access_entry(clusterName="checks", principalArn=node, type="EC2_LINUX")["accessEntry"]
    assert entry["kubernetesGroups"] == ["system:nodes"] and entry["username"] == "system:node:{{EC2PrivateDNSName}}"
    with pytest.raises(ClientError) as exc:
        eks.associate_access_policy(
            clusterName="checks", principalArn=node, policyArn=VIEW, accessScope={"type": "cluster"}
        )
    assert _code(exc) == ("InvalidRequestException", 400)


def test_policies_scopes_and_disassociate(eks: Any, account: str) -> None:
    _cluster(eks, "pol", "API")
    role = f"arn:aws:iam::{account}:role/dev"
    eks.create_access_entry(clusterName="pol", principalArn=role)
    for scope in ({"type": "namespace"}, {"type": "cluster", "namespaces": ["a"]}, {"type": "bogus"}):
        with pytest.raises(ClientError) as exc:
            eks.associate_access_policy(clusterName="pol", principalArn=role, policyArn=VIEW, accessScope=scope)
        assert _code(exc) == ("InvalidParameterException", 400), scope
    with pytest.raises(ClientError) as exc:
        eks.associate_access_policy(
            clusterName="pol", principalArn=role, policyArn=VIEW + "Nope", accessScope={"type": "cluster"}
        )
    assert _code(exc) == ("InvalidParameterException", 400)
    out = eks.associate_access_policy(
        clusterName="pol",
        principalArn=role,
        policyArn=VIEW,
        accessScope={"type": "namespace", "namespaces": ["a", "b"]},
    )
    assert out["clusterName"] == "pol" and out["principalArn"] == role
    assert out["associatedAccessPolicy"]["accessScope"] == {"type": "namespace", "namespaces": ["a", "b"]}
    eks.associate_access_policy(clusterName="pol", principalArn=role, policyArn=ADMIN, accessScope={"type": "cluster"})
    listed = eks.list_associated_access_policies(clusterName="pol", principalArn=role)["associatedAccessPolicies"]
    assert sorted(p["policyArn"] for p in listed) == sorted([VIEW, ADMIN])
    assert eks.list_access_entries(clusterName="pol", associatedPolicyArn=ADMIN)["accessEntries"] == [role]
    eks.disassociate_access_policy(clusterName="pol", principalArn=role, policyArn=ADMIN)
    with pytest.raises(ClientError) as exc:
        eks.disassociate_access_policy(clusterName="pol", principalArn=role, policyArn=ADMIN)
    assert _code(exc) == ("ResourceNotFoundException", 404)
    listed = eks.list_associated_access_policies(clusterName="pol", principalArn=role)["associatedAccessPolicies"]
    assert [p["policyArn"] for p in listed] == [VIEW]


def test_paginators(eks: Any, account: str) -> None:
    _cluster(eks, "pages", "API")
    roles = [f"arn:aws:iam::{account}:role/r{i:02d}" for i in range(7)]
    for role in roles:
        eks.create_access_entry(clusterName="pages", principalArn=role)
    pages = list(
        eks.get_paginator("list_access_entries").paginate(clusterName="pages", PaginationConfig={"PageSize": 3})
    )
    assert [len(p["accessEntries"]) for p in pages] == [3, 3, 1]
    assert [a for p in pages for a in p["accessEntries"]] == sorted(roles)

    names = ["AmazonEKSClusterAdminPolicy", "AmazonEKSAdminPolicy", "AmazonEKSEditPolicy", "AmazonEKSViewPolicy"]
    names.append("AmazonEKSAdminViewPolicy")
    pages = list(eks.get_paginator("list_access_policies").paginate(PaginationConfig={"PageSize": 4}))
    assert len(pages) > 1
    listed = {p["name"]: p["arn"] for page in pages for p in page["accessPolicies"]}
    for name in names:
        assert listed[name] == f"arn:aws:eks::aws:cluster-access-policy/{name}"

    for policy in (VIEW, ADMIN):
        eks.associate_access_policy(
            clusterName="pages", principalArn=roles[0], policyArn=policy, accessScope={"type": "cluster"}
        )
    pages = list(
        eks.get_paginator("list_associated_access_policies").paginate(
            clusterName="pages", principalArn=roles[0], PaginationConfig={"PageSize": 1}
        )
    )
    assert sum(len(p["associatedAccessPolicies"]) for p in pages) == 2 and len(pages) == 2


def test_creator_gets_admin_entry_when_bootstrapped(sb: Sandbox, account: str) -> None:
    # The member role is the creator here; AWS bootstraps its admin access entry.
    eks = sb.account_session(account).client("eks", endpoint_url=sb.endpoint)
    _cluster(eks, "boot", "API", bootstrap=True)
    creator = f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
    assert eks.list_access_entries(clusterName="boot")["accessEntries"] == [creator]
    policies = eks.list_associated_access_policies(clusterName="boot", principalArn=creator)["associatedAccessPolicies"]
    assert [p["policyArn"] for p in policies] == [ADMIN]


def test_state_is_per_account_and_region(sb: Sandbox, eks: Any, account: str) -> None:
    _cluster(eks, "regional", "API")
    other_region = sb.account_session(account, "eu-west-1").client("eks", endpoint_url=sb.endpoint)
    with pytest.raises(ClientError) as exc:
        other_region.list_access_entries(clusterName="regional")
    assert _code(exc) == ("ResourceNotFoundException", 404)
    assert "regional" not in sb.client("eks").list_clusters()["clusters"]  # the management account sees none


def test_concurrent_creates_one_wins(eks: Any, account: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _cluster(eks, "race", "API")
    role = f"arn:aws:iam::{account}:role/racer"

    def create(_: int) -> str:
        try:
            eks.create_access_entry(clusterName="race", principalArn=role)
            return "created"
        except ClientError as err:
            return err.response["Error"]["Code"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = sorted(pool.map(create, range(6)))
    assert outcomes == ["ResourceInUseException"] * 5 + ["created"]
