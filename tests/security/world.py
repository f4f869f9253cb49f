"""What the hostile suite attacks, and where each kind's effect would live.

- AWS (the sandbox): two EKS clusters (prod-0000-... in OU Prod, dev-0001-... in OU Dev), Identity Center
  with permission sets whose names lie about what they hold, IAM roles to grant on, the customer's Lambda
  function (tagged) and an untagged one, both in the connector's own account.
- Kubernetes (tests/k8s FakeApiServer): namespaces, roles that are admin under harmless names (`*` on `*`, an
  aggregation that pulls in `escalate`, bind / escalate / impersonate), groups already bound to cluster-admin,
  and the aws-auth ConfigMap.

`effects()` reads every place a grant of any kind could land, as a set of strings; a diff of two snapshots
is what an attempt (or a control grant) changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from connector.sandbox import CredentialsFunction, Sandbox, SeedSpec
from tests.k8s.fake_apiserver import FakeApiServer
from tests.security.shipped import member

SPEC = SeedSpec(accounts=5, regions=("us-east-1",), cluster_accounts=2, account_without_member_role=None, users=3)
REGION = "us-east-1"
RBAC = "rbac.authorization.k8s.io/v1"
FUNCTION = "hostile-fn"
UNTAGGED_FUNCTION = "hostile-untagged-fn"
ROLE = "hostile-target"  # an IAM role in every member account, for iam_resource_access grants
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})
ADMIN_POLICY = "arn:aws:iam::aws:policy/AdministratorAccess"
READ_POLICY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
AGGREGATE_LABEL = "rbac.example.com/aggregate-to-harmless"


def _inline(*actions: str, not_action: bool = False) -> str:
    statement: dict[str, Any] = {"Effect": "Allow", "Resource": "*"}
    statement["NotAction" if not_action else "Action"] = list(actions)
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


# Permission sets: name -> (managed policy ARNs, inline policy, customer-managed policy names).
PERMISSION_SETS: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "AdministratorAccess": ((), "", ()),  # admin by its name alone
    "HarmlessHelper": ((ADMIN_POLICY,), "", ()),
    "InlineStar": ((), _inline("*"), ()),
    "PassRoleOnly": ((READ_POLICY,), _inline("iam:PassRole"), ()),
    "EverythingBut": ((), _inline("iam:DeleteRole", not_action=True), ()),
    "AssumeAnything": ((), _inline("sts:AssumeRole"), ()),
    "CustomerRefs": ((), "", ("team-policy",)),
    "ReadOnlyButAdmin": ((ADMIN_POLICY,), "", ()),  # passes a ReadOnly* allow-list by name
    "ReadOnlyInlineStar": ((READ_POLICY,), _inline("s3:GetObject", "*"), ()),
}


@dataclass
class World:
    sb: Sandbox
    prod: Any  # the FakeApiServer a customer policy allows
    other: Any  # a cluster the customer policy does not name
    function: CredentialsFunction
    permission_sets: dict[str, str]  # name -> ARN (seeded and ours)
    instances: dict[str, str] = field(default_factory=dict)  # account -> an EC2 instance there (ec2_ssm grants)

    @property
    def info(self) -> Any:
        return self.sb.seed_info

    def account(self, name: str) -> str:
        return str(self.info.account(name).id)

    @property
    def prod_account(self) -> str:
        return self.account("prod-0000")

    @property
    def dev_account(self) -> str:
        return self.account("dev-0001")

    @property
    def archive_account(self) -> str:
        return self.account("log-archive")

    def cluster(self, account: str) -> str:
        return str(next(c.name for c in self.info.clusters if c.account == account))

    @property
    def user(self) -> str:
        return self.user_id(0)

    def user_id(self, n: int) -> str:
        return str(self.info.identity_center.users[f"user{n}@example.com"])

    def ou(self, path: str) -> str:
        return str(self.info.ou_ids[path])

    def org_settings(self, **extra: Any) -> dict[str, Any]:
        info = self.info
        return {
            "management_account_role_arn": info.management_role_arn,
            "member_role_name": info.member_role_name,
            "external_id": info.external_id,
            "regions": [REGION],
            "sso_region": REGION,
        } | extra

    def k8s_settings(self, api: Any, **extra: Any) -> dict[str, Any]:
        return {"connection": "host", "host": api.url} | extra

    def lambda_settings(self, function: str = FUNCTION, **extra: Any) -> dict[str, Any]:
        return {"function_name": function, "region": REGION} | extra


def build(sb: Sandbox, prod: FakeApiServer, other: FakeApiServer) -> World:
    for api in (prod, other):
        seed_cluster(api)
    create_function(sb, FUNCTION, tagged=True)
    create_function(sb, UNTAGGED_FUNCTION, tagged=False)
    function = CredentialsFunction()
    sb.lambdas.register(FUNCTION, function)
    sb.lambdas.register(UNTAGGED_FUNCTION, CredentialsFunction())
    for account in sb.seed_info.accounts[1:]:
        if account.state == "ACTIVE":
            iam = member(sb, "iam", account.id, None)
            iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=TRUST)
    instances = {}
    for name in ("prod-0000", "dev-0001", "log-archive"):
        account = sb.seed_info.account(name).id
        ec2 = member(sb, "ec2", account, REGION)
        ami = ec2.describe_images()["Images"][0]["ImageId"]
        instances[account] = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    return World(sb, prod, other, function, seed_permission_sets(sb), instances)


def create_function(sb: Sandbox, name: str, *, tagged: bool) -> str:
    """The customer's function, in the account the connector runs in (its own identity invokes it)."""
    account = sb.seed_info.connector_account_id
    iam = member(sb, "iam", account, None)
    try:
        role = iam.get_role(RoleName="hostile-fn-role")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(RoleName="hostile-fn-role", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    tags = {"apono-connector-access": "true"} if tagged else {"team": "x"}
    fn = member(sb, "lambda", account)
    created = fn.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        Timeout=10,
        Tags=tags,
    )
    return str(created["FunctionArn"])


def seed_permission_sets(sb: Sandbox) -> dict[str, str]:
    ic = sb.seed_info.identity_center
    sso = sb.client("sso-admin", ic.region)
    out = dict(ic.permission_sets)
    for name, (managed, inline, customer) in PERMISSION_SETS.items():
        arn = sso.create_permission_set(InstanceArn=ic.instance_arn, Name=name, SessionDuration="PT1H")[
            "PermissionSet"
        ]["PermissionSetArn"]
        for policy in managed:
            sso.attach_managed_policy_to_permission_set(
                InstanceArn=ic.instance_arn, PermissionSetArn=arn, ManagedPolicyArn=policy
            )
        if inline:
            sso.put_inline_policy_to_permission_set(
                InstanceArn=ic.instance_arn, PermissionSetArn=arn, InlinePolicy=inline
            )
        for ref in customer:
            sso.attach_customer_managed_policy_reference_to_permission_set(
                InstanceArn=ic.instance_arn,
                PermissionSetArn=arn,
                CustomerManagedPolicyReference={"Name": ref, "Path": "/"},
            )
        out[name] = arn
    return out


def _rule(verbs: list[str], resources: list[str], groups: tuple[str, ...] = ("",)) -> dict[str, Any]:
    return {"apiGroups": list(groups), "resources": resources, "verbs": verbs}


READ = [_rule(["get", "list", "watch"], ["pods", "configmaps"])]
CLUSTER_ROLES: dict[str, dict[str, Any]] = {
    "view": {"rules": READ},
    "edit": {"rules": [_rule(["get", "list", "create", "update", "delete"], ["pods", "configmaps"])]},
    "secret-reader": {"rules": [_rule(["get", "list"], ["secrets"])]},
    "cluster-admin": {"rules": [_rule(["*"], ["*"], ("*",))]},
    "harmless-viewer": {"rules": [_rule(["*"], ["*"], ("*",))]},  # cluster-admin under a harmless name
    # Aggregated: its own rules are empty, its members' escalate.
    "harmless-aggregate": {
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {AGGREGATE_LABEL: "true"}}]},
        "rules": [],
    },
    "harmless-piece": {
        "labels": {AGGREGATE_LABEL: "true"},
        "rules": [_rule(["escalate"], ["clusterroles"], ("rbac.authorization.k8s.io",))],
    },
    "harmless-odd-selector": {
        "aggregationRule": {
            "clusterRoleSelectors": [{"matchExpressions": [{"key": "tier", "operator": "Near", "values": ["x"]}]}]
        },
        "rules": [],
    },
    "harmless-rbac-writer": {"rules": [_rule(["create", "update"], ["rolebindings"], ("rbac.authorization.k8s.io",))]},
    "harmless-star-users": {"rules": [_rule(["*"], ["users", "groups"])]},
}
ROLES: dict[str, list[dict[str, Any]]] = {  # in namespace team-a
    "team-binder": [_rule(["bind"], ["roles"], ("rbac.authorization.k8s.io",))],
    "team-escalator": [_rule(["escalate"], ["roles"], ("rbac.authorization.k8s.io",))],
    "team-impersonator": [_rule(["impersonate"], ["users"])],
    "team-view": READ,
}
# Groups that existing bindings already make admin: mapping someone into one is cluster-admin level.
BOUND_GROUPS = {"ops-admins": ("ClusterRole", "cluster-admin", ""), "team-binders": ("Role", "team-binder", "team-a")}
NODE_MAPPING = {"rolearn": "arn:aws:iam::111111111111:role/nodes", "username": "system:node:{{EC2PrivateDNSName}}"}


def seed_cluster(api: FakeApiServer) -> None:
    for ns in ("default", "kube-system", "team-a", "faults"):
        api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for name, spec in CLUSTER_ROLES.items():
        meta: dict[str, Any] = {"name": name}
        if "labels" in spec:
            meta["labels"] = spec["labels"]
        body: dict[str, Any] = {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": meta, "rules": spec["rules"]}
        if "aggregationRule" in spec:
            body["aggregationRule"] = spec["aggregationRule"]
        api.seed(body)
    for name, rules in ROLES.items():
        api.seed(
            {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": name, "namespace": "team-a"}, "rules": rules}
        )
    for group, (kind, role, ns) in BOUND_GROUPS.items():
        binding = "RoleBinding" if ns else "ClusterRoleBinding"
        meta = {"name": f"seed-{group}"} | ({"namespace": ns} if ns else {})
        api.seed(
            {
                "apiVersion": RBAC,
                "kind": binding,
                "metadata": meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
                "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group}],
            }
        )
    api.seed(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "aws-auth", "namespace": "kube-system"},
            "data": {"mapRoles": yaml.safe_dump([NODE_MAPPING | {"groups": ["system:nodes"]}])},
        }
    )


# -- where effects live --------------------------------------------------------------------------------------
def effects(w: World) -> set[str]:
    """Every grant-shaped thing in every place a kind writes to, one string each (principal included)."""
    return _eks(w) | _identity_center(w) | _iam(w) | _kubernetes(w) | _lambda(w)


def _eks(w: World) -> set[str]:
    out = set()
    for c in w.info.clusters:
        if c.mode == "CONFIG_MAP":
            continue
        eks = member(w.sb, "eks", c.account, c.region)
        for page in eks.get_paginator("list_access_entries").paginate(clusterName=c.name):
            for principal in page["accessEntries"]:
                out.add(f"eks entry {c.name} {principal}")
                found = eks.list_associated_access_policies(clusterName=c.name, principalArn=principal)
                for p in found["associatedAccessPolicies"]:
                    out.add(f"eks policy {c.name} {principal} {p['policyArn']} {json.dumps(p['accessScope'])}")
                tags = eks.describe_access_entry(clusterName=c.name, principalArn=principal)["accessEntry"]["tags"]
                out |= {f"eks record {c.name} {principal} {k}" for k in tags if k.startswith("access-connector/")}
    return out


def _identity_center(w: World) -> set[str]:
    ic = w.info.identity_center
    sso = w.sb.client("sso-admin", ic.region)
    out = set()
    for arn in w.permission_sets.values():
        tags = sso.list_tags_for_resource(InstanceArn=ic.instance_arn, ResourceArn=arn)["Tags"]
        out |= {f"ic record {arn} {t['Key']} {t['Value']}" for t in tags if t["Key"].startswith("access-connector/")}
        for account in w.info.accounts:
            found = sso.list_account_assignments(
                InstanceArn=ic.instance_arn, AccountId=account.id, PermissionSetArn=arn
            )
            for a in found["AccountAssignments"]:
                out.add(f"ic assignment {account.id} {arn} {a['PrincipalType']} {a['PrincipalId']}")
    return out


def _iam(w: World) -> set[str]:
    out = set()
    for account in w.info.accounts[1:]:
        if account.state != "ACTIVE":
            continue
        iam = member(w.sb, "iam", account.id, None)
        for name in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=ROLE, PolicyName=name)["PolicyDocument"]
            out.add(f"iam policy {account.id} {ROLE} {name} {json.dumps(document, sort_keys=True)}")
        for tag in iam.list_role_tags(RoleName=ROLE)["Tags"]:
            if tag["Key"].startswith("access-connector/"):
                out.add(f"iam record {account.id} {ROLE} {tag['Key']}")
    return out


def _kubernetes(w: World) -> set[str]:
    out = set()
    for api in (w.prod, w.other):
        for resource in ("rolebindings", "clusterrolebindings"):
            for ns, name in api.names(resource):
                obj = api.get(resource, name, ns) or {}
                if name.startswith("seed-"):
                    continue
                subjects = sorted(f"{s.get('kind')}:{s.get('name')}" for s in obj.get("subjects") or [])
                role = obj.get("roleRef", {}).get("name")
                out.add(f"rbac {api.url} {resource} {ns}/{name} {role} {subjects}")
        configmap = api.get("configmaps", "aws-auth", "kube-system") or {}
        for entry in yaml.safe_load((configmap.get("data") or {}).get("mapRoles") or "[]") or []:
            if entry.get("rolearn") != NODE_MAPPING["rolearn"]:
                out.add(f"aws-auth {api.url} {entry.get('rolearn')} {entry.get('username')} {entry.get('groups')}")
        for key in (configmap.get("metadata") or {}).get("annotations") or {}:
            if key.startswith("grants.access-connector/"):
                out.add(f"aws-auth record {api.url} {key}")
    return out


def _lambda(w: World) -> set[str]:
    out = set()
    for name in (FUNCTION, UNTAGGED_FUNCTION):
        for inv in w.sb.lambdas.invocations(name):
            if inv.event_type != "list-resources":
                params = (inv.event or {}).get("params") or {}
                out.add(f"lambda {name} {inv.event_type} {params.get('username')} {params.get('grant_id')}")
    out |= {f"lambda grant {user} {grant.grant_id}" for user, grant in w.function.grants().items()}
    ssm = member(w.sb, "ssm", w.info.connector_account_id)
    for page in ssm.get_paginator("describe_parameters").paginate():
        out |= {f"lambda record {p['Name']}" for p in page["Parameters"] if p["Name"].startswith("/access-connector")}
    return out
