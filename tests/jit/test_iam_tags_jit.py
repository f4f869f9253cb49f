"""IAM grants that name resources by tag: resolved to ARNs at grant time, judged and granted as those ARNs."""

from __future__ import annotations

import json

import pytest

from connector.errors import ErrorCode
from connector.integrations import ledger
from connector.jobs.guardrails import Guardrails
from tests.jit.conftest import admin, dispatcher, job, mutating_calls, ok, run

pytestmark = pytest.mark.timeout(120)
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)


def _account(sb):
    return sb.seed_info.account("prod-0002").id


@pytest.fixture(scope="module")
def tagged(sandbox):
    account = _account(sandbox)
    iam = admin(sandbox, "iam", account)
    iam.create_role(RoleName="tag-reader", AssumeRolePolicyDocument=TRUST)
    sqs = admin(sandbox, "sqs", account)
    queues = {}
    for name, team in (("orders", "payments"), ("refunds", "payments"), ("emails", "growth")):
        url = sqs.create_queue(QueueName=name, tags={"team": team})["QueueUrl"]
        queues[name] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for i in range(101):
        sqs.create_queue(QueueName=f"bulk-{i}", tags={"team": "bulk"})
    s3 = admin(sandbox, "s3", account)
    s3.create_bucket(Bucket="payments-ledger")
    s3.put_bucket_tagging(Bucket="payments-ledger", Tagging={"TagSet": [{"Key": "team", "Value": "payments"}]})
    return {"iam": iam, "queues": queues}


def _target(sb, **selection):
    return {"resource_type": "iam_resource_access", "account_id": _account(sb), "role": "tag-reader"} | selection


def test_grant_by_tag_resolves_to_arns_and_revoke_removes_them(sandbox, tagged):
    sb, d = sandbox, dispatcher(sandbox)
    target = _target(sb, resource_tags={"team": "payments"}, service="sqs", access_level="write")
    out = run(d, job(sb, "grant", "tag-1", "alice", target))
    result = ok(out)
    assert out.effect is not None and out.effect["resources"] == 2
    doc = tagged["iam"].get_role_policy(RoleName="tag-reader", PolicyName=result["policy_name"])["PolicyDocument"]
    granted = {r for st in doc["Statement"] for r in st["Resource"]}
    assert granted == {tagged["queues"]["orders"], tagged["queues"]["refunds"]}  # not the growth queue
    assert "sqs:SendMessage" in {a for st in doc["Statement"] for a in st["Action"]}
    # Delivered twice: the same policy, nothing added.
    again = ok(run(d, job(sb, "grant", "tag-1", "alice", target)))
    assert again["policy_name"] == result["policy_name"]
    assert tagged["iam"].list_role_policies(RoleName="tag-reader")["PolicyNames"] == [result["policy_name"]]
    # Revoke needs only the role: the recorded policy goes, the record too.
    ok(run(d, job(sb, "revoke", "tag-1", "alice", _target(sb))))
    assert tagged["iam"].list_role_policies(RoleName="tag-reader")["PolicyNames"] == []
    tags = {t["Key"] for t in tagged["iam"].list_role_tags(RoleName="tag-reader")["Tags"]}
    assert ledger.grant_key("tag-1") not in tags


def test_s3_by_tag_gets_buckets_and_objects(sandbox, tagged):
    sb, d = sandbox, dispatcher(sandbox)
    result = ok(
        run(d, job(sb, "grant", "tag-s3", "alice", _target(sb, resource_tags={"team": ["payments"]}, service="s3")))
    )
    doc = tagged["iam"].get_role_policy(RoleName="tag-reader", PolicyName=result["policy_name"])["PolicyDocument"]
    assert {r for st in doc["Statement"] for r in st["Resource"]} == {
        "arn:aws:s3:::payments-ledger",
        "arn:aws:s3:::payments-ledger/*",
    }
    # A revoke carrying the grant's own target (tags and all) resolves nothing: it deletes the recorded policy.
    target = _target(sb, resource_tags={"team": ["payments"]}, service="s3")
    sb.faults.reset_counts()
    ok(run(d, job(sb, "revoke", "tag-s3", "alice", target)))
    assert "tagging:GetResources" not in sb.faults.counts()["by_operation"]
    assert tagged["iam"].list_role_policies(RoleName="tag-reader")["PolicyNames"] == []


def test_guardrails_judge_the_resolved_arns_not_the_tag(sandbox, tagged):
    sb = sandbox
    orders = tagged["queues"]["orders"]
    policy = Guardrails(max_duration="12h", resources=(orders,))
    d = dispatcher(sb, guardrails=policy)
    sb.faults.reset_counts()
    out = run(d, job(sb, "grant", "tag-deny", "alice", _target(sb, resource_tags={"team": "payments"}, service="sqs")))
    assert out.outcome == "failed" and out.error.code == ErrorCode.GUARDRAIL_DENIED
    assert "refunds" in out.error.message
    assert mutating_calls(sb) == {}
    out = run(d, job(sb, "grant", "tag-deny", "alice", _target(sb, resources=[orders])))
    ok(out)
    ok(run(d, job(sb, "revoke", "tag-deny", "alice", _target(sb))))


def test_too_many_and_none_matched_are_clear_errors(sandbox, tagged):
    sb, d = sandbox, dispatcher(sandbox)
    out = run(d, job(sb, "grant", "tag-bulk", "alice", _target(sb, resource_tags={"team": "bulk"}, service="sqs")))
    assert out.outcome == "failed" and out.error.code == ErrorCode.GUARDRAIL_DENIED and not out.error.retryable
    assert "at most 100" in out.error.message
    out = run(d, job(sb, "grant", "tag-none", "alice", _target(sb, resource_tags={"team": "nobody"}, service="sns")))
    assert out.outcome == "failed" and out.error.code == ErrorCode.NOT_FOUND and not out.error.retryable
    assert "team=nobody" in out.error.message and "sns" in out.error.message
    out = run(d, job(sb, "grant", "tag-bad", "alice", _target(sb, resource_tags={"team": "x"})))
    assert out.outcome == "failed" and "service" in out.error.message and not out.error.retryable
    assert tagged["iam"].list_role_policies(RoleName="tag-reader")["PolicyNames"] == []
