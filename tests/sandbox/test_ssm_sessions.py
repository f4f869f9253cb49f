"""The sandbox's Systems Manager session API (moto lacks it), through botocore: shapes, paging, errors, and
the IAM checks it makes for roles tagged sandbox:enforce-iam."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from connector.sandbox import Sandbox, ssm_sessions
from connector.sandbox.iam_eval import Request, allowed

pytestmark = pytest.mark.timeout(60)
ACCOUNT = "123456789012"
EC2_TRUST = json.dumps(
    {"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox.start() as sandbox:
        iam = sandbox.client("iam")
        iam.create_role(RoleName="ec2-ssm", AssumeRolePolicyDocument=EC2_TRUST)
        iam.attach_role_policy(RoleName="ec2-ssm", PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
        iam.create_instance_profile(InstanceProfileName="ec2-ssm")
        iam.add_role_to_instance_profile(InstanceProfileName="ec2-ssm", RoleName="ec2-ssm")
        yield sandbox


def _instances(sb: Sandbox, n: int, **extra: Any) -> list[str]:
    ec2 = sb.client("ec2")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    return [
        ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, **extra)["Instances"][0]["InstanceId"] for _ in range(n)
    ]


def test_instance_information_pages_filters_and_errors(sb):
    ssm = sb.client("ssm")
    managed = _instances(sb, 7, IamInstanceProfile={"Name": "ec2-ssm"})
    unmanaged = _instances(sb, 1)
    ssm_sessions.set_agent(ACCOUNT, "us-east-1", managed[0], online=False, version="3.2.0.0")
    ssm_sessions.set_agent(ACCOUNT, "us-east-1", managed[1], installed=False)
    pages = list(ssm.get_paginator("describe_instance_information").paginate(PaginationConfig={"PageSize": 5}))
    assert [len(p["InstanceInformationList"]) for p in pages] == [5, 1]
    seen = {i["InstanceId"]: i for p in pages for i in p["InstanceInformationList"]}
    assert set(seen) == set(managed) - {managed[1]} and unmanaged[0] not in seen
    assert seen[managed[0]]["PingStatus"] == "ConnectionLost" and seen[managed[0]]["AgentVersion"] == "3.2.0.0"
    assert {seen[i]["PingStatus"] for i in managed[2:]} == {"Online"}
    lost = ssm.describe_instance_information(Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}])
    assert [i["InstanceId"] for i in lost["InstanceInformationList"]] == [managed[0]]
    with pytest.raises(ClientError) as err:
        ssm.describe_instance_information(Filters=[{"Key": "Colour", "Values": ["red"]}])
    assert err.value.response["Error"]["Code"] == "InvalidFilterKey"
    with pytest.raises(ClientError) as err:
        ssm.describe_instance_information(MaxResults=51)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ParamValidationError):
        ssm.describe_instance_information(MaxResults=4)
    with pytest.raises(ClientError) as err:
        ssm.describe_instance_information(NextToken="garbage")
    assert err.value.response["Error"]["Code"] == "InvalidNextToken"
    assert ssm.get_connection_status(Target=managed[2])["Status"] == "connected"
    assert ssm.get_connection_status(Target=managed[0])["Status"] == "notconnected"


def test_sessions_start_page_and_terminate(sb):
    ssm = sb.client("ssm")
    target = _instances(sb, 1, IamInstanceProfile={"Name": "ec2-ssm"})[0]
    started = [ssm.start_session(Target=target, Reason="on call")["SessionId"] for _ in range(3)]
    assert all(s.startswith("root-") for s in started)
    pages = list(
        ssm.get_paginator("describe_sessions").paginate(
            State="Active", Filters=[{"key": "Target", "value": target}], PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(p["Sessions"]) for p in pages] == [2, 1]
    session = pages[0]["Sessions"][0]
    assert session["Status"] == "Connected" and session["Owner"] == f"arn:aws:iam::{ACCOUNT}:root"
    assert session["DocumentName"] == "SSM-SessionManagerRunShell" and session["Reason"] == "on call"
    ssm.terminate_session(SessionId=started[0])
    ssm.terminate_session(SessionId=started[0])  # idempotent, as the model (no not-found error)
    history = ssm.describe_sessions(State="History", Filters=[{"key": "Target", "value": target}])["Sessions"]
    assert [s["SessionId"] for s in history] == [started[0]] and history[0]["Status"] == "Terminated"
    with pytest.raises(ClientError) as err:
        ssm.start_session(Target=target, DocumentName="AWS-RunShellScript")
    assert err.value.response["Error"]["Code"] == "InvalidDocument"
    with pytest.raises(ClientError) as err:
        ssm.start_session(Target="i-0123456789abcdef0")
    assert err.value.response["Error"]["Code"] == "TargetNotConnected"


def test_the_policy_evaluator_follows_aws_order():
    ctx = {"aws:userid": "AROA1:alice", "ssm:resourceTag/aws:ssmmessages:session-id": "AROA1:alice"}
    own = {
        "Effect": "Allow",
        "Action": "ssm:TerminateSession",
        "Resource": "arn:aws:ssm:*:*:session/*",
        "Condition": {"StringLike": {"ssm:resourceTag/aws:ssmmessages:session-id": ["${aws:userid}"]}},
    }
    doc = {"Statement": [own]}
    mine = Request("ssm:TerminateSession", "arn:aws:ssm:us-east-1:1:session/alice-1", ctx)
    theirs = Request(mine.action, mine.resource, ctx | {"ssm:resourceTag/aws:ssmmessages:session-id": "AROA1:bob"})
    assert allowed([doc], mine) and not allowed([doc], theirs)
    deny = {"Effect": "Deny", "Action": "ssm:*", "Resource": "*"}
    assert not allowed([doc, {"Statement": [deny]}], mine)
    odd = own | {"Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}}
    assert not allowed([{"Statement": [odd]}], mine)  # an operator it cannot judge never grants
    assert not allowed([{"Statement": [deny | {"Condition": odd["Condition"]}]}, doc], mine)  # ...always denies
    assert allowed([{"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}], mine)
