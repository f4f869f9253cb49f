"""Fault 9: a grant of every kind expires while the control plane is down, and the shipped agent revokes each
one on time (the effect checked where it lives: the sandbox for EKS, IAM, EC2 through SSM (the policy and the
requester's live session), Identity Center and Lambda, the
Kubernetes API for RBAC and aws-auth), then reports one event per grant once the control plane is back.

The agent learned the integrations from the grant jobs themselves (the dispatcher hands the expiry loop
settings that validated, and the jobs' success proves they work); nothing is configured on its side."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
import yaml

from connector.integrations.lambda_custom.records import base_path
from connector.sandbox import CredentialsFunction, Sandbox, ssm_sessions
from connector.v1 import admin_pb2, connector_pb2
from tests.agent.agent_harness import CONNECTOR_ID, wait_for
from tests.faults.conftest import AgentProcess, effect, eks_grants, job_figures, member_eks, org_settings, summarize
from tests.k8s.fake_apiserver import FakeApiServer
from tests.sandbox_env import in_account, tagged_function

EXPIRES_IN = 12.0
SWEEP = 1.0
EVENT_TYPE = "grant.expired_revoked"
RBAC = "rbac.authorization.k8s.io/v1"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})
FUNCTION = "fault-grants"
REGION = "us-east-1"


def managed_instance(sb: Sandbox, account: str) -> str:
    """An instance Session Manager reaches (its role has AmazonSSMManagedInstanceCore), and the role the
    requester works as (trusting the account; the sandbox authorises its sessions from its policies)."""
    iam = in_account(sb, "iam", account)
    ec2_trust = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    iam.create_role(RoleName="every-ec2", AssumeRolePolicyDocument=json.dumps({"Statement": [ec2_trust]}))
    iam.attach_role_policy(RoleName="every-ec2", PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
    iam.create_instance_profile(InstanceProfileName="every-ec2")
    iam.add_role_to_instance_profile(InstanceProfileName="every-ec2", RoleName="every-ec2")
    account_trust = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
        "Action": "sts:AssumeRole",
    }
    iam.create_role(
        RoleName="every-ssm",
        AssumeRolePolicyDocument=json.dumps({"Statement": [account_trust]}),
        Tags=[{"Key": ssm_sessions.ENFORCE_TAG, "Value": "true"}],
    )
    ec2 = in_account(sb, "ec2", account, REGION)
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    made = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, IamInstanceProfile={"Name": "every-ec2"})
    return str(made["Instances"][0]["InstanceId"])


def requester_ssm(sb: Sandbox, account: str, role: str) -> Any:
    creds = (
        sb.account_session(account)
        .client("sts", endpoint_url=sb.endpoint)
        .assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="dave")["Credentials"]
    )
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=REGION,
    ).client("ssm", endpoint_url=sb.endpoint)


@pytest.fixture
def cluster() -> Iterator[FakeApiServer]:
    """A Kubernetes API (our fake of that boundary) holding what the RBAC and aws-auth grants need."""
    with FakeApiServer() as api:
        for name in ("faults", "kube-system"):
            api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        view = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
        api.seed({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "view"}, "rules": view})
        mapping = [{"rolearn": "arn:aws:iam::111111111111:role/nodes", "username": "system:node:{{EC2PrivateDNSName}}"}]
        api.seed(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "aws-auth", "namespace": "kube-system"},
                "data": {"mapRoles": yaml.safe_dump([m | {"groups": ["system:nodes"]} for m in mapping])},
            }
        )
        yield api


@pytest.fixture
def function(sandbox: Sandbox) -> Iterator[CredentialsFunction]:
    """The customer's function, in the account the connector runs in (its own identity invokes it)."""
    tagged_function(sandbox, FUNCTION, sandbox.seed_info.connector_account_id)
    handler = CredentialsFunction()
    sandbox.lambdas.register(FUNCTION, handler)
    yield handler


@pytest.mark.timeout(300)
def test_a_grant_of_every_kind_is_revoked_on_time_with_the_control_plane_down(
    sandbox, control_plane, agents, tmp_path, cluster, function
):
    info = sandbox.seed_info
    cp = control_plane.start()
    agent = AgentProcess(
        sandbox,
        cp.address,
        tmp_path / "agent.log",
        CONNECTOR_EXPIRY_SWEEP_SECONDS=str(SWEEP),
        CONNECTOR_STATE_DIR=str(tmp_path),
    )
    agents.append(agent)
    agent.wait_event("registered", 60)

    org = org_settings(sandbox, sso_region=REGION)
    eks = eks_grants(sandbox, "every-eks", 1)[0]
    account = info.account("log-archive").id
    in_account(sandbox, "iam", account).create_role(RoleName="every-iam", AssumeRolePolicyDocument=TRUST)
    instance = managed_instance(sandbox, account)
    ic = info.identity_center
    user = ic.users["user1@example.com"]
    k8s = {"connection": "host", "host": cluster.url}
    lam = {"function_name": FUNCTION, "region": REGION}
    grants: dict[str, tuple[str, str, dict[str, Any], str, dict[str, Any]]] = {
        # grant id: (integration id, type, settings, principal, target)
        "every-eks": ("org", "aws_organization", org, eks.principal, eks.target),
        "every-iam": (
            "org",
            "aws_organization",
            org,
            "alice",
            {
                "resource_type": "iam_resource_access",
                "account_id": account,
                "role": "every-iam",
                "resources": [f"arn:aws:sqs:{REGION}:{account}:q"],
            },
        ),
        "every-ssm": (
            "org",
            "aws_organization",
            org,
            "dave",
            {
                "resource_type": "ec2_ssm_session",
                "account_id": account,
                "region": REGION,
                "role": "every-ssm",
                "instances": [instance],
            },
        ),
        "every-ic": (
            "org",
            "aws_organization",
            org,
            user,
            {
                "resource_type": "identity_center_assignment",
                "account_id": account,
                "permission_set": "ReadOnly",
                "principal_type": "USER",
            },
        ),
        "every-rbac": (
            "k8s",
            "kubernetes",
            k8s,
            "bob",
            {"scope": "namespace", "namespaces": ["faults"], "role": "view"},
        ),
        "every-aws-auth": (
            "auth",
            "eks_aws_auth",
            k8s,
            f"arn:aws:iam::{account}:role/every-mapped",
            {"groups": ["devs"]},
        ),
        "every-lambda": ("lam", "lambda_custom", lam, "carol", {"resources": ["r1"], "permission": "reader"}),
    }
    expires_at = time.time() + EXPIRES_IN
    records = [
        cp.admin.enqueue_grant(
            CONNECTOR_ID,
            integration,
            kind,
            grant_id=grant_id,
            principal=principal,
            target=target,
            settings=settings,
            expires_in=EXPIRES_IN,
        )
        for grant_id, (integration, kind, settings, principal, target) in grants.items()
    ]
    granted = [cp.admin.wait(r.job.id, timeout=60) for r in records]
    assert all(r.state == admin_pb2.JOB_STATE_SUCCEEDED for r in granted), [(r.job.id, r.error) for r in granted]

    iam = in_account(sandbox, "iam", account)
    sso = in_account(sandbox, "sso-admin", info.management_account_id)
    session = requester_ssm(sandbox, account, "every-ssm").start_session(Target=instance)["SessionId"]
    ssm_admin = in_account(sandbox, "ssm", account, REGION)

    def ssm_live() -> bool:
        active = [s["SessionId"] for s in ssm_admin.describe_sessions(State="Active")["Sessions"]]
        return bool(iam.list_role_policies(RoleName="every-ssm")["PolicyNames"]) or session in active

    def rbac_live() -> bool:
        return any(ns == "faults" for ns, _ in cluster.names("rolebindings"))

    def aws_auth_live() -> bool:
        text = cluster.get("configmaps", "aws-auth", "kube-system")["data"]["mapRoles"]
        return "every-mapped" in text

    def iam_live() -> bool:
        return bool(iam.list_role_policies(RoleName="every-iam")["PolicyNames"])

    def ic_live() -> bool:
        found = sso.list_account_assignments(
            InstanceArn=ic.instance_arn, AccountId=account, PermissionSetArn=ic.permission_sets["ReadOnly"]
        )["AccountAssignments"]
        return user in [a["PrincipalId"] for a in found]

    live: dict[str, Callable[[], bool]] = {
        "every-eks": lambda: not effect(sandbox, eks).absent,
        "every-iam": iam_live,
        "every-ssm": ssm_live,
        "every-ic": ic_live,
        "every-rbac": rbac_live,
        "every-aws-auth": aws_auth_live,
        "every-lambda": lambda: "carol" in function.grants(),
    }
    assert {g: check() for g, check in live.items()} == dict.fromkeys(live, True)
    assert time.time() < expires_at, "the grants took longer than their lifetime; raise EXPIRES_IN"

    cp.kill()
    down_at = time.time()
    gone_at: dict[str, float] = {}

    def all_gone() -> bool:
        for grant_id, check in live.items():
            if grant_id not in gone_at and not check():
                gone_at[grant_id] = time.time()
        return len(gone_at) == len(live)

    wait_for(all_gone, 90, "every expired grant revoked")
    still_down = cp.proc is not None and cp.proc.poll() is not None
    time.sleep(3 * SWEEP)  # later sweeps find nothing more to do
    cp.start()
    down_seconds = time.time() - down_at

    def reported() -> list[connector_pb2.ConnectorEvent]:
        return [e for e in cp.admin.events(CONNECTOR_ID, EVENT_TYPE, limit=100) if e.grant_id in grants]

    wait_for(lambda: {e.grant_id for e in reported()} >= set(grants), 60, "events reported")
    time.sleep(2 * SWEEP)
    events = reported()
    per_grant = Counter(e.grant_id for e in events)
    lags = {g: round(gone_at[g] - expires_at, 1) for g in grants}
    # No record left behind anywhere: the EKS entry, the role's tag, the permission set's tag, the bindings,
    # the aws-auth annotation, the SSM parameters.
    eks_client = member_eks(sandbox, eks.target["account_id"], eks.target["region"])
    entries = eks_client.list_access_entries(clusterName=eks.target["cluster"])["accessEntries"]
    role_tags = [t["Key"] for t in iam.list_role_tags(RoleName="every-iam")["Tags"]]
    ps_tags = [
        t["Key"]
        for t in sso.list_tags_for_resource(InstanceArn=ic.instance_arn, ResourceArn=ic.permission_sets["ReadOnly"])[
            "Tags"
        ]
    ]
    annotations = cluster.get("configmaps", "aws-auth", "kube-system")["metadata"].get("annotations") or {}
    ssm = in_account(sandbox, "ssm", info.connector_account_id)
    lambda_records = base_path(CONNECTOR_ID, "lam")  # this test's integration: other tests share the sandbox
    params = [p["Name"] for p in ssm.describe_parameters()["Parameters"] if p["Name"].startswith(lambda_records + "/")]
    left = {
        "eks": eks.principal in entries,
        "iam": any(k.startswith("access-connector/grant/") for k in role_tags),
        "ssm": ssm_live()
        or any(t["Key"].startswith("access-connector/") for t in iam.list_role_tags(RoleName="every-ssm")["Tags"]),
        "ic": any(k.endswith("/every-ic") for k in ps_tags),
        "rbac": rbac_live(),
        "aws-auth": any(k.startswith("grants.access-connector/") for k in annotations),
        "lambda": bool(params),
    }
    summarize(
        "expiry_every_kind_controlplane_down",
        **job_figures(granted),
        kinds=len(grants),
        duplicated=sum(n - 1 for n in per_grant.values()),
        grants_left_behind=sum(left.values()),
        revoked_while_down=len(gone_at) if still_down else 0,
        max_revoke_lag_seconds=max(lags.values()),
        events_reported=len(events),
        down_seconds=round(down_seconds, 1),
        sweep_seconds=SWEEP,
    )
    assert still_down, "the grants must be revoked before the control plane returns"
    assert max(lags.values()) < 20, lags  # expiry + a sweep or two, with room for a loaded machine
    assert sorted(per_grant.values()) == [1] * len(grants), events
    assert all(e.outcome == connector_pb2.OUTCOME_SUCCEEDED for e in events), events
    assert not any(left.values()), left
    assert not function.orphans()
