"""EC2 through Systems Manager end to end against the sandbox: sync -> grant -> the policy read back and a
session started as the requester -> revoke -> session terminated, policy gone. The sandbox authorises the
requester's StartSession / TerminateSession from the role's own policies (tag sandbox:enforce-iam)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from google.protobuf import struct_pb2

from connector.errors import ErrorCode
from connector.integrations.base import JobContext
from connector.integrations.ec2_ssm import policy as ssm_policy
from connector.sandbox import ssm_sessions
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


def _account(sb: Any) -> str:
    return str(sb.seed_info.account("prod-0000").id)


def _trust_account(account: str) -> str:
    statement = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture(scope="module")
def fleet(sandbox: Any) -> dict[str, str]:
    """In one account: an instance role with AmazonSSMManagedInstanceCore and its profile; a role without it;
    instances online, offline (agent lost), without a profile, with the wrong role; the requester's role."""
    sb, account = sandbox, _account(sandbox)
    iam, ec2 = admin(sb, "iam", account), admin(sb, "ec2", account, REGION)
    iam.create_role(RoleName="ec2-ssm", AssumeRolePolicyDocument=EC2_TRUST)
    iam.attach_role_policy(RoleName="ec2-ssm", PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
    iam.create_instance_profile(InstanceProfileName="ec2-ssm")
    iam.add_role_to_instance_profile(InstanceProfileName="ec2-ssm", RoleName="ec2-ssm")
    iam.create_role(RoleName="ec2-plain", AssumeRolePolicyDocument=EC2_TRUST)
    iam.create_instance_profile(InstanceProfileName="ec2-plain")
    iam.add_role_to_instance_profile(InstanceProfileName="ec2-plain", RoleName="ec2-plain")
    ami = ec2.describe_images()["Images"][0]["ImageId"]

    def instance(name: str, profile: str | None) -> str:
        extra: dict[str, Any] = {"IamInstanceProfile": {"Name": profile}} if profile else {}
        tags = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}]
        made = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=tags, **extra)
        return str(made["Instances"][0]["InstanceId"])

    ids = {
        "web": instance("web", "ec2-ssm"),
        "db": instance("db", "ec2-ssm"),
        "offline": instance("offline", "ec2-ssm"),
        "bare": instance("bare", None),
        "wrong-role": instance("wrong-role", "ec2-plain"),
    }
    ssm_sessions.set_agent(account, REGION, ids["offline"], online=False)
    iam.create_role(
        RoleName="dev-ssm",
        AssumeRolePolicyDocument=_trust_account(account),
        Tags=[{"Key": ssm_sessions.ENFORCE_TAG, "Value": "true"}],
    )
    return ids


def _requester(sb: Any, session_name: str = "alice", role: str = "dev-ssm") -> Any:
    """An SSM client acting as the requester: the role (dev-ssm), assumed from inside its account."""
    account = _account(sb)
    sts = sb.account_session(account).client("sts", endpoint_url=sb.endpoint)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName=session_name)["Credentials"]
    session = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=REGION,
    )
    return session.client("ssm", endpoint_url=sb.endpoint)


def _target(sb: Any, instances: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "resource_type": "ec2_ssm_session",
        "account_id": _account(sb),
        "region": REGION,
        "role": "dev-ssm",
        "instances": instances,
    } | extra


def _sync(sb: Any, types: list[str], **overrides: Any) -> list[Any]:
    s = struct_pb2.Struct()
    s.update(settings(sb) | overrides)
    j = pb.Job(
        id="sync-ec2",
        attempt=1,
        integration=pb.Integration(id="int-aws", type="aws_organization", settings=s),
        sync=pb.SyncJob(resource_types=types, account_ids=[_account(sb)]),
    )
    items: list[Any] = []
    ctx = JobContext(job_id=j.id, attempt=1, connector_id="sandbox-connector-0001", integration_id="int-aws")
    ctx.emit = items.append
    out = dispatcher(sb).execute(j, ctx)
    assert out.outcome == "succeeded", out.error
    return items


def _denied(call: Any) -> str:
    with pytest.raises(Exception) as raised:
        call()
    return str(raised.value)


def test_sync_says_which_instances_sessions_can_reach_and_why_not(sandbox, fleet):
    items = {i.attributes["instance_id"]: i for i in _sync(sandbox, ["ec2_instance"]) if i.type == "ec2.instance"}
    assert set(fleet.values()) <= set(items)
    web = items[fleet["web"]].attributes
    assert web["reachable"] and web["ssm"]["managed"] and web["ssm"]["ping_status"] == "Online"
    assert web["ssm"]["agent_version"] and web["tags"] == {"Name": "web"}
    assert web["instance_profile_arn"].endswith("instance-profile/ec2-ssm")
    reasons = {name: items[fleet[name]].attributes["unreachable_reason"] for name in ("offline", "bare", "wrong-role")}
    assert "offline" in reasons["offline"] and "ConnectionLost" in reasons["offline"]
    assert "no instance profile" in reasons["bare"]
    assert "ec2-plain" in reasons["wrong-role"] and "AmazonSSMManagedInstanceCore" in reasons["wrong-role"]
    assert not any(items[fleet[n]].attributes["reachable"] for n in ("offline", "bare", "wrong-role"))
    # `regions: enabled`: each enabled region of the account, found through DescribeRegions.
    found = _sync(sandbox, ["ec2_instance"], regions="enabled")
    assert {i.attributes["instance_id"] for i in found if i.type == "ec2.instance"} >= set(fleet.values())
    assert not [i for i in found if i.type == "error"]


def test_grant_session_revoke_end_to_end(sandbox, fleet):
    sb, d, account = sandbox, dispatcher(sandbox), _account(sandbox)
    iam = admin(sb, "iam", account)
    requester = _requester(sb)
    assert "not authorized" in _denied(lambda: requester.start_session(Target=fleet["web"]))

    target = _target(sb, [fleet["web"], fleet["offline"]])
    granted = ok(run(d, job(sb, "grant", "ssm-1", "alice@example.com", target)))
    assert granted["connect"]["shell"][0] == f"aws ssm start-session --target {fleet['web']} --region {REGION}"
    name = ssm_policy.policy_name_for("ssm-1")
    doc = iam.get_role_policy(RoleName="dev-ssm", PolicyName=name)["PolicyDocument"]
    start = next(s for s in doc["Statement"] if s["Sid"] == "StartSessionOnGrantedInstances")
    assert sorted(start["Resource"]) == sorted(
        [
            f"arn:aws:ec2:{REGION}:{account}:instance/{fleet['web']}",
            f"arn:aws:ec2:{REGION}:{account}:instance/{fleet['offline']}",
            f"arn:aws:ssm:{REGION}:{account}:document/SSM-SessionManagerRunShell",
        ]
    )
    own = next(s for s in doc["Statement"] if s["Sid"] == "EndOwnSessions")
    assert own["Condition"] == {"StringLike": {"ssm:resourceTag/aws:ssmmessages:session-id": ["${aws:userid}"]}}
    tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName="dev-ssm")["Tags"]}
    assert tags[ssm_policy.record_key("ssm-1")].endswith(f"ssm={name} region={REGION}")

    # The same job again changes nothing (same policy, same record).
    before = mutating_calls(sb)
    ok(run(d, job(sb, "grant", "ssm-1", "alice@example.com", target)))
    assert len(iam.list_role_policies(RoleName="dev-ssm")["PolicyNames"]) == 1
    assert mutating_calls(sb).get("iam:TagRole", 0) == before.get("iam:TagRole", 0)

    # As the requester: a session on the granted instance; not on another one, not with SSH (not granted).
    session = requester.start_session(Target=fleet["web"])["SessionId"]
    assert "not authorized" in _denied(lambda: requester.start_session(Target=fleet["db"]))
    ssh = "AWS-StartSSHSession"
    assert "not authorized" in _denied(lambda: requester.start_session(Target=fleet["web"], DocumentName=ssh))
    assert "TargetNotConnected" in _denied(lambda: requester.start_session(Target=fleet["offline"]))
    # Their own session they may end; another person's session on the same role they may not.
    other = _requester(sb, "bob").start_session(Target=fleet["web"])["SessionId"]
    assert "not authorized" in _denied(lambda: requester.terminate_session(SessionId=other))
    mine = requester.start_session(Target=fleet["web"])["SessionId"]
    requester.terminate_session(SessionId=mine)

    revoked = ok(run(d, job(sb, "revoke", "ssm-1", "alice@example.com", _target(sb, []))))
    assert sorted(revoked["sessions_terminated"]) == sorted([session, other])
    active = admin(sb, "ssm", account, REGION).describe_sessions(State="Active")["Sessions"]
    assert not [s for s in active if "assumed-role/dev-ssm/" in s["Owner"]]
    assert name not in iam.list_role_policies(RoleName="dev-ssm")["PolicyNames"]
    assert ssm_policy.record_key("ssm-1") not in {t["Key"] for t in iam.list_role_tags(RoleName="dev-ssm")["Tags"]}
    assert "not authorized" in _denied(lambda: requester.start_session(Target=fleet["web"]))
    again = ok(run(d, job(sb, "revoke", "ssm-1", "alice@example.com", _target(sb, []))))
    assert again["already_revoked"] and again["calls"] == []


def test_refusals_before_any_change(sandbox, fleet):
    sb, d = sandbox, dispatcher(sandbox)
    before = mutating_calls(sb)
    out = run(d, job(sb, "grant", "ssm-ssh", "alice", _target(sb, [fleet["web"]], documents=["ssh"])))
    assert out.error.code == ErrorCode.GUARDRAIL_DENIED and "ssm_session_documents" in out.error.message
    many = [f"i-{n:017x}" for n in range(101)]
    out = run(d, job(sb, "grant", "ssm-many", "alice", _target(sb, many)))
    assert out.error.code == ErrorCode.GUARDRAIL_DENIED and "at most 100" in out.error.message
    out = run(d, job(sb, "grant", "ssm-gone", "alice", _target(sb, [fleet["web"], "i-0123456789abcdef0"])))
    assert out.error.code == ErrorCode.NOT_FOUND and "['i-0123456789abcdef0']" in out.error.message
    out = run(d, job(sb, "grant", "ssm-bad", "alice", _target(sb, ["i-nothex"])))
    assert out.error.code == ErrorCode.INVALID_JOB and "target.instances" in out.error.message
    dry = ok(run(d, job(sb, "grant", "ssm-dry", "alice", _target(sb, [fleet["web"]]), dry_run=True)))
    assert [c["operation"] for c in dry["calls"]] == ["tag_role", "put_role_policy"]
    assert mutating_calls(sb) == before


def test_port_forwarding_when_the_integration_allows_it(sandbox, fleet, monkeypatch):
    import tests.jit.conftest as jit

    sb = sandbox
    monkeypatch.setattr(jit, "settings", lambda s: settings(s) | {"ssm_session_documents": "shell, port_forwarding"})
    d = dispatcher(sb)
    target = _target(sb, [fleet["db"]], documents=["port_forwarding"])
    granted = ok(run(d, job(sb, "grant", "ssm-pf", "alice", target)))
    assert "AWS-StartPortForwardingSession" in granted["connect"]["port_forwarding"]
    requester = _requester(sb)
    doc = "AWS-StartPortForwardingSession"
    requester.start_session(Target=fleet["db"], DocumentName=doc, Parameters={"portNumber": ["5432"]})
    assert "not authorized" in _denied(lambda: requester.start_session(Target=fleet["db"]))  # no shell
    ok(run(d, job(sb, "revoke", "ssm-pf", "alice", _target(sb, []))))


def test_audit_counts_the_roles_sessions_from_the_session_history(sandbox, fleet, tmp_path):
    """enable_audit: grant -> sessions as the requester (one ended by them, one ended by the revoke) -> revoke
    -> the sweep summarises the role's sessions from DescribeSessions (History and Active), nobody else's."""
    from connector.jobs.expiry import ExpirySweeper
    from connector.jobs.grant_audit import GrantAudit

    sb, account = sandbox, _account(sandbox)
    role = "dev-ssm-audited"  # its own role: the window's clock-skew margin would count the other tests' sessions
    admin(sb, "iam", account).create_role(
        RoleName=role,
        AssumeRolePolicyDocument=_trust_account(account),
        Tags=[{"Key": ssm_sessions.ENFORCE_TAG, "Value": "true"}],
    )
    d = dispatcher(sb)
    trail = GrantAudit(tmp_path / "audit-windows.json", settle_seconds=0)
    sweeper = ExpirySweeper(d.registry, d.services, audit_trail=trail)
    d.listener = sweeper

    def audited(j: Any) -> Any:
        j.integration.settings.update({"enable_audit": True})
        return j

    target = _target(sb, [fleet["web"], fleet["db"]], role=role)
    ok(run(d, audited(job(sb, "grant", "ssm-audit", "alice", target))))
    (window,) = trail._windows.values()
    assert window.subject.source == "ssm_sessions"
    assert sorted(window.subject.resources) == sorted([fleet["web"], fleet["db"]])

    requester = _requester(sb, "alice", role=role)
    ended = requester.start_session(Target=fleet["web"])
    requester.terminate_session(SessionId=ended["SessionId"])
    requester.start_session(Target=fleet["web"])  # still open at the revoke, which ends it
    requester.start_session(Target=fleet["db"])
    admin(sb, "ssm", account, REGION).start_session(Target=fleet["web"])  # an administrator: not counted

    revoked = ok(run(d, audited(job(sb, "revoke", "ssm-audit", "alice", _target(sb, [], role=role)))))
    assert len(revoked["sessions_terminated"]) == 2
    (event,) = [e for e in sweeper.sweep() if e.type == "grant.audit"]
    details = event.details
    assert event.outcome == "succeeded" and details["source"] == "ssm_sessions"
    assert details["principal"] == f"arn:aws:iam::{account}:role/{role}"
    assert details["by_action"] == {
        f"SSM-SessionManagerRunShell {fleet['web']}": 2,
        f"SSM-SessionManagerRunShell {fleet['db']}": 1,
    }
    assert details["events"] == 3 and details["errors"] == 0 and not details["truncated"]
    assert sorted(details["resources"]) == sorted([fleet["web"], fleet["db"]])
    assert details["first"] <= details["last"] and "session logging" in details["notes"][0]
    assert ended["TokenValue"] not in json.dumps(details) and ended["SessionId"] not in json.dumps(details)
    event.to_proto()  # fits ReportEvents
    assert [e for e in sweeper.sweep() if e.type == "grant.audit"] == []  # once
