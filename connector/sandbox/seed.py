"""Seed the sandbox: an AWS Organization, the connector's roles, EKS clusters with access entries, and an
Identity Center instance.

Bulk data (accounts, roles, clusters, entries) is written straight into moto's backends through moto's own
backend methods, so it is fast (1,000 accounts in seconds) yet indistinguishable through the API. The small
Identity Center part goes over HTTP with the admin credentials.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from unittest import mock

import moto.organizations.utils as org_utils
from moto.eks.models import Cluster, eks_backends
from moto.iam.models import iam_backends
from moto.moto_api._internal import mock_random
from moto.organizations.models import organizations_backends
from moto.ssoadmin.models import ssoadmin_backends
from moto.utilities.utils import get_partition

from connector.sandbox import eks_access, sso_provisioning
from connector.sandbox.databases import DatabaseInfo, SeedDatabase, endpoint_map, seed_databases
from connector.sandbox.identity import PARTITION
from connector.sandbox.seed_resources import seed_resources

ORG_REGION = "us-east-1"
# Each partition's regions for a seed (the first is its home: Organizations, IAM, STS, Identity Center).
PARTITION_REGIONS = {
    "aws": ("us-east-1", "eu-west-1"),
    "aws-us-gov": ("us-gov-west-1", "us-gov-east-1"),
    "aws-cn": ("cn-north-1", "cn-northwest-1"),
}
ADMIN_ROLE_NAME = "OrganizationAccountAccessRole"  # Organizations makes it in every account it creates
MANAGEMENT_ACCOUNT_ID = "123456789012"  # moto's default account: unknown (admin) keys act in it
ClientFactory = Callable[[str, str], Any]  # (service, region) -> boto3 client with admin credentials


@dataclass(frozen=True)
class SeedSpec:
    """What to seed. The defaults make a small, varied organisation for tests and the demo."""

    accounts: int = 12  # member accounts besides the management account (>= 4)
    regions: tuple[str, ...] = ("us-east-1", "eu-west-1")
    cluster_accounts: int | None = 4  # workload accounts that get clusters (None = every active one)
    clusters_per_region: int = 1  # clusters per (account, region) for those accounts
    entries_per_cluster: int = 2  # pre-existing access entries on clusters whose mode allows them
    modes: tuple[str, ...] = ("API", "API_AND_CONFIG_MAP", "CONFIG_MAP")  # cycled over the clusters
    connector_id: str = "sandbox-connector-0001"  # also the management role's sts:ExternalId
    connector_role_name: str = "ConnectorTaskRole"
    management_role_name: str = "ConnectorManagementRole"
    member_role_name: str = "ConnectorMemberRole"
    account_without_member_role: int | None = 3  # index of a member account lacking the member role
    suspended_accounts: int = 1
    identity_center: bool = True
    identity_center_region: str = "us-east-1"
    users: int = 4
    groups: int = 2
    # Tagged RDS / Aurora / Redshift databases and their secrets in workload accounts (none by default, so the
    # bench and demo figures stay as they were unless asked for).
    databases: tuple[SeedDatabase, ...] = ()
    # The partition the organisation lives in (aws, aws-us-gov, aws-cn): every ARN, region and backend follows.
    # Regions and the Identity Center region left at their defaults become the partition's.
    partition: str = PARTITION
    # S3 / SNS / SQS in the workload accounts, and Resource Explorer (connector.sandbox.seed_resources).
    buckets_per_account: int = 0
    topics_per_region: int = 0
    queues_per_region: int = 0
    resource_explorer: bool = False
    resource_explorer_without_index: tuple[str, ...] = ()  # regions whose member accounts got no index
    # Extra permission sets ("Team00"...), each provisioned to this share of the active member accounts (spread so
    # every account gets about the same number) with one group assignment there: the bench's Identity Center.
    extra_permission_sets: int = 0
    permission_set_share: float = 0.1

    def __post_init__(self) -> None:
        if self.partition not in PARTITION_REGIONS:
            raise ValueError(f"SeedSpec.partition must be one of {sorted(PARTITION_REGIONS)}, got {self.partition!r}")
        if self.partition != PARTITION:
            own = PARTITION_REGIONS[self.partition]
            if self.regions == PARTITION_REGIONS[PARTITION]:
                object.__setattr__(self, "regions", own)
            if self.identity_center_region == ORG_REGION:
                object.__setattr__(self, "identity_center_region", own[0])
        wrong = [r for r in (*self.regions, self.identity_center_region) if get_partition(r) != self.partition]
        if wrong:
            raise ValueError(f"SeedSpec regions {wrong} are not in partition {self.partition}")
        if self.accounts < 4:
            raise ValueError("SeedSpec.accounts must be >= 4 (security tooling, log archive, workloads, suspended)")
        if not self.regions:
            raise ValueError("SeedSpec.regions must name at least one region")
        bad = [m for m in self.modes if m not in eks_access.AUTH_MODES]
        if bad or not self.modes:
            raise ValueError(f"SeedSpec.modes must be non-empty and within {eks_access.AUTH_MODES}, got {bad}")
        if not 0 <= self.suspended_accounts <= self.accounts - 3:
            raise ValueError("SeedSpec.suspended_accounts must leave at least 3 active member accounts")
        if self.account_without_member_role is not None and not 2 <= self.account_without_member_role < (
            self.accounts - self.suspended_accounts
        ):
            raise ValueError("SeedSpec.account_without_member_role must index an active workload account (>= 2)")


@dataclass(frozen=True)
class AccountInfo:
    id: str
    name: str
    email: str
    ou_path: str  # e.g. "Root/Workloads/Prod"
    state: str  # ACTIVE | SUSPENDED
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterInfo:
    account: str
    region: str
    name: str
    arn: str
    mode: str
    access_entries: tuple[str, ...] = ()  # principal ARNs of the pre-existing entries


@dataclass(frozen=True)
class IdentityCenterInfo:
    region: str
    instance_arn: str
    identity_store_id: str
    users: dict[str, str]  # user name -> user id
    groups: dict[str, str]  # display name -> group id
    permission_sets: dict[str, str]  # name -> permission set ARN


@dataclass(frozen=True)
class SeedInfo:
    organization_id: str
    root_id: str
    management_account_id: str
    ou_ids: dict[str, str]  # OU path -> OU id, e.g. "Root/Workloads/Prod"
    accounts: list[AccountInfo]  # the management account first
    connector_id: str
    external_id: str
    connector_account_id: str
    connector_role_arn: str
    management_role_arn: str
    member_role_name: str
    account_without_member_role: str | None
    clusters: list[ClusterInfo]
    identity_center: IdentityCenterInfo | None
    seconds: float
    databases: list[DatabaseInfo] = field(default_factory=list)
    database_endpoints: str = ""  # CONNECTOR_DATABASE_ENDPOINTS leading the seeded endpoints to local servers
    partition: str = PARTITION
    home_region: str = ORG_REGION  # where the organisation's global services answer

    def account(self, name: str) -> AccountInfo:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(f"no seeded account named {name!r}")

    def member_role_arn(self, account_id: str) -> str:
        return f"arn:{self.partition}:iam::{account_id}:role/{self.member_role_name}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _trust(principal: dict[str, Any], external_id: str | None = None) -> str:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    if external_id is not None:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _create_role(
    account: str, name: str, trust: str, max_session: int, description: str, partition: str = PARTITION
) -> str:
    role = iam_backends[account][partition].create_role(
        role_name=name,
        assume_role_policy_document=trust,
        path="/",
        permissions_boundary=None,
        description=description,
        tags=[{"Key": "managed-by", "Value": "access-connector"}],
        max_session_duration=str(max_session),
    )
    return str(role.arn)


def _layout(spec: SeedSpec) -> list[tuple[str, str, dict[str, str]]]:
    """(name, OU path, tags) for each member account, in creation order."""
    layout: list[tuple[str, str, dict[str, str]]] = [
        ("security-tooling", "Root/Security", {"owner": "security", "purpose": "connector"}),
        ("log-archive", "Root/Security", {"owner": "security"}),
    ]
    workloads = spec.accounts - 2 - spec.suspended_accounts
    for i in range(workloads):
        env = "prod" if i % 2 == 0 else "dev"
        tags = {"owner": f"team-{i % 5}", "environment": env} if i % 3 != 2 else {}
        layout.append((f"{env}-{i:04d}", f"Root/Workloads/{env.capitalize()}", tags))
    for i in range(spec.suspended_accounts):
        layout.append((f"closed-{i:04d}", "Root/Suspended", {"owner": "finance"}))
    return layout


def seed_sandbox(spec: SeedSpec, client: ClientFactory) -> SeedInfo:
    started = time.perf_counter()
    management = MANAGEMENT_ACCOUNT_ID
    partition, home = spec.partition, PARTITION_REGIONS[spec.partition][0]
    orgs = organizations_backends[management][partition]
    org = orgs.create_organization(region=home, FeatureSet="ALL")["Organization"]
    root_id = orgs.list_roots()["Roots"][0]["Id"]
    management_account = orgs.get_account_by_id(management)
    management_account.name = "management"

    ou_ids = {"Root": root_id}
    for path in ("Root/Workloads", "Root/Workloads/Prod", "Root/Workloads/Dev", "Root/Security", "Root/Suspended"):
        parent, name = path.rsplit("/", 1)
        ou = orgs.create_organizational_unit(Name=name, ParentId=ou_ids[parent])
        ou_ids[path] = ou["OrganizationalUnit"]["Id"]

    # Deterministic account ids: moto draws them at random; patch its generator for the seed's accounts.
    ids = iter(f"{210000000000 + i:012d}" for i in range(spec.accounts))
    accounts = [AccountInfo(management, "management", str(management_account.email), "Root", "ACTIVE")]
    with mock.patch.object(org_utils, "make_random_account_id", lambda: next(ids)):
        for name, ou_path, tags in _layout(spec):
            email = f"{name}@example.com"
            tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
            status = orgs.create_account(AccountName=name, Email=email, Tags=tag_list)["CreateAccountStatus"]
            account = orgs.get_account_by_id(status["AccountId"])
            account.parent_id = ou_ids[ou_path]
            if ou_path == "Root/Suspended":
                account.close()
            accounts.append(AccountInfo(account.id, name, email, ou_path, account.state, tags))

    if partition != PARTITION:  # moto makes each account's admin role in the commercial partition only
        for account_info in accounts[1:]:
            _create_role(
                account_info.id,
                ADMIN_ROLE_NAME,
                _trust({"AWS": f"arn:{partition}:iam::{management}:root"}),
                3600,
                "Organizations' administrator role in a new account",
                partition,
            )
    connector_account = accounts[1].id
    connector_role = _create_role(
        connector_account,
        spec.connector_role_name,
        # ECS would vend this role's credentials; in the sandbox the admin (management root) assumes it.
        _trust({"Service": "ecs-tasks.amazonaws.com", "AWS": f"arn:{partition}:iam::{management}:root"}),
        43200,
        "Connector task role (ECS task role stand-in)",
        partition,
    )
    management_role = _create_role(
        management,
        spec.management_role_name,
        _trust({"AWS": connector_role}, external_id=spec.connector_id),
        3600,
        "Read the organisation; assume member roles",
        partition,
    )
    members = accounts[1:]
    without_role = None
    if spec.account_without_member_role is not None:
        without_role = members[spec.account_without_member_role].id
    for account_info in members:
        if account_info.id != without_role:
            _create_role(
                account_info.id,
                spec.member_role_name,
                _trust({"AWS": management_role}),
                3600,
                "Connector member-account role",
                partition,
            )

    workloads = [a for a in members if a.ou_path.startswith("Root/Workloads")]
    # moto draws each cluster's 1,400-character CA blob one random.choice at a time; base64 is as good.
    original = mock_random.get_random_string

    def fast_random_string(length: int = 20, *args: Any, **kwargs: Any) -> str:
        if length >= 1000:
            return base64.b64encode(os.urandom(length))[:length].decode()
        return str(original(length, *args, **kwargs))

    with mock.patch.object(mock_random, "get_random_string", fast_random_string):
        clusters = _seed_clusters(spec, workloads)
    seed_resources(spec, workloads)
    active_workloads = [a.id for a in workloads if a.state == "ACTIVE" and a.id != without_role]
    databases = seed_databases(spec.databases, active_workloads, spec.connector_id, _in_account(client))
    identity = _seed_identity_center(spec, client, accounts) if spec.identity_center else None
    return SeedInfo(
        organization_id=org["Id"],
        root_id=root_id,
        management_account_id=management,
        ou_ids=ou_ids,
        accounts=accounts,
        connector_id=spec.connector_id,
        external_id=spec.connector_id,
        connector_account_id=connector_account,
        connector_role_arn=connector_role,
        management_role_arn=management_role,
        member_role_name=spec.member_role_name,
        account_without_member_role=without_role,
        clusters=clusters,
        identity_center=identity,
        seconds=round(time.perf_counter() - started, 3),
        databases=databases,
        database_endpoints=endpoint_map(databases),
        partition=partition,
        home_region=home,
    )


def _in_account(client: ClientFactory) -> Callable[[str, str, str], Any]:
    """Admin clients acting in a member account (moto's x-moto-account-id header)."""

    def make(service: str, region: str, account: str) -> Any:
        made = client(service, region)

        def header(params: dict[str, Any], **_: Any) -> None:
            params["headers"]["x-moto-account-id"] = account

        made.meta.events.register("before-call.*.*", header)
        return made

    return make


_VPC = {"subnetIds": ["subnet-0a1b2c3d"], "securityGroupIds": ["sg-0a1b2c3d"], "endpointPublicAccess": True}
_ENTRY_POLICIES = (
    ("AmazonEKSClusterAdminPolicy", {"type": "cluster"}),
    ("AmazonEKSViewPolicy", {"type": "namespace", "namespaces": ["default", "monitoring"]}),
    ("AmazonEKSEditPolicy", {"type": "namespace", "namespaces": ["apps"]}),
    ("AmazonEKSAdminViewPolicy", {"type": "cluster"}),
)


def _seed_clusters(spec: SeedSpec, workload_accounts: list[AccountInfo]) -> list[ClusterInfo]:
    chosen = workload_accounts if spec.cluster_accounts is None else workload_accounts[: spec.cluster_accounts]
    clusters: list[ClusterInfo] = []
    counter = 0
    for account in chosen:
        for region in spec.regions:
            backend = eks_backends[account.id][region]
            for c in range(spec.clusters_per_region):
                mode = spec.modes[counter % len(spec.modes)]
                counter += 1
                name = f"{account.name}-{region}-{c}"
                # What EKSBackend.create_cluster does, minus validate_role_arn (a new boto3 Session per call).
                cluster = Cluster(
                    name=name,
                    role_arn=f"arn:{spec.partition}:iam::{account.id}:role/eks-cluster-role",
                    resources_vpc_config=dict(_VPC),
                    account_id=account.id,
                    region_name=region,
                    aws_partition=spec.partition,
                    version="1.31",
                    tags={"environment": account.tags.get("environment", "dev")},
                )
                backend.clusters[name] = cluster
                backend.cluster_count += 1
                eks_access.set_access_config(cluster, mode, False)
                entries: list[str] = []
                if mode != "CONFIG_MAP":
                    for e in range(spec.entries_per_cluster):
                        principal = f"arn:{spec.partition}:iam::{account.id}:role/team-{e}-access"
                        eks_access.create_access_entry(
                            backend,
                            name,
                            principal,
                            kubernetes_groups=[f"team-{e}"] if e % 2 else None,
                            tags={"owner": f"team-{e}"},
                        )
                        policy, scope = _ENTRY_POLICIES[e % len(_ENTRY_POLICIES)]
                        eks_access.associate_access_policy(
                            backend, name, principal, eks_access.policy_arn(spec.partition, policy), scope
                        )
                        entries.append(principal)
                clusters.append(ClusterInfo(account.id, region, name, str(cluster.arn), mode, tuple(entries)))
    return clusters


def _seed_identity_center(spec: SeedSpec, client: ClientFactory, accounts: list[AccountInfo]) -> IdentityCenterInfo:
    region = spec.identity_center_region
    sso = client("sso-admin", region)
    store = client("identitystore", region)
    instance = sso.list_instances()["Instances"][0]
    instance_arn, store_id = instance["InstanceArn"], instance["IdentityStoreId"]
    users: dict[str, str] = {}
    for i in range(spec.users):
        user_name = f"user{i}@example.com"
        users[user_name] = store.create_user(
            IdentityStoreId=store_id,
            UserName=user_name,
            DisplayName=f"User {i}",
            Name={"GivenName": "User", "FamilyName": str(i)},
            Emails=[{"Value": user_name, "Type": "work", "Primary": True}],
        )["UserId"]
    groups: dict[str, str] = {}
    user_ids = list(users.values())
    for g in range(spec.groups):
        display = ["platform-admins", "developers", "auditors", "oncall"][g % 4] + ("" if g < 4 else f"-{g}")
        group_id = store.create_group(IdentityStoreId=store_id, DisplayName=display, Description=display)["GroupId"]
        groups[display] = group_id
        for user_id in user_ids[g :: max(spec.groups, 1)]:
            store.create_group_membership(IdentityStoreId=store_id, GroupId=group_id, MemberId={"UserId": user_id})
    permission_sets: dict[str, str] = {}
    read_only = sso.create_permission_set(
        InstanceArn=instance_arn, Name="ReadOnly", Description="Read-only access", SessionDuration="PT1H"
    )["PermissionSet"]["PermissionSetArn"]
    sso.attach_managed_policy_to_permission_set(
        InstanceArn=instance_arn,
        PermissionSetArn=read_only,
        ManagedPolicyArn=f"arn:{spec.partition}:iam::aws:policy/ReadOnlyAccess",
    )
    permission_sets["ReadOnly"] = read_only
    eks_admin = sso.create_permission_set(
        InstanceArn=instance_arn, Name="EksClusterAdmin", Description="Describe EKS clusters", SessionDuration="PT4H"
    )["PermissionSet"]["PermissionSetArn"]
    inline = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["eks:DescribeCluster", "eks:ListClusters"], "Resource": "*"}],
    }
    sso.put_inline_policy_to_permission_set(
        InstanceArn=instance_arn, PermissionSetArn=eks_admin, InlinePolicy=json.dumps(inline)
    )
    permission_sets["EksClusterAdmin"] = eks_admin
    if spec.extra_permission_sets:
        members = [a.id for a in accounts[1:] if a.state == "ACTIVE"]
        permission_sets |= _seed_provisioned_sets(spec, region, instance_arn, members, list(groups.values()))
    return IdentityCenterInfo(region, instance_arn, store_id, users, groups, permission_sets)


def _seed_provisioned_sets(
    spec: SeedSpec, region: str, instance_arn: str, members: list[str], groups: list[str]
) -> dict[str, str]:
    """Straight into moto's backend (thousands of assignments in well under a second), provisioned as AWS would."""
    backend = ssoadmin_backends[MANAGEMENT_ACCOUNT_ID][region]
    per_set = max(1, round(len(members) * spec.permission_set_share))
    made: dict[str, str] = {}
    for n in range(spec.extra_permission_sets):
        name = f"Team{n:02d}"
        ps_arn = backend.create_permission_set(name, f"team {n}", instance_arn, "PT1H", "", [])["PermissionSetArn"]
        start = n * per_set
        targets = [members[(start + i) % len(members)] for i in range(per_set)]
        for account in targets:
            backend.create_account_assignment(
                instance_arn, account, "AWS_ACCOUNT", ps_arn, "GROUP", groups[n % len(groups)]
            )
        sso_provisioning.provision(MANAGEMENT_ACCOUNT_ID, region, instance_arn, ps_arn, targets)
        made[name] = ps_arn
    return made
