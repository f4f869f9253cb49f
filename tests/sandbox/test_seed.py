"""The default seed, read back through the public APIs only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from connector.sandbox import Sandbox, SeedInfo, SeedSpec
from tests.sandbox.sandbox_helpers import connector_session, session_from

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox.start(seed=SeedSpec()) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def info(sb: Sandbox) -> SeedInfo:
    return sb.seed_info


@pytest.fixture(scope="module")
def orgs(sb: Sandbox, info: SeedInfo) -> Any:
    """Organizations as the connector sees it: through the management role."""
    creds = (
        connector_session(sb)
        .client("sts", endpoint_url=sb.endpoint)
        .assume_role(RoleArn=info.management_role_arn, RoleSessionName="sync", ExternalId=info.external_id)
    )["Credentials"]
    return session_from(creds).client("organizations", endpoint_url=sb.endpoint)


def test_env_exports_connector_identity(sb: Sandbox, info: SeedInfo) -> None:
    env = sb.env()
    assert env["AWS_ENDPOINT_URL"] == sb.endpoint and env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"] and env["AWS_SESSION_TOKEN"]
    assert sb.env("eu-west-1")["AWS_REGION"] == "eu-west-1"


def test_organization_tree(orgs: Any, info: SeedInfo) -> None:
    org = orgs.describe_organization()["Organization"]
    assert org["Id"] == info.organization_id and org["MasterAccountId"] == info.management_account_id
    assert orgs.list_roots()["Roots"][0]["Id"] == info.root_id

    def children(parent: str) -> dict[str, str]:
        return {
            ou["Name"]: ou["Id"]
            for page in orgs.get_paginator("list_organizational_units_for_parent").paginate(ParentId=parent)
            for ou in page["OrganizationalUnits"]
        }

    top = children(info.root_id)
    assert set(top) == {"Workloads", "Security", "Suspended"}
    assert set(children(top["Workloads"])) == {"Prod", "Dev"}  # two levels deep
    assert info.ou_ids["Root/Workloads/Prod"] == children(top["Workloads"])["Prod"]


def test_accounts_states_tags_and_parents(orgs: Any, info: SeedInfo) -> None:
    accounts = [a for page in orgs.get_paginator("list_accounts").paginate() for a in page["Accounts"]]
    assert len(accounts) == len(info.accounts) == 13  # management + 12 members
    states = {a["Id"]: a["State"] for a in accounts}
    suspended = [a for a in info.accounts if a.state == "SUSPENDED"]
    assert len(suspended) == 1 and states[suspended[0].id] == "SUSPENDED"
    assert sum(1 for s in states.values() if s == "ACTIVE") == 12
    tooling = info.account("security-tooling")
    tags = {t["Key"]: t["Value"] for t in orgs.list_tags_for_resource(ResourceId=tooling.id)["Tags"]}
    assert tags["owner"] == "security"
    for account in info.accounts[1:]:
        parent = orgs.list_parents(ChildId=account.id)["Parents"][0]["Id"]
        assert parent == info.ou_ids[account.ou_path]


def test_roles(sb: Sandbox, info: SeedInfo) -> None:
    mgmt_role = sb.client("iam").get_role(RoleName="ConnectorManagementRole")["Role"]
    trust = mgmt_role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    statement = trust["Statement"][0]
    assert statement["Principal"] == {"AWS": info.connector_role_arn}
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": info.connector_id}}
    missing = info.account_without_member_role
    for account in info.accounts[1:]:
        if account.state == "SUSPENDED":
            continue  # closed accounts' roles cannot be assumed (see test_sts_trust)
        iam = sb.account_session(account.id).client("iam", endpoint_url=sb.endpoint)
        names = {r["RoleName"] for r in iam.list_roles()["Roles"]}
        assert (info.member_role_name in names) == (account.id != missing), account


def test_clusters(sb: Sandbox, info: SeedInfo) -> None:
    assert {c.region for c in info.clusters} >= {"us-east-1", "eu-west-1"}
    assert {c.mode for c in info.clusters} == {"API", "API_AND_CONFIG_MAP", "CONFIG_MAP"}
    assert len({c.account for c in info.clusters}) >= 3
    for cluster in info.clusters:
        eks = sb.account_session(cluster.account, cluster.region).client("eks", endpoint_url=sb.endpoint)
        assert cluster.name in eks.list_clusters()["clusters"]
        described = eks.describe_cluster(name=cluster.name)["cluster"]
        assert described["accessConfig"]["authenticationMode"] == cluster.mode
        if cluster.mode != "CONFIG_MAP":
            assert eks.list_access_entries(clusterName=cluster.name)["accessEntries"] == sorted(cluster.access_entries)
            scopes = [
                p["accessScope"]["type"]
                for arn in cluster.access_entries
                for p in eks.list_associated_access_policies(clusterName=cluster.name, principalArn=arn)[
                    "associatedAccessPolicies"
                ]
            ]
            assert scopes == ["cluster", "namespace"]


def test_identity_center(sb: Sandbox, info: SeedInfo) -> None:
    ic = info.identity_center
    assert ic is not None
    sso = sb.client("sso-admin")
    assert sso.list_instances()["Instances"][0]["InstanceArn"] == ic.instance_arn
    assert set(sso.list_permission_sets(InstanceArn=ic.instance_arn)["PermissionSets"]) == set(
        ic.permission_sets.values()
    )
    managed = sso.list_managed_policies_in_permission_set(
        InstanceArn=ic.instance_arn, PermissionSetArn=ic.permission_sets["ReadOnly"]
    )["AttachedManagedPolicies"]
    assert [m["Arn"] for m in managed] == ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    inline = sso.get_inline_policy_for_permission_set(
        InstanceArn=ic.instance_arn, PermissionSetArn=ic.permission_sets["EksClusterAdmin"]
    )["InlinePolicy"]
    assert "eks:DescribeCluster" in inline
    store = sb.client("identitystore")
    users = store.list_users(IdentityStoreId=ic.identity_store_id)["Users"]
    assert {u["UserName"] for u in users} == set(ic.users)
    groups = store.list_groups(IdentityStoreId=ic.identity_store_id)["Groups"]
    assert {g["DisplayName"] for g in groups} == set(ic.groups)
    members = store.list_group_memberships(IdentityStoreId=ic.identity_store_id, GroupId=ic.groups["platform-admins"])
    assert members["GroupMemberships"]


def test_second_sandbox_is_refused_while_one_runs(sb: Sandbox) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        Sandbox.start(seed=None)
