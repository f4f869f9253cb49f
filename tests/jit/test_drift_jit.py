"""The drift report through the sandbox: connector records whose effect is missing, effects past their
expiry, and access someone else added to what the connector manages, for IAM, EKS and EC2-through-SSM grants.
The report itself changes nothing: no write call is made while it runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import struct_pb2

from connector.integrations import ledger
from connector.integrations.base import JobContext
from connector.integrations.ec2_ssm import policy as ssm_policy
from connector.integrations.iam_access import policy as iam_policy
from connector.v1 import connector_pb2 as pb
from tests.jit.conftest import admin, dispatcher, job, mutating_calls, ok, run, settings

pytestmark = pytest.mark.timeout(120)
REGION = "us-east-1"
EC2_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)
EXTRA = {"Sid": "AddedByHand", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}


def _sync(sb: Any, accounts: list[str]) -> list[Any]:
    s = struct_pb2.Struct()
    s.update(settings(sb))
    j = pb.Job(
        id="sync-drift",
        attempt=1,
        integration=pb.Integration(id="int-aws", type="aws_organization", settings=s),
        sync=pb.SyncJob(resource_types=["drift"], account_ids=accounts),
    )
    items: list[Any] = []
    ctx = JobContext(job_id=j.id, attempt=1, connector_id="sandbox-connector-0001", integration_id="int-aws")
    ctx.emit = items.append
    out = dispatcher(sb).execute(j, ctx)
    assert out.outcome == "succeeded", out.error
    assert not [i for i in items if i.type == "error"], [i.attributes for i in items if i.type == "error"]
    return [i for i in items if i.type == "drift"]


def _add_statement(iam: Any, role: str, name: str) -> None:
    doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    doc["Statement"].append(EXTRA)
    iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(doc))


def test_drift_items_say_what_disagrees_and_the_report_writes_nothing(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    account = sb.seed_info.account("prod-0000").id
    iam = admin(sb, "iam", account)
    for role in ("drift-iam", "drift-ssm"):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=EC2_TRUST)
    queue = f"arn:aws:sqs:{REGION}:{account}:jobs"

    def iam_grant(grant_id: str) -> str:
        target = {"resource_type": "iam_resource_access", "account_id": account, "role": "drift-iam"}
        ok(run(d, job(sb, "grant", grant_id, "alice", target | {"resources": [queue]})))
        return iam_policy.policy_name_for(ledger.grant_key(grant_id))

    iam.delete_role_policy(RoleName="drift-iam", PolicyName=iam_grant("d-missing"))  # record, no effect
    _add_statement(iam, "drift-iam", iam_grant("d-widened"))  # someone widened a connector-made policy
    iam_grant("d-expired")
    iam.tag_role(  # the record expired long ago, the policy is still there (a sweep that never ran)
        RoleName="drift-iam",
        Tags=[
            {
                "Key": ledger.grant_key("d-expired"),
                "Value": f"exp=1000 policy={iam_policy.policy_name_for(ledger.grant_key('d-expired'))}",
            }
        ],
    )
    iam_grant("d-clean")

    # EC2 through SSM: a widened policy.
    ec2 = admin(sb, "ec2", account, REGION)
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ssm_target = {"resource_type": "ec2_ssm_session", "account_id": account, "region": REGION, "role": "drift-ssm"}
    ok(run(d, job(sb, "grant", "d-ssm", "alice", ssm_target | {"instances": [instance]})))
    _add_statement(iam, "drift-ssm", ssm_policy.policy_name_for("d-ssm"))
    orphan = {"Version": "2012-10-17", "Statement": [EXTRA]}  # under the connector's name, with no record
    iam.put_role_policy(
        RoleName="drift-ssm", PolicyName="access-connector-ssm-orphan", PolicyDocument=json.dumps(orphan)
    )

    # EKS: a policy associated by hand with an entry the connector made.
    c = next(c for c in sb.seed_info.clusters if c.mode == "API")
    principal = f"arn:aws:iam::{c.account}:role/drift-eks"
    eks_target = {
        "resource_type": "eks_cluster", "account_id": c.account, "region": c.region, "cluster": c.name,
        "access_policies": ["AmazonEKSViewPolicy"], "scope": "namespace", "namespaces": ["team-a"],
    }  # fmt: skip
    ok(run(d, job(sb, "grant", "d-eks", principal, eks_target)))
    admin(sb, "eks", c.account, c.region).associate_access_policy(
        clusterName=c.name,
        principalArn=principal,
        policyArn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy",
        accessScope={"type": "cluster"},
    )

    # Identity Center: an assignment the connector made, removed by hand.
    ic = sb.seed_info.identity_center
    user = ic.users["user2@example.com"]
    ic_target = {"resource_type": "identity_center_assignment", "account_id": account, "permission_set": "ReadOnly"}
    ok(run(d, job(sb, "grant", "d-ic", user, ic_target | {"principal_type": "USER"})))
    admin(sb, "sso-admin", sb.seed_info.management_account_id, ic.region).delete_account_assignment(
        InstanceArn=ic.instance_arn,
        TargetId=account,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=ic.permission_sets["ReadOnly"],
        PrincipalType="USER",
        PrincipalId=user,
    )

    before = mutating_calls(sb)
    found = _sync(sb, sorted({account, c.account}))
    assert mutating_calls(sb) == before, "the drift report made a write call"

    def problems(kind: str) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for item in found:
            if item.attributes["kind"] == kind:
                out.setdefault(item.attributes["problem"], []).append(item)
        return out

    iam_found = problems("iam_resource_access")
    assert [i.attributes["grant_key"] for i in iam_found["record_without_effect"]] == [ledger.grant_key("d-missing")]
    assert [i.attributes["grant_key"] for i in iam_found["effect_past_expiry"]] == [ledger.grant_key("d-expired")]
    widened = iam_found["foreign_access"]
    assert [i.attributes["grant_key"] for i in widened] == [ledger.grant_key("d-widened")]
    assert "AddedByHand" in widened[0].attributes["details"] and widened[0].attributes["what_to_do"]
    ssm_found = problems("ec2_ssm_session")
    assert sorted(ssm_found) == ["effect_without_record", "foreign_access"]
    assert [i.attributes["where"] for i in ssm_found["effect_without_record"]] == [
        f"{account}/drift-ssm/access-connector-ssm-orphan"
    ]
    widened_ssm = {i.attributes["where"].rsplit("/", 1)[-1] for i in ssm_found["foreign_access"]}
    assert widened_ssm == {ssm_policy.policy_name_for("d-ssm"), "access-connector-ssm-orphan"}
    assert all("AddedByHand" in i.attributes["details"] for i in ssm_found["foreign_access"])
    ic_found = problems("identity_center_assignment")
    assert [i.attributes["grant_key"] for i in ic_found["record_without_effect"]] == [ledger.grant_key("d-ic")]
    assert list(ic_found) == ["record_without_effect"]
    eks_found = problems("eks_cluster")
    assert list(eks_found) == ["foreign_access"]
    assert "AmazonEKSAdminPolicy" in eks_found["foreign_access"][0].attributes["details"]
    assert all(i.account_id in (account, c.account) and i.id for i in found)
