"""The audit trail per grant (enable_audit: true), end to end: grant -> the principal acts -> revoke -> the
expiry loop's sweep summarises its CloudTrail events (IAM) or the cluster's audit log (EKS) as one event."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from connector.jobs.expiry import ExpirySweeper
from connector.jobs.grant_audit import GrantAudit
from tests.jit.conftest import admin, dispatcher, job, ok, run

pytestmark = pytest.mark.timeout(120)
MANAGEMENT_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def _audited(sb, j):
    j.integration.settings.update({"enable_audit": True})
    return j


def _wired(sb, tmp_path=None):
    d = dispatcher(sb)
    trail = GrantAudit(tmp_path / "audit-windows.json" if tmp_path else None, settle_seconds=0)
    sweeper = ExpirySweeper(d.registry, d.services, audit_trail=trail)
    d.listener = sweeper
    return d, sweeper, trail


def _as_role(sb, role_arn, region="us-east-1"):
    creds = sb.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="alice-session")["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    ), creds


def test_iam_grant_activity_from_cloudtrail(sandbox, tmp_path):
    sb = sandbox
    account = sb.seed_info.account("dev-0001").id
    iam = admin(sb, "iam", account)
    role_arn = iam.create_role(RoleName="audit-reader", AssumeRolePolicyDocument=MANAGEMENT_TRUST)["Role"]["Arn"]
    sqs = admin(sb, "sqs", account)
    url = sqs.create_queue(QueueName="audited")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    d, sweeper, trail = _wired(sb, tmp_path)
    target = {
        "resource_type": "iam_resource_access",
        "account_id": account,
        "role": "audit-reader",
        "resources": [queue_arn],
    }
    ok(run(d, _audited(sb, job(sb, "grant", "audit-1", "alice", target))))
    ok(run(d, _audited(sb, job(sb, "grant", "audit-1", "alice", target))))  # re-delivered: one window
    assert trail.pending == 1
    assert not [e for e in sweeper.sweep() if e.type == "grant.audit"]  # still live: nothing yet

    session, creds = _as_role(sb, role_arn)
    queue = session.client("sqs", endpoint_url=sb.endpoint)
    queue.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    queue.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    queue.send_message(QueueUrl=url, MessageBody="hello")  # a data event: not in the event history
    rule = sb.faults.add(
        kind="error", service="sqs", operation="ListQueues", account=account, status=403, code="AccessDenied"
    )
    try:
        with pytest.raises(ClientError):
            queue.list_queues()
    finally:
        sb.faults.remove(rule)
    sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])  # someone else: not counted

    ok(run(d, _audited(sb, job(sb, "revoke", "audit-1", "alice", target))))
    time.sleep(0.01)
    events = [e for e in sweeper.sweep() if e.type == "grant.audit"]
    assert len(events) == 1, events
    e = events[0]
    assert e.outcome == "succeeded" and e.grant_id == "audit-1" and e.id.startswith("audit-")
    d_ = e.details
    assert d_["source"] == "cloudtrail" and d_["principal"] == role_arn and d_["account_id"] == account
    assert d_["by_action"] == {"sqs:GetQueueAttributes": 2, "sqs:ListQueues": 1}, d_
    assert d_["events"] == 3 and d_["errors"] == 1
    assert url in d_["resources"]
    assert any("data events" in n for n in d_["notes"])
    text = json.dumps(d_)
    assert creds["AccessKeyId"] not in text and creds["SessionToken"] not in text and "hello" not in text
    e.to_proto()  # fits ReportEvents
    assert trail.pending == 0 and [x for x in sweeper.sweep() if x.type == "grant.audit"] == []  # once


def test_audit_off_collects_nothing(sandbox):
    sb = sandbox
    account = sb.seed_info.account("dev-0001").id
    d, _sweeper, trail = _wired(sb)
    target = {
        "resource_type": "iam_resource_access",
        "account_id": account,
        "role": "audit-reader",
        "resources": [f"arn:aws:sqs:us-east-1:{account}:audited"],
    }
    ok(run(d, job(sb, "grant", "audit-off", "alice", target)))
    assert trail.pending == 0
    ok(run(d, job(sb, "revoke", "audit-off", "alice", target)))


def _audit_line(principal, username, verb, resource, namespace, code=200):
    return json.dumps(
        {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "verb": verb,
            "user": {
                "username": username,
                "groups": ["system:authenticated"],
                "extra": {"canonicalArn": [principal], "sessionName": ["alice-session"]},
            },
            "objectRef": {"resource": resource, "namespace": namespace},
            "responseStatus": {"code": code},
        }
    )


def test_eks_grant_activity_from_the_cluster_audit_log(sandbox, tmp_path):
    sb = sandbox
    c = next(c for c in sb.seed_info.clusters if c.mode == "API")
    principal = f"arn:aws:iam::{c.account}:role/dev-audit-1"
    d, sweeper, _trail = _wired(sb, tmp_path)
    target = {
        "resource_type": "eks_cluster",
        "account_id": c.account,
        "region": c.region,
        "cluster": c.name,
        "access_policies": ["AmazonEKSViewPolicy"],
        "scope": "namespace",
        "namespaces": ["team-a"],
    }
    ok(run(d, _audited(sb, job(sb, "grant", "audit-eks", principal, target))))
    logs = admin(sb, "logs", c.account, c.region)
    group, stream = f"/aws/eks/{c.name}/cluster", "kube-apiserver-audit-0123456789abcdef"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    other = f"arn:aws:iam::{c.account}:role/someone-else"
    lines = [
        _audit_line(principal, "apono:alice-session", "get", "pods", "team-a"),
        _audit_line(principal, "apono:alice-session", "list", "secrets", "team-a", code=403),
        _audit_line(other, "apono:bob", "delete", "pods", "team-a"),
        _audit_line(principal, "someone-mapped-otherwise", "get", "nodes", ""),
    ]
    logs.put_log_events(
        logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": now, "message": m} for m in lines]
    )
    ok(run(d, _audited(sb, job(sb, "revoke", "audit-eks", principal, target))))
    events = [e for e in sweeper.sweep() if e.type == "grant.audit"]
    assert len(events) == 1, events
    details = events[0].details
    assert details["source"] == "eks_audit_log" and details["cluster"] == c.name
    assert details["by_action"] == {"get pods": 1, "list secrets": 1}
    assert details["errors"] == 1 and details["resources"] == ["namespace/team-a"]


def test_eks_without_audit_logging_says_how_to_turn_it_on(sandbox):
    sb = sandbox
    c = next(c for c in sb.seed_info.clusters if c.mode == "API_AND_CONFIG_MAP")
    principal = f"arn:aws:iam::{c.account}:role/dev-audit-2"
    d, sweeper, _ = _wired(sb)
    target = {
        "resource_type": "eks_cluster",
        "account_id": c.account,
        "region": c.region,
        "cluster": c.name,
        "access_policies": ["AmazonEKSViewPolicy"],
        "scope": "namespace",
        "namespaces": ["team-a"],
    }
    ok(run(d, _audited(sb, job(sb, "grant", "audit-eks-2", principal, target))))
    ok(run(d, _audited(sb, job(sb, "revoke", "audit-eks-2", principal, target))))
    events = [e for e in sweeper.sweep() if e.type == "grant.audit"]
    assert events and events[0].details["events"] == 0
    assert "audit log type" in events[0].details["notes"][0]


def test_windows_survive_a_restart(sandbox, tmp_path):
    sb = sandbox
    account = sb.seed_info.account("dev-0001").id
    d, _, _trail = _wired(sb, tmp_path)
    target = {
        "resource_type": "iam_resource_access",
        "account_id": account,
        "role": "audit-reader",
        "resources": [f"arn:aws:sqs:us-east-1:{account}:audited"],
    }
    ok(run(d, _audited(sb, job(sb, "grant", "audit-restart", "alice", target))))
    assert GrantAudit(tmp_path / "audit-windows.json").pending == 1
    ok(run(d, _audited(sb, job(sb, "revoke", "audit-restart", "alice", target))))
    again = GrantAudit(tmp_path / "audit-windows.json", settle_seconds=0)
    assert again.pending == 1 and next(iter(again._windows.values())).ended is not None


def test_through_the_agent_and_control_plane(sandbox, tmp_path):
    """The shipped path: grant and revoke jobs from the control plane, the agent's sweep loop collects the
    summary and ReportEvents delivers it; the control plane keeps one event however often it is sent."""
    from connector.integrations.base import Services
    from connector.jobs.registry import build_registry
    from connector.v1 import admin_pb2
    from tests.agent.agent_harness import CONNECTOR_ID, AgentThread, agent_env, cp_settings, start_cp, wait_for
    from tests.jit.conftest import settings

    sb = sandbox
    account = sb.seed_info.account("dev-0001").id
    role = "audit-e2e"  # its own role: the window's clock-skew margin would count another test's calls
    role_arn = admin(sb, "iam", account).create_role(RoleName=role, AssumeRolePolicyDocument=MANAGEMENT_TRUST)["Role"][
        "Arn"
    ]
    sqs = admin(sb, "sqs", account)
    url = sqs.create_queue(QueueName="audited-e2e")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    target = {
        "resource_type": "iam_resource_access",
        "account_id": account,
        "role": role,
        "resources": [queue_arn],
    }
    trail = GrantAudit(settle_seconds=0)
    sweeper = ExpirySweeper(
        build_registry(["aws_organization"]), Services(connector_id=CONNECTOR_ID), audit_trail=trail
    )
    audited = settings(sb) | {"enable_audit": True, "external_id": sb.seed_info.external_id}
    with start_cp(cp_settings(tmp_path)) as cp, AgentThread(agent_env(cp.address), sweeper=sweeper, sweep_interval=0.2):
        for kind in ("grant", "revoke"):
            if kind == "revoke":
                session, _ = _as_role(sb, role_arn)
                session.client("sqs", endpoint_url=sb.endpoint).get_queue_attributes(
                    QueueUrl=url, AttributeNames=["All"]
                )
                enqueue = cp.admin.enqueue_revoke
                extra = {}
            else:
                enqueue = cp.admin.enqueue_grant
                extra = {"expires_in": 3600}
            record = enqueue(
                CONNECTOR_ID, "int-aws", "aws_organization", grant_id="audit-e2e", principal="alice",
                target=target, settings=audited, **extra,
            )  # fmt: skip
            done = cp.admin.wait(record.job.id, timeout=60)
            assert done.state == admin_pb2.JOB_STATE_SUCCEEDED, done.error
        wait_for(lambda: cp.admin.events(CONNECTOR_ID, type="grant.audit"), 30, "the audit event reported")
        (event,) = cp.admin.events(CONNECTOR_ID, type="grant.audit")
        assert event.grant_id == "audit-e2e" and event.outcome == 1  # OUTCOME_SUCCEEDED
        details = dict(event.details)
        assert details["principal"] == role_arn and dict(details["by_action"]) == {"sqs:GetQueueAttributes": 1.0}
