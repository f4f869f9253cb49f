"""Guardrail bypass attempts against the shipped agent: every kind, the default policy and customer policies.

Each attempt is a grant a hostile (or mistaken) control plane could send through Admin.EnqueueJob: an admin
permission set by ARN or under a harmless name, EKS cluster-admin policies, system:masters, `*` on `*` under
a harmless ClusterRole name, an aggregated role that escalates, a decoy `cluster` key, settings that try to
loosen the policy, expiries that are missing, too long, in the past or before 1970. Three `connector run`
processes (sweeper on) serve them, one per policy: the default policy (no file), a customer policy restricting
clusters, namespaces, permission sets, accounts, access policies, roles, groups, usernames and resources, and
one restricting organizational units.

Asserted per attempt: the job ends FAILED with a non-retryable GUARDRAIL_DENIED naming the expected rule (or
INVALID_JOB / INVALID_SETTINGS naming the field), and nothing changed anywhere a grant of any kind lands (EKS
access entries and associations, Identity Center assignments and records, IAM inline policies, RoleBindings
and ClusterRoleBindings, aws-auth entries, the Lambda function's invocations and grants, SSM records). Then a
control grant per kind and policy must SUCCEED and show up in the same snapshot, so the snapshot cannot miss
an effect and the policies are not refusing everything; the controls are revoked again.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import struct_pb2

from connector.v1 import admin_pb2, connector_pb2
from tests.security import world
from tests.security.shipped import Agent, ControlPlane, wait_all
from tests.security.world import World

pytestmark = pytest.mark.timeout(300)

HOUR = 3600.0
REGION = world.REGION
TOKENS = {
    "hostile-default": "tok-bypass-default-5e0c2a9d71f3",
    "hostile-customer": "tok-bypass-customer-8b14e6f02ad7",
    "hostile-org": "tok-bypass-org-3fa9d8c0e5b1",
}
GUARDRAIL = re.compile(r"^guardrail '(\w+)'")

Expiry = tuple[Any, ...]  # ("in", seconds) | ("none",) | ("at", seconds, nanos)
IN_HOUR: Expiry = ("in", HOUR)


@dataclass(frozen=True)
class Attempt:
    name: str
    kind: str  # eks | ic | iam | ec2 | rbac | aws_auth | lambda | noop
    expect: str  # a guardrail rule, or "CODE:what the message names"
    target: dict[str, Any]
    principal: str = ""  # derived from the name when empty
    policy: str = "default"  # default | customer | ou
    settings: dict[str, Any] = field(default_factory=dict)  # merged over the kind's well-formed settings
    expiry: Expiry = IN_HOUR
    api: str = "prod"  # the Kubernetes API the settings reach (rbac, aws_auth)

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9-]+", "-", self.name.lower()).strip("-")[:56]

    @property
    def grant_id(self) -> str:
        return f"{self.policy}-{self.slug}"[:100]


KIND_TYPES = {
    "eks": "aws_organization",
    "ic": "aws_organization",
    "iam": "aws_organization",
    "ec2": "aws_organization",
    "rbac": "kubernetes",
    "aws_auth": "eks_aws_auth",
    "lambda": "lambda_custom",
    "noop": "noop",
}


def customer_policy(w: World) -> dict[str, Any]:
    return {
        "version": 1,
        "max_duration": "4h",
        "accounts": [w.prod_account, w.dev_account, w.info.connector_account_id],
        "clusters": ["prod-*", w.prod.url],
        "access_policies": ["AmazonEKSViewPolicy", "AmazonEKSEditPolicy"],
        "namespaces": ["team-*"],
        "permission_sets": ["ReadOnly*"],
        # The hostile roles' names are allowed: only what their rules give can stop them.
        "kubernetes_roles": ["view", "edit", "harmless-*", "team-*"],
        "kubernetes_groups": ["dev-*"],
        "kubernetes_usernames": ["apono:*", "team-*", "access-connector:*"],
        "resources": ["arn:aws:sqs:*:*:team-*", "lambda-r-*"],
        "allow_cluster_admin": False,
    }


def org_policy(w: World) -> dict[str, Any]:
    """Cluster-wide grants allowed (no namespaces rule, so aws-auth mappings can pass), but only in the Prod
    OU, on the allowed clusters, into dev-* groups."""
    return {
        "version": 1,
        "max_duration": "12h",
        "organizational_units": [w.ou("Root/Workloads/Prod")],
        "clusters": ["prod-*", w.prod.url],
        "kubernetes_groups": ["dev-*"],
    }


# -- targets -----------------------------------------------------------------------------------------------
def eks(w: World, account: str | None = None, **over: Any) -> dict[str, Any]:
    account = account or w.prod_account
    return {
        "resource_type": "eks_cluster",
        "account_id": account,
        "region": REGION,
        "cluster": w.cluster(account) if account in (w.prod_account, w.dev_account) else "prod-elsewhere",
        "access_policies": ["AmazonEKSViewPolicy"],
        "scope": "namespace",
        "namespaces": ["team-a"],
    } | over


def ic(w: World, permission_set: str = "ReadOnly", account: str | None = None, **over: Any) -> dict[str, Any]:
    return {
        "resource_type": "identity_center_assignment",
        "account_id": account or w.prod_account,
        "permission_set": permission_set,
        "principal_type": "USER",
    } | over


def iam(w: World, account: str | None = None, **over: Any) -> dict[str, Any]:
    account = account or w.prod_account
    return {
        "resource_type": "iam_resource_access",
        "account_id": account,
        "role": world.ROLE,
        "resources": [f"arn:aws:sqs:{REGION}:{account}:team-queue"],
        "access_level": "read",
    } | over


def ec2(w: World, account: str | None = None, **over: Any) -> dict[str, Any]:
    account = account or w.prod_account
    return {
        "resource_type": "ec2_ssm_session",
        "account_id": account,
        "region": REGION,
        "role": world.ROLE,
        "instances": [w.instances[account]],
    } | over


def rbac(role: str = "view", **over: Any) -> dict[str, Any]:
    return {"scope": "namespace", "namespaces": ["team-a"], "role": role} | over


def aws_auth(*groups: str, **over: Any) -> dict[str, Any]:
    return {"groups": list(groups or ("dev-team",))} | over


def lam(**over: Any) -> dict[str, Any]:
    return {"resources": ["lambda-r-1"], "permission": "reader"} | over


def _expiry_attempts(w: World) -> list[Attempt]:
    """Every kind: no expiry under the default policy, beyond max_duration, in the past, before 1970."""
    good = {
        "eks": eks(w),
        "ic": ic(w),
        "iam": iam(w),
        "ec2": ec2(w),
        "rbac": rbac(),
        "aws_auth": aws_auth(),
        "lambda": lam(),
    }
    out = []
    for kind, target in good.items():
        out += [
            Attempt(f"{kind} without expiry", kind, "max_duration", target, expiry=("none",)),
            Attempt(f"{kind} for 13 hours", kind, "max_duration", target, expiry=("in", 13 * HOUR)),
            Attempt(f"{kind} expired a minute ago", kind, "INVALID_JOB:grant.expires_at", target, expiry=("in", -60)),
            Attempt(
                f"{kind} expiring before 1970", kind, "INVALID_JOB:grant.expires_at", target, expiry=("at", -1000, 0)
            ),
        ]
    out += [
        Attempt(
            "eks for 5h under a 4h policy", "eks", "max_duration", eks(w), policy="customer", expiry=("in", 5 * HOUR)
        ),
        Attempt(
            "lambda for 5h under a 4h policy",
            "lambda",
            "max_duration",
            lam(),
            policy="customer",
            expiry=("in", 5 * HOUR),
        ),
        Attempt("rbac in year 1", "rbac", "INVALID_JOB:grant.expires_at", rbac(), expiry=("at", -62_135_596_800, 0)),
        Attempt("iam past year 9999", "iam", "INVALID_JOB:grant.expires_at", iam(w), expiry=("at", 253_402_300_800, 0)),
        Attempt(
            "ic with nanos out of range",
            "ic",
            "INVALID_JOB:grant.expires_at",
            ic(w),
            expiry=("at", int(time.time()) + 600, 1_000_000_000),
        ),
        Attempt(
            "aws_auth with negative nanos",
            "aws_auth",
            "INVALID_JOB:grant.expires_at",
            aws_auth(),
            expiry=("at", int(time.time()) + 600, -1),
        ),
        # noop changes nothing (no max_duration), but a nonsensical expiry is still refused
        Attempt("noop expired a minute ago", "noop", "INVALID_JOB:grant.expires_at", {}, expiry=("in", -60)),
        Attempt("noop expiring before 1970", "noop", "INVALID_JOB:grant.expires_at", {}, expiry=("at", -1, 0)),
        Attempt("noop in year 1", "noop", "INVALID_JOB:grant.expires_at", {}, expiry=("at", -62_135_596_800, 0)),
        Attempt("noop in year 10000", "noop", "INVALID_JOB:grant.expires_at", {}, expiry=("at", 253_402_300_800, 0)),
        Attempt(
            "noop with nanos out of range",
            "noop",
            "INVALID_JOB:grant.expires_at",
            {},
            expiry=("at", int(time.time()) + 60, 2_000_000_000),
        ),
    ]
    return out


def attempts(w: World) -> list[Attempt]:
    prod, dev, archive = w.prod_account, w.dev_account, w.archive_account
    ps = w.permission_sets
    other_instance = "arn:aws:sso:::permissionSet/ssoins-0000000000000000/ps-0000000000000000"
    table = [
        # -- EKS access entries ---------------------------------------------------------------------------
        Attempt(
            "eks ClusterAdmin policy by name",
            "eks",
            "allow_cluster_admin",
            eks(w, access_policies=["AmazonEKSClusterAdminPolicy"], scope="cluster", namespaces=[]),
        ),
        Attempt(
            "eks ClusterAdmin policy by ARN",
            "eks",
            "allow_cluster_admin",
            eks(w, access_policies=["arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"]),
        ),
        Attempt(
            "eks Admin policy in a namespace",
            "eks",
            "allow_cluster_admin",
            eks(w, access_policies=["AmazonEKSViewPolicy", "AmazonEKSAdminPolicy"]),
        ),
        Attempt(
            "eks unknown access policy",
            "eks",
            "allow_cluster_admin",
            eks(w, access_policies=["AmazonEKSSuperViewPolicy"]),
        ),
        Attempt("eks system masters group", "eks", "allow_cluster_admin", eks(w, kubernetes_groups=["system:masters"])),
        Attempt(
            "eks unknown group under the default policy",
            "eks",
            "allow_cluster_admin",
            eks(w, kubernetes_groups=["dev-team"]),
        ),
        Attempt("eks non-default username", "eks", "allow_cluster_admin", eks(w, username="alice")),
        Attempt("eks reserved system username", "eks", "reserved", eks(w, username="system:kube-controller-manager")),
        Attempt("eks reserved eks username", "eks", "reserved", eks(w, username="eks:addon-manager")),
        Attempt("eks reserved aws username", "eks", "reserved", eks(w, username="aws:root")),
        Attempt("eks reserved amazon username", "eks", "reserved", eks(w, username="amazon:admin")),
        Attempt("eks reserved iam username", "eks", "reserved", eks(w, username="iam:admin")),
        Attempt("eks system nodes group", "eks", "reserved", eks(w, kubernetes_groups=["system:nodes"])),
        Attempt("eks cluster in another partition", "eks", "INVALID_JOB:target.region", eks(w, region="cn-north-1")),
        Attempt(
            "eks policy ARN of another partition",
            "eks",
            "INVALID_JOB:target.access_policies",
            eks(w, access_policies=["arn:aws-cn:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"]),
        ),
        Attempt(
            "eks principal of another partition",
            "eks",
            "INVALID_JOB:principal",
            eks(w),
            principal=f"arn:aws-us-gov:iam::{prod}:role/gov",
        ),
        Attempt(
            "eks assumed-role session principal",
            "eks",
            "INVALID_JOB:assumed-role",
            eks(w),
            principal=f"arn:aws:sts::{prod}:assumed-role/Admin/me",
        ),
        Attempt(
            "eks target carrying allow_cluster_admin",
            "eks",
            "INVALID_JOB:target.allow_cluster_admin",
            eks(w, allow_cluster_admin=True, access_policies=["AmazonEKSClusterAdminPolicy"]),
        ),
        Attempt(
            "eks settings carrying allow_cluster_admin",
            "eks",
            "INVALID_SETTINGS:allow_cluster_admin",
            eks(w, access_policies=["AmazonEKSClusterAdminPolicy"]),
            settings={"allow_cluster_admin": True},
        ),
        Attempt(
            "eks region the integration does not sweep", "eks", "INVALID_JOB:target.region", eks(w, region="eu-west-1")
        ),
        Attempt(
            "eks cluster-wide under a namespaces rule",
            "eks",
            "namespaces",
            eks(w, scope="cluster", namespaces=[]),
            policy="customer",
        ),
        Attempt(
            "eks namespace outside the allowed ones",
            "eks",
            "namespaces",
            eks(w, namespaces=["kube-system"]),
            policy="customer",
        ),
        Attempt("eks cluster not in the allow-list", "eks", "clusters", eks(w, dev), policy="customer"),
        Attempt(
            "eks access policy not in the allow-list",
            "eks",
            "access_policies",
            eks(w, access_policies=["AmazonEKSAdminViewPolicy"]),
            policy="customer",
        ),
        Attempt("eks account not allowed", "eks", "accounts", eks(w, archive), policy="customer"),
        Attempt(
            "eks group not allowed", "eks", "kubernetes_groups", eks(w, kubernetes_groups=["ops"]), policy="customer"
        ),
        Attempt(
            "eks system masters named in groups",
            "eks",
            "kubernetes_groups",
            eks(w, kubernetes_groups=["system:masters"]),
            policy="customer",
        ),
        Attempt(
            "eks username not allowed", "eks", "kubernetes_usernames", eks(w, username="mallory"), policy="customer"
        ),
        Attempt("eks OU not allowed", "eks", "organizational_units", eks(w, dev), policy="org"),
        # -- Identity Center ------------------------------------------------------------------------------
        Attempt("ic admin permission set by ARN", "ic", "allow_cluster_admin", ic(w, ps["AdministratorAccess"])),
        Attempt("ic admin permission set by name", "ic", "allow_cluster_admin", ic(w, "AdministratorAccess")),
        Attempt(
            "ic harmless name with AdministratorAccess attached", "ic", "allow_cluster_admin", ic(w, "HarmlessHelper")
        ),
        Attempt("ic same set by ARN", "ic", "allow_cluster_admin", ic(w, ps["HarmlessHelper"])),
        Attempt("ic inline star", "ic", "allow_cluster_admin", ic(w, "InlineStar")),
        Attempt("ic inline iam PassRole", "ic", "allow_cluster_admin", ic(w, "PassRoleOnly")),
        Attempt("ic inline NotAction", "ic", "allow_cluster_admin", ic(w, "EverythingBut")),
        Attempt("ic inline sts AssumeRole", "ic", "allow_cluster_admin", ic(w, "AssumeAnything")),
        Attempt("ic customer-managed policy it cannot see", "ic", "allow_cluster_admin", ic(w, "CustomerRefs")),
        Attempt(
            "ic set of another instance", "ic", "INVALID_JOB:another Identity Center instance", ic(w, other_instance)
        ),
        Attempt(
            "ic set ARN of another partition",
            "ic",
            "INVALID_JOB:another Identity Center instance",
            ic(w, ps["ReadOnly"].replace("arn:aws:", "arn:aws-cn:")),
        ),
        Attempt("ic principal given by user name", "ic", "INVALID_JOB:principal", ic(w), principal="user0@example.com"),
        Attempt("ic principal type ROLE", "ic", "INVALID_JOB:target.principal_type", ic(w, principal_type="ROLE")),
        Attempt(
            "ic ReadOnly name with AdministratorAccess",
            "ic",
            "allow_cluster_admin",
            ic(w, "ReadOnlyButAdmin"),
            policy="customer",
        ),
        Attempt(
            "ic ReadOnly name with inline star",
            "ic",
            "allow_cluster_admin",
            ic(w, ps["ReadOnlyInlineStar"]),
            policy="customer",
        ),
        Attempt("ic permission set not allowed", "ic", "permission_sets", ic(w, "EksClusterAdmin"), policy="customer"),
        Attempt("ic account not allowed", "ic", "accounts", ic(w, account=archive), policy="customer"),
        Attempt("ic OU not allowed", "ic", "organizational_units", ic(w, account=dev), policy="org"),
        # -- IAM resource access --------------------------------------------------------------------------
        Attempt("iam access level admin", "iam", "INVALID_JOB:target.access_level", iam(w, access_level="admin")),
        Attempt(
            "iam grant on an IAM role resource",
            "iam",
            "INVALID_JOB:target.resources",
            iam(w, resources=[f"arn:aws:iam::{prod}:role/*"]),
        ),
        Attempt(
            "iam 101 resources",
            "iam",
            "GUARDRAIL_DENIED:at most 100",
            iam(w, resources=[f"arn:aws:sqs:{REGION}:{prod}:team-{i}" for i in range(101)]),
        ),
        Attempt(
            "iam role ARN of another account",
            "iam",
            "INVALID_JOB:target.role",
            iam(w, role=f"arn:aws:iam::{dev}:role/{world.ROLE}"),
        ),
        Attempt(
            "iam resource of another partition",
            "iam",
            "INVALID_JOB:partition",
            iam(w, resources=[f"arn:aws-us-gov:sqs:us-gov-west-1:{prod}:team-q"]),
        ),
        Attempt("iam role path trick", "iam", "INVALID_JOB:target.role", iam(w, role="../ConnectorMemberRole")),
        Attempt(
            "iam wildcard resource not allowed",
            "iam",
            "resources",
            iam(w, resources=["arn:aws:s3:::*"]),
            policy="customer",
        ),
        Attempt("iam account not allowed", "iam", "accounts", iam(w, archive), policy="customer"),
        Attempt("iam OU not allowed", "iam", "organizational_units", iam(w, dev), policy="org"),
        # -- EC2 through Systems Manager ------------------------------------------------------------------
        Attempt(
            "ec2 101 instances",
            "ec2",
            "GUARDRAIL_DENIED:at most 100",
            ec2(w, instances=[f"i-{n:017x}" for n in range(101)]),
        ),
        Attempt(
            "ec2 ssh the integration does not allow",
            "ec2",
            "GUARDRAIL_DENIED:ssm_session_documents",
            ec2(w, documents=["ssh"]),
        ),
        Attempt(
            "ec2 unknown session document",
            "ec2",
            "INVALID_JOB:target.documents",
            ec2(w, documents=["AWS-StartInteractiveCommand"]),
        ),
        Attempt("ec2 instance wildcard", "ec2", "INVALID_JOB:target.instances", ec2(w, instances=["i-*"])),
        Attempt(
            "ec2 instance that does not exist",
            "ec2",
            "NOT_FOUND:do not exist",
            ec2(w, instances=["i-0123456789abcdef0"]),
        ),
        Attempt(
            "ec2 instance of another account", "ec2", "NOT_FOUND:do not exist", ec2(w, instances=[w.instances[dev]])
        ),
        Attempt(
            "ec2 role ARN of another account",
            "ec2",
            "INVALID_JOB:target.role",
            ec2(w, role=f"arn:aws:iam::{dev}:role/{world.ROLE}"),
        ),
        Attempt("ec2 region of another partition", "ec2", "INVALID_JOB:partition", ec2(w, region="us-gov-west-1")),
        Attempt("ec2 decoy cluster key", "ec2", "INVALID_JOB:target.cluster", ec2(w, cluster="prod-elsewhere")),
        Attempt("ec2 instance not allowed", "ec2", "resources", ec2(w), policy="customer"),
        Attempt("ec2 account not allowed", "ec2", "accounts", ec2(w, archive), policy="customer"),
        Attempt("ec2 OU not allowed", "ec2", "organizational_units", ec2(w, dev), policy="org"),
        Attempt(
            "ec2 settings that try to allow every document",
            "ec2",
            "INVALID_SETTINGS:ssm_session_documents",
            ec2(w),
            settings={"ssm_session_documents": ["*"]},
        ),
        # -- Kubernetes RBAC ------------------------------------------------------------------------------
        Attempt(
            "rbac ClusterRole star on star under a harmless name",
            "rbac",
            "allow_cluster_admin",
            rbac("harmless-viewer"),
        ),
        Attempt("rbac aggregated role that escalates", "rbac", "allow_cluster_admin", rbac("harmless-aggregate")),
        Attempt(
            "rbac aggregation selector it cannot read", "rbac", "allow_cluster_admin", rbac("harmless-odd-selector")
        ),
        Attempt("rbac role writing rolebindings", "rbac", "allow_cluster_admin", rbac("harmless-rbac-writer")),
        Attempt("rbac star verbs on users and groups", "rbac", "allow_cluster_admin", rbac("harmless-star-users")),
        Attempt("rbac Role with bind", "rbac", "allow_cluster_admin", rbac("team-binder", role_kind="Role")),
        Attempt("rbac Role with escalate", "rbac", "allow_cluster_admin", rbac("team-escalator", role_kind="Role")),
        Attempt(
            "rbac Role impersonating users", "rbac", "allow_cluster_admin", rbac("team-impersonator", role_kind="Role")
        ),
        Attempt(
            "rbac cluster-admin cluster-wide",
            "rbac",
            "allow_cluster_admin",
            rbac("cluster-admin", scope="cluster", namespaces=[]),
        ),
        Attempt("rbac decoy cluster key", "rbac", "INVALID_JOB:target.cluster", rbac("cluster-admin", cluster="other")),
        Attempt(
            "rbac service account subject",
            "rbac",
            "INVALID_JOB:system:",
            rbac(),
            principal="system:serviceaccount:kube-system:default",
        ),
        Attempt(
            "rbac system masters group subject",
            "rbac",
            "INVALID_JOB:system:",
            rbac(subject_kind="Group"),
            principal="system:masters",
        ),
        Attempt(
            "rbac ServiceAccount subject kind",
            "rbac",
            "INVALID_JOB:target.subject_kind",
            rbac(subject_kind="ServiceAccount"),
        ),
        Attempt("rbac reserved eks username", "rbac", "reserved", rbac(), principal="eks:admin"),
        Attempt(
            "rbac settings carrying allow_cluster_admin",
            "rbac",
            "allow_cluster_admin",
            rbac("cluster-admin"),
            settings={"allow_cluster_admin": True, "max_duration": None},
        ),
        Attempt(
            "rbac settings allowing cluster-admin by name",
            "rbac",
            "allow_cluster_admin",
            rbac("cluster-admin"),
            settings={"allowed_roles": ["cluster-admin"]},
        ),
        Attempt(
            "rbac cluster-admin under a namespaces rule",
            "rbac",
            "namespaces",
            rbac("cluster-admin", scope="cluster", namespaces=[]),
            policy="customer",
        ),
        Attempt(
            "rbac star on star allowed by name",
            "rbac",
            "allow_cluster_admin",
            rbac("harmless-viewer"),
            policy="customer",
        ),
        Attempt(
            "rbac namespace not allowed", "rbac", "namespaces", rbac(namespaces=["kube-system"]), policy="customer"
        ),
        Attempt("rbac role not allowed", "rbac", "kubernetes_roles", rbac("secret-reader"), policy="customer"),
        Attempt("rbac cluster not in the allow-list", "rbac", "clusters", rbac(), policy="customer", api="other"),
        Attempt(
            "rbac group not allowed",
            "rbac",
            "kubernetes_groups",
            rbac(subject_kind="Group"),
            principal="ops",
            policy="customer",
        ),
        Attempt(
            "rbac username not allowed", "rbac", "kubernetes_usernames", rbac(), principal="mallory", policy="customer"
        ),
        # -- aws-auth -------------------------------------------------------------------------------------
        Attempt("aws_auth system masters", "aws_auth", "allow_cluster_admin", aws_auth("system:masters")),
        Attempt("aws_auth group bound to cluster-admin", "aws_auth", "allow_cluster_admin", aws_auth("ops-admins")),
        Attempt(
            "aws_auth group bound to a Role with bind",
            "aws_auth",
            "allow_cluster_admin",
            aws_auth("dev-team", "team-binders"),
        ),
        Attempt("aws_auth system nodes", "aws_auth", "reserved", aws_auth("system:nodes")),
        Attempt(
            "aws_auth allow_system_groups in settings",
            "aws_auth",
            "INVALID_SETTINGS:allow_system_groups",
            aws_auth("system:masters"),
            settings={"allow_system_groups": True},
        ),
        Attempt(
            "aws_auth settings carrying allow_cluster_admin",
            "aws_auth",
            "allow_cluster_admin",
            aws_auth("system:masters"),
            settings={"allow_cluster_admin": True},
        ),
        Attempt("aws_auth decoy cluster key", "aws_auth", "INVALID_JOB:target.cluster", aws_auth(cluster="other")),
        Attempt(
            "aws_auth assumed-role session principal",
            "aws_auth",
            "INVALID_JOB:principal",
            aws_auth(),
            principal=f"arn:aws:sts::{prod}:assumed-role/Admin/me",
        ),
        Attempt(
            "aws_auth IAM user principal",
            "aws_auth",
            "INVALID_JOB:principal",
            aws_auth(),
            principal=f"arn:aws:iam::{prod}:user/alice",
        ),
        Attempt(
            "aws_auth cluster-wide under a namespaces rule", "aws_auth", "namespaces", aws_auth(), policy="customer"
        ),
        Attempt(
            "aws_auth cluster not in the allow-list", "aws_auth", "clusters", aws_auth(), policy="org", api="other"
        ),
        Attempt("aws_auth group not allowed", "aws_auth", "kubernetes_groups", aws_auth("ops"), policy="org"),
        Attempt(
            "aws_auth system masters under a groups rule",
            "aws_auth",
            "kubernetes_groups",
            aws_auth("system:masters"),
            policy="org",
        ),
        # -- Lambda custom --------------------------------------------------------------------------------
        Attempt(
            "lambda untagged function",
            "lambda",
            "PRECONDITION_FAILED:is not tagged",
            lam(),
            settings={"function_name": world.UNTAGGED_FUNCTION},
        ),
        Attempt("lambda decoy cluster key", "lambda", "INVALID_JOB:target.cluster", lam(cluster="prod")),
        Attempt(
            "lambda unknown credentials mode", "lambda", "INVALID_JOB:target.credentials", lam(credentials="steal")
        ),
        Attempt(
            "lambda credentials without a requester key",
            "lambda",
            "INVALID_JOB:requester_public_key",
            lam(credentials="create"),
        ),
        Attempt(
            "lambda settings dropping max_duration",
            "lambda",
            "max_duration",
            lam(),
            settings={"max_duration": None, "guardrails": {"max_duration": None}},
            expiry=("none",),
        ),
        Attempt("lambda resource not allowed", "lambda", "resources", lam(resources=["prod-db"]), policy="customer"),
        Attempt("lambda under an OU rule it cannot satisfy", "lambda", "organizational_units", lam(), policy="org"),
    ]
    return table + _expiry_attempts(w)


def controls(w: World) -> list[Attempt]:
    """Well-formed grants each policy allows: they must succeed (and be seen), so the refusals above are the
    attack's doing and the effect snapshot is not blind."""
    out = []
    for n, policy in enumerate(("default", "customer", "org")):
        out += [
            Attempt(f"control eks {policy}", "eks", "SUCCEEDED", eks(w), policy=policy),
            # One user each: concurrent revokes of grants sharing one assignment can leave it behind (each
            # reads the other's record before either removes its own), which is not what this test is about.
            Attempt(f"control ic {policy}", "ic", "SUCCEEDED", ic(w), policy=policy, principal=w.user_id(n)),
            Attempt(f"control iam {policy}", "iam", "SUCCEEDED", iam(w), policy=policy),
        ]
        if policy != "customer":  # its resources rule names no instance
            out.append(Attempt(f"control ec2 {policy}", "ec2", "SUCCEEDED", ec2(w), policy=policy))
        out += [
            Attempt(f"control rbac {policy}", "rbac", "SUCCEEDED", rbac(), policy=policy),
        ]
    for policy in ("default", "org"):  # a namespaces rule refuses every aws-auth mapping (it is cluster-wide)
        out.append(Attempt(f"control aws_auth {policy}", "aws_auth", "SUCCEEDED", aws_auth(), policy=policy))
    for policy in ("default", "customer"):  # an OU rule refuses every Lambda grant (no OU path to judge)
        out.append(Attempt(f"control lambda {policy}", "lambda", "SUCCEEDED", lam(), policy=policy))
    out.append(Attempt("control noop without expiry", "noop", "SUCCEEDED", {}, expiry=("none",)))
    return out


# -- sending -------------------------------------------------------------------------------------------------
def principal_of(w: World, a: Attempt) -> str:
    if a.principal:
        return a.principal
    if a.kind == "eks":
        return f"arn:aws:iam::{a.target.get('account_id', w.prod_account)}:role/{a.slug}"
    if a.kind == "aws_auth":
        return f"arn:aws:iam::{w.prod_account}:role/{a.slug}"
    if a.kind == "ic":
        return w.user
    if a.kind == "rbac":
        return f"team-{a.slug}"
    return a.slug


def settings_of(w: World, a: Attempt) -> dict[str, Any]:
    api = w.prod if a.api == "prod" else w.other
    base = {
        "eks": w.org_settings,
        "ic": w.org_settings,
        "iam": w.org_settings,
        "ec2": w.org_settings,
        "rbac": lambda: w.k8s_settings(api),
        "aws_auth": lambda: w.k8s_settings(api),
        "lambda": w.lambda_settings,
        "noop": dict,
    }[a.kind]()
    return dict(base) | a.settings


def integration_id(a: Attempt) -> str:
    """One integration per type (the AWS kinds share the organisation), per Kubernetes API."""
    return f"{a.kind}-{a.api}" if a.kind in ("rbac", "aws_auth") else KIND_TYPES[a.kind]


def enqueue_request(w: World, a: Attempt, connector_id: str, revoke: bool = False) -> admin_pb2.EnqueueJobRequest:
    settings = struct_pb2.Struct()
    settings.update(settings_of(w, a))
    request = admin_pb2.EnqueueJobRequest(
        connector_id=connector_id,
        integration=connector_pb2.Integration(id=integration_id(a), type=KIND_TYPES[a.kind], settings=settings),
    )
    body = request.revoke if revoke else request.grant
    body.grant_id = a.grant_id
    body.principal = principal_of(w, a)
    body.target.update(a.target)
    if not revoke:
        if a.expiry[0] == "in":
            request.grant.expires_at.FromNanoseconds(int((time.time() + a.expiry[1]) * 1e9))
        elif a.expiry[0] == "at":
            request.grant.expires_at.seconds, request.grant.expires_at.nanos = a.expiry[1], a.expiry[2]
        request.grant.requester = "hostile-suite"
    return request


def refusal(record: admin_pb2.JobRecord) -> str:
    """What refused the job: the guardrail rule, or the error code (a kind's own limit, such as IAM's 100
    resources, is a GUARDRAIL_DENIED without a rule)."""
    m = GUARDRAIL.match(record.error.message)
    return m.group(1) if m and record.error.code == "GUARDRAIL_DENIED" else record.error.code or "(none)"


def matches(a: Attempt, record: admin_pb2.JobRecord) -> str:
    """'' when the record is the refusal the attempt expects, else what is wrong with it."""
    if record.state == admin_pb2.JOB_STATE_SUCCEEDED:
        return "SUCCEEDED"
    if record.state != admin_pb2.JOB_STATE_FAILED:
        return f"state {admin_pb2.JobState.Name(record.state)}"
    if record.error.retryable:
        return f"retryable {record.error.code}: {record.error.message[:200]}"
    if ":" in a.expect and a.expect.split(":", 1)[0].isupper():
        code, needle = a.expect.split(":", 1)
        if record.error.code != code or needle not in record.error.message:
            return f"{record.error.code}: {record.error.message[:300]}"
        return ""
    return "" if refusal(record) == a.expect else f"{record.error.code}: {record.error.message[:300]}"


@dataclass
class Setup:
    cp: ControlPlane
    agents: dict[str, Agent]  # by policy name


@pytest.fixture
def setup(sandbox: Any, hostile_world: World, tmp_path: Path) -> Iterator[Setup]:
    w = hostile_world
    policies = {"default": None, "customer": customer_policy(w), "org": org_policy(w)}
    cp = ControlPlane(tmp_path, TOKENS)
    started = Setup(cp, {})
    try:
        for policy, rules in policies.items():
            connector_id = f"hostile-{policy}"
            started.agents[policy] = Agent(sandbox, cp, tmp_path, connector_id, TOKENS[connector_id], guardrails=rules)
        yield started
    finally:
        for agent in started.agents.values():
            agent.stop()
        cp.stop()


def _history(item: str) -> bool:
    return item.startswith(f"lambda {world.FUNCTION} ") or item.startswith(f"lambda {world.UNTAGGED_FUNCTION} ")


def test_guardrail_bypass_attempts_never_get_through(hostile_world: World, setup: Setup) -> None:
    w, cp = hostile_world, setup.cp
    table = attempts(w)
    assert len(table) >= 60 and len({a.grant_id for a in table}) == len(table)
    assert {a.kind for a in table} == set(KIND_TYPES)
    before = world.effects(w)
    started = time.monotonic()

    jobs = {cp.admin.enqueue(enqueue_request(w, a, f"hostile-{a.policy}")).job.id: a for a in table}
    records = wait_all(cp.admin, jobs, timeout=120)
    after = world.effects(w)
    changed = after - before

    by_rule: collections.Counter[str] = collections.Counter()
    wrong: list[str] = []
    through: list[str] = []
    for job_id, a in jobs.items():
        record = records[job_id]
        by_rule[refusal(record)] += 1
        problem = matches(a, record)
        # Identity Center attempts share their user: an assignment is theirs when the job made it, a record by id.
        mine = principal_of(w, a) if a.kind != "ic" or record.state == admin_pb2.JOB_STATE_SUCCEEDED else a.grant_id
        leaked = [e for e in changed if mine in e or a.grant_id in e]
        if record.state == admin_pb2.JOB_STATE_SUCCEEDED or leaked:
            through.append(f"{a.name}: {admin_pb2.JobState.Name(record.state)} {leaked[:3]}")
        elif problem:
            wrong.append(f"{a.name} [{a.policy}] expected {a.expect}, got {problem}")
    print(
        f"\nHOSTILE bypass: attempts={len(table)} through={len(through)} by_rule={dict(by_rule.most_common())} "
        f"kinds={dict(collections.Counter(a.kind for a in table))} "
        f"policies={dict(collections.Counter(a.policy for a in table))} ({time.monotonic() - started:.1f} s)"
    )
    assert not through, "\n".join(through)
    assert not changed, sorted(changed)[:20]  # nothing anywhere, not only for the attempts' principals
    assert not wrong, "\n".join(wrong)

    # Controls: each policy lets a well-formed grant of each kind through, and the snapshot sees it.
    ctl = controls(w)
    control_jobs = {cp.admin.enqueue(enqueue_request(w, a, f"hostile-{a.policy}")).job.id: a for a in ctl}
    control_records = wait_all(cp.admin, control_jobs, timeout=120)
    failed = [
        f"{a.name}: {control_records[j].error}"
        for j, a in control_jobs.items()
        if control_records[j].state != admin_pb2.JOB_STATE_SUCCEEDED
    ]
    assert not failed, "\n".join(failed)
    granted = world.effects(w) - after
    unseen = [
        a.name for a in ctl if a.kind != "noop" and not any(principal_of(w, a) in e or a.grant_id in e for e in granted)
    ]
    assert not unseen, f"control grants the effect snapshot did not see: {unseen}"
    revokes = [cp.admin.enqueue(enqueue_request(w, a, f"hostile-{a.policy}", revoke=True)).job.id for a in ctl]
    revoked = wait_all(cp.admin, revokes, timeout=120)
    assert all(r.state == admin_pb2.JOB_STATE_SUCCEEDED for r in revoked.values()), [r.error for r in revoked.values()]
    left = {e for e in world.effects(w) - before if not _history(e)}
    assert not left, sorted(left)

    # The same processes served everything, their supervised tasks never restarted, the sweeper ran.
    for name, agent in setup.agents.items():
        assert agent.alive(), f"agent {name} exited: {agent.log_text()[-2000:]}"
        restarts = agent.task_restarts()
        assert restarts and not any(restarts.values()), (name, restarts)
        assert agent.sweeps() >= 1, name
