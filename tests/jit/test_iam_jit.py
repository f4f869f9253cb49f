"""IAM resource access (inline role policy) through the Dispatcher against the sandbox."""

from __future__ import annotations

import json

import pytest

from connector.errors import ErrorCode
from connector.integrations import ledger
from connector.integrations.iam_access import policy as iam_policy
from tests.jit.conftest import admin, dispatcher, job, mutating_calls, ok, run

pytestmark = pytest.mark.timeout(120)
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)


def _account(sb):
    return sb.seed_info.account("dev-0001").id


@pytest.fixture(scope="module")
def roles(sandbox):
    iam = admin(sandbox, "iam", _account(sandbox))
    for name in ("app-reader", "app-writer", "app-full"):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)
    return iam


def _target(sb, role="app-reader", resources=(), level="read"):
    return {
        "resource_type": "iam_resource_access",
        "account_id": _account(sb),
        "role": role,
        "resources": list(resources),
        "access_level": level,
    }


def test_grant_revoke_duplicates_and_record(sandbox, roles):
    sb, d = sandbox, dispatcher(sandbox)
    s3 = admin(sb, "s3", _account(sb))
    s3.create_bucket(Bucket="jit-plain-bucket")
    resources = ["arn:aws:s3:::jit-plain-bucket", f"arn:aws:sqs:us-east-1:{_account(sb)}:jobs"]
    first = ok(run(d, job(sb, "grant", "iam-1", "alice", _target(sb, resources=resources))))
    policy = iam_policy.policy_name_for(ledger.grant_key("iam-1"))
    assert first["policy_name"] == policy and first["kms_keys"] == []
    doc = roles.get_role_policy(RoleName="app-reader", PolicyName=policy)["PolicyDocument"]
    actions = {a for st in doc["Statement"] for a in st["Action"]}
    assert {"s3:ListBucket", "s3:GetObject", "sqs:GetQueueAttributes"} <= actions
    assert not {"s3:PutObject", "sqs:SendMessage"} & actions
    tags = {t["Key"]: t["Value"] for t in roles.list_role_tags(RoleName="app-reader")["Tags"]}
    assert tags[ledger.grant_key("iam-1")].endswith(f"policy={policy}")

    ok(run(d, job(sb, "grant", "iam-1", "alice", _target(sb, resources=resources))))
    assert roles.list_role_policies(RoleName="app-reader")["PolicyNames"] == [policy]

    ok(run(d, job(sb, "revoke", "iam-1", "alice", _target(sb))))
    assert roles.list_role_policies(RoleName="app-reader")["PolicyNames"] == []
    sb.faults.reset_counts()
    again = ok(run(d, job(sb, "revoke", "iam-1", "alice", _target(sb))))
    assert again["already_revoked"] is True
    assert set(mutating_calls(sb)) <= {"iam:DeleteRolePolicy"}  # the idempotent delete answers NoSuchEntity
    assert ledger.grant_key("iam-1") not in {t["Key"] for t in roles.list_role_tags(RoleName="app-reader")["Tags"]}


def test_101_resources_refused_before_any_aws_call(sandbox, roles):
    sb, d = sandbox, dispatcher(sandbox)
    resources = [f"arn:aws:sqs:us-east-1:{_account(sb)}:queue-{i}" for i in range(101)]
    sb.faults.reset_counts()
    out = run(d, job(sb, "grant", "iam-101", "alice", _target(sb, resources=resources)))
    assert out.outcome == "failed" and out.error.code == ErrorCode.GUARDRAIL_DENIED and not out.error.retryable
    assert "101 resources" in out.error.message and "tag" in out.error.message
    assert sb.faults.counts()["by_operation"] == {}  # not even an AssumeRole
    ok(run(d, job(sb, "grant", "iam-100", "alice", _target(sb, resources=resources[:100]))))
    ok(run(d, job(sb, "revoke", "iam-100", "alice", _target(sb))))


def test_aggregate_inline_limit_refused_before_the_write(sandbox, roles):
    sb, d = sandbox, dispatcher(sandbox)
    filler = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sqs:GetQueueUrl",
                "Resource": [f"arn:aws:sqs:us-east-1:{_account(sb)}:existing-queue-{i:04d}" for i in range(170)],
            }
        ],
    }
    assert 9_000 < iam_policy.policy_chars(filler) < 10_240
    roles.put_role_policy(
        RoleName="app-full", PolicyName="customer-policy", PolicyDocument=json.dumps(filler, indent=4)
    )
    resources = [f"arn:aws:sns:us-east-1:{_account(sb)}:topic-{i}" for i in range(30)]
    sb.faults.reset_counts()
    out = run(d, job(sb, "grant", "iam-big", "alice", _target(sb, role="app-full", resources=resources)))
    assert out.outcome == "failed" and out.error.code == ErrorCode.GUARDRAIL_DENIED
    assert "10240" in out.error.message and "already there" in out.error.message
    assert mutating_calls(sb) == {}
    assert roles.list_role_policies(RoleName="app-full")["PolicyNames"] == ["customer-policy"]


def test_kms_key_added_for_bucket_encrypted_with_customer_key(sandbox, roles):
    sb, d = sandbox, dispatcher(sandbox)
    account = _account(sb)
    kms = admin(sb, "kms", account)
    key = kms.create_key(Description="bucket key")["KeyMetadata"]
    s3 = admin(sb, "s3", account)
    for bucket, key_ref in (("jit-cmk-arn", key["Arn"]), ("jit-cmk-id", key["KeyId"])):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_ref}}
                ]
            },
        )
    s3.create_bucket(Bucket="jit-aws-managed")
    s3.put_bucket_encryption(
        Bucket="jit-aws-managed",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
        },
    )
    resources = ["arn:aws:s3:::jit-cmk-arn", "arn:aws:s3:::jit-cmk-id", "arn:aws:s3:::jit-aws-managed"]
    result = ok(
        run(d, job(sb, "grant", "iam-kms", "alice", _target(sb, role="app-writer", resources=resources, level="write")))
    )
    assert result["kms_keys"] == [key["Arn"]]
    doc = roles.get_role_policy(RoleName="app-writer", PolicyName=result["policy_name"])["PolicyDocument"]
    kms_st = [st for st in doc["Statement"] if st["Resource"] == [key["Arn"]]]
    assert kms_st and set(kms_st[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey"}
    ok(run(d, job(sb, "revoke", "iam-kms", "alice", _target(sb, role="app-writer"))))
    assert roles.list_role_policies(RoleName="app-writer")["PolicyNames"] == []


def test_missing_role_and_unsupported_service(sandbox, roles):
    sb, d = sandbox, dispatcher(sandbox)
    out = run(d, job(sb, "grant", "iam-x", "alice", _target(sb, role="nope", resources=["arn:aws:s3:::b"])))
    assert out.error.code == ErrorCode.NOT_FOUND and "nope" in out.error.message
    out = run(
        d,
        job(sb, "grant", "iam-x", "alice", _target(sb, resources=["arn:aws:ec2:us-east-1:123456789012:instance/i-1"])),
    )
    assert out.error.code == ErrorCode.INVALID_JOB and "ec2" in out.error.message


def test_dry_run_makes_no_mutating_call(sandbox, roles):
    sb, d = sandbox, dispatcher(sandbox)
    sb.faults.reset_counts()
    result = ok(
        run(
            d,
            job(
                sb, "grant", "iam-dry", "alice", _target(sb, resources=["arn:aws:s3:::jit-plain-bucket"]), dry_run=True
            ),
        )
    )
    assert [c["operation"] for c in result["calls"]] == ["tag_role", "put_role_policy"]
    assert mutating_calls(sb) == {}
    assert roles.list_role_policies(RoleName="app-reader")["PolicyNames"] == []


def test_rds_db_connect_on_exactly_one_database_user(sandbox, roles):
    """The database kind's IAM grant names the rds-db:connect resource of the user it made; this kind grants it."""
    sb, d = sandbox, dispatcher(sandbox)
    user_arn = f"arn:aws:rds-db:us-east-1:{_account(sb)}:dbuser:db-ABCDEFGHIJKL/ac_0123456789abcdef01234567"
    ok(run(d, job(sb, "grant", "iam-rds", "alice", _target(sb, role="app-writer", resources=[user_arn]))))
    policy = iam_policy.policy_name_for(ledger.grant_key("iam-rds"))
    doc = roles.get_role_policy(RoleName="app-writer", PolicyName=policy)["PolicyDocument"]
    assert [(st["Action"], st["Resource"]) for st in doc["Statement"]] == [(["rds-db:connect"], [user_arn])]
    ok(run(d, job(sb, "revoke", "iam-rds", "alice", _target(sb, role="app-writer"))))
    assert roles.list_role_policies(RoleName="app-writer")["PolicyNames"] == []
