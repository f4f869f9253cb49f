"""`connector doctor` with ec2_instance in resource_types: the EC2 and SSM reads answer in every sampled account
and region, and a summary of how many running instances Session Manager reaches, with the reasons for the
others (the sync's own reasoning, connector.integrations.aws_organization.ec2_inventory)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector.doctor import EXIT_FAILED, EXIT_OK
from connector.sandbox import ssm_sessions
from tests.doctor.conftest import failed, good_settings, run_doctor

pytestmark = pytest.mark.timeout(120)
EC2_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)
TYPES = ["organization", "ec2_instance"]


def _admin(sb: Any, service: str, account: str, region: str = "us-east-1") -> Any:
    client = sb.client(service, region)
    client.meta.events.register(
        "before-call.*.*", lambda params, **_: params["headers"].__setitem__("x-moto-account-id", account)
    )
    return client


@pytest.fixture(scope="module")
def fleet(sandbox: Any) -> str:
    """In one sampled account: two reachable instances, one offline, one without a profile, one whose role lacks
    AmazonSSMManagedInstanceCore, and a stopped one (not counted)."""
    account = sandbox.seed_info.clusters[0].account
    iam, ec2 = _admin(sandbox, "iam", account), _admin(sandbox, "ec2", account)
    for role, core in (("doctor-ssm", True), ("doctor-plain", False)):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=EC2_TRUST)
        if core:
            iam.attach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
        iam.create_instance_profile(InstanceProfileName=role)
        iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
    ami = ec2.describe_images()["Images"][0]["ImageId"]

    def instance(profile: str | None) -> str:
        extra: dict[str, Any] = {"IamInstanceProfile": {"Name": profile}} if profile else {}
        return str(ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, **extra)["Instances"][0]["InstanceId"])

    instance("doctor-ssm")
    instance("doctor-ssm")
    ssm_sessions.set_agent(account, "us-east-1", instance("doctor-ssm"), online=False)
    instance(None)
    instance("doctor-plain")
    ec2.stop_instances(InstanceIds=[instance("doctor-ssm")])
    return account


def test_reachable_instances_and_why_not(sandbox, control_plane, capsys, tmp_path, fleet):
    settings = good_settings(sandbox, resource_types=TYPES)
    code, _, checks = run_doctor(capsys, tmp_path, control_plane.env(), settings)
    assert code == EXIT_OK, failed(checks)
    check = checks["ec2_ssm"]
    assert check["status"] == "warn", check
    message = check["message"]
    assert "2 of 5 running instance(s) in the sampled accounts are reachable by Session Manager" in message
    assert "1 x no instance profile" in message
    assert "1 x role doctor-plain of the instance profile lacks the AmazonSSMManagedInstanceCore" in message
    assert "1 x the SSM agent is offline;" in message or message.endswith("1 x the SSM agent is offline")
    assert "LastPing" not in message and "last ping" not in message  # grouped without per-instance details
    assert "ec2.instance" in check["fix"]
    for service in ("ec2", "ssm"):  # the endpoints those reads resolve to
        assert checks[f"aws.endpoint:{service}:eu-west-1"]["status"] == "pass"


def test_all_reachable_passes(sandbox, control_plane, capsys, tmp_path, fleet):
    """Another account (its instances all reachable, or none) only: a PASS with the count."""
    other = next(
        a.id
        for a in sandbox.seed_info.accounts[1:]
        if a.state == "ACTIVE" and a.id not in (fleet, sandbox.seed_info.account_without_member_role)
    )
    excluded = [a.id for a in sandbox.seed_info.accounts if a.id != other]
    settings = good_settings(sandbox, resource_types=TYPES, excluded_account_ids=excluded)
    code, _, checks = run_doctor(capsys, tmp_path, control_plane.env(), settings)
    assert code == EXIT_OK, failed(checks)
    assert checks["ec2_ssm"]["status"] == "pass" and "0 of 0 running" in checks["ec2_ssm"]["message"]


@pytest.mark.parametrize(
    ("service", "operation", "code", "permission"),
    [
        ("ssm", "DescribeInstanceInformation", "AccessDeniedException", "ssm:DescribeInstanceInformation"),
        ("ec2", "DescribeInstances", "UnauthorizedOperation", "ec2:DescribeInstances"),
    ],
)
def test_a_refused_read_fails_naming_the_permission(
    sandbox, control_plane, capsys, tmp_path, fleet, service, operation, code, permission
):
    sandbox.faults.add(
        kind="error", service=service, operation=operation, account=fleet, region="eu-west-1", status=403, code=code
    )
    settings = good_settings(sandbox, resource_types=TYPES)
    exit_code, _, checks = run_doctor(capsys, tmp_path, control_plane.env(), settings)
    assert exit_code == EXIT_FAILED
    assert failed(checks) == [f"ec2_ssm:{fleet}/eu-west-1"]
    check = checks[f"ec2_ssm:{fleet}/eu-west-1"]
    assert permission in check["message"] and code in check["message"]
    assert permission in check["fix"] and "cloudformation/member-account-role.yaml" in check["fix"]
    assert "ec2_ssm" not in checks  # no summary over a partial reading
