"""`connector doctor` against the sandbox and a TLS control plane: all green, then one planted fault per
test, each reported as a failed (or warned) check with its fix and the right exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from connector.doctor import EXIT_FAILED, EXIT_OK
from tests.doctor.conftest import failed, good_settings, make_tls, run_doctor
from tests.faults.conftest import free_port, member_eks

pytestmark = pytest.mark.timeout(120)


def test_all_green(sandbox, control_plane, capsys, tmp_path):
    code, doc, checks = run_doctor(capsys, tmp_path, control_plane.env(), good_settings(sandbox))
    info = sandbox.seed_info
    assert code == EXIT_OK, doc
    assert doc["ok"] is True and doc["summary"]["fail"] == 0 and doc["summary"]["warn"] == 0, doc
    members = sorted(i for i in checks if i.startswith("aws.member_role:"))
    active = [a.id for a in info.accounts[1:] if a.state == "ACTIVE" and a.id != info.account_without_member_role]
    assert members == sorted(f"aws.member_role:{a}" for a in active)
    for check_id in (
        "config",
        "control_plane.reachable",
        "control_plane.tls",
        "control_plane.token",
        "settings",
        "aws.identity",
        "aws.management_role",
        "aws.organizations",
        "aws.region:us-east-1",
        "aws.region:eu-west-1",
        "eks.auth_mode",
        "guardrails",
    ):
        assert checks[check_id]["status"] == "pass", checks[check_id]
    assert "ConnectorTaskRole" in checks["aws.identity"]["message"]
    # The sync's own scope: every account but the excluded one, which is named with the setting that skips it.
    message = checks["aws.organizations"]["message"]
    assert f"{len(info.accounts) - 1} accounts in the sync's scope" in message
    assert f"{info.account_without_member_role} (excluded_account_ids)" in message
    # Which endpoint each service resolved to, and why (here the sandbox's AWS_ENDPOINT_URL), direct.
    for check_id in (
        "aws.endpoint:sts:us-east-1",
        "aws.endpoint:organizations:us-east-1",
        "aws.endpoint:eks:eu-west-1",
    ):
        assert checks[check_id]["status"] == "pass"
        assert f"{sandbox.endpoint} [AWS_ENDPOINT_URL; direct]" in checks[check_id]["message"], checks[check_id]


def test_an_excluded_ou_is_not_checked(sandbox, control_plane, capsys, tmp_path):
    """The false FAIL of the issue: the account without the member role sits in an OU the settings exclude,
    so the sync never visits it, and doctor (sharing the sync's scoping) neither checks it nor says to exclude
    the account."""
    info = sandbox.seed_info
    missing = info.account(next(a.name for a in info.accounts if a.id == info.account_without_member_role))
    excluded_ou = info.ou_ids[missing.ou_path]
    in_that_ou = {a.id for a in info.accounts if a.ou_path == missing.ou_path}
    settings = good_settings(sandbox, excluded_account_ids=[], excluded_ou_ids=[excluded_ou])
    code, _doc, checks = run_doctor(capsys, tmp_path, control_plane.env(), settings)
    assert code == EXIT_OK, failed(checks)
    assert not [i for i in checks if i.split(":")[-1] in in_that_ou]
    assert f"{excluded_ou} (excluded_ou_ids)" in checks["aws.organizations"]["message"]
    assert any(i.startswith("aws.member_role:") for i in checks)  # the other accounts still are


def test_organizational_unit_scope(sandbox, control_plane, capsys, tmp_path):
    info = sandbox.seed_info
    security = info.ou_ids["Root/Security"]
    settings = good_settings(sandbox, excluded_account_ids=[], organizational_unit_id=security)
    code, _, checks = run_doctor(capsys, tmp_path, control_plane.env(), settings)
    assert code == EXIT_OK, failed(checks)
    members = sorted(i.split(":")[1] for i in checks if i.startswith("aws.member_role:"))
    assert members == sorted(a.id for a in info.accounts if a.ou_path == "Root/Security")
    assert f"under {security}" in checks["aws.organizations"]["message"]


def test_wrong_external_id(sandbox, control_plane, capsys, tmp_path):
    settings = good_settings(sandbox, external_id="not-the-connector-id")
    code, _, checks = run_doctor(capsys, tmp_path, control_plane.env(), settings)
    assert code == EXIT_FAILED
    assert failed(checks) == ["aws.management_role"]
    check = checks["aws.management_role"]
    assert "AccessDenied" in check["message"] and "not-the-connector-id" in check["message"]
    assert "sts:ExternalId" in check["fix"] and "ConnectorTaskRole" in check["fix"]
    assert "aws.organizations" not in checks  # nothing past a management role that cannot be assumed


def test_member_role_missing(sandbox, control_plane, capsys, tmp_path):
    missing = sandbox.seed_info.account_without_member_role
    settings = good_settings(sandbox, excluded_account_ids=[])
    code, _, checks = run_doctor(capsys, tmp_path, control_plane.env(), settings)
    assert code == EXIT_FAILED
    assert failed(checks) == [f"aws.member_role:{missing}"]
    fix = checks[f"aws.member_role:{missing}"]["fix"]
    assert "member-account-role.yaml" in fix and "excluded_account_ids" in fix


def test_region_denied_by_scp(sandbox, control_plane, capsys, tmp_path):
    account = sandbox.seed_info.clusters[0].account
    sandbox.faults.scp_deny("eks", account=account, region="eu-west-1")
    code, _, checks = run_doctor(capsys, tmp_path, control_plane.env(), good_settings(sandbox))
    assert code == EXIT_FAILED
    assert failed(checks) == ["aws.region:eu-west-1"]
    check = checks["aws.region:eu-west-1"]
    assert "service control policy" in check["message"] and account in check["message"]
    assert "aws:RequestedRegion" in check["fix"] and "remove eu-west-1" in check["fix"]
    assert checks["aws.region:us-east-1"]["status"] == "pass"


def test_config_map_cluster_warns_with_the_update_command(sandbox, control_plane, capsys, tmp_path):
    account = sandbox.seed_info.clusters[0].account
    eks = member_eks(sandbox, account, "us-east-1")
    eks.create_cluster(  # no accessConfig: CONFIG_MAP, as the EKS API defaults
        name="legacy-configmap",
        roleArn=f"arn:aws:iam::{account}:role/eks-cluster-role",
        resourcesVpcConfig={"subnetIds": ["subnet-1", "subnet-2"]},
    )
    try:
        code, doc, checks = run_doctor(capsys, tmp_path, control_plane.env(), good_settings(sandbox))
    finally:
        eks.delete_cluster(name="legacy-configmap")
    assert code == EXIT_OK, "a CONFIG_MAP cluster is a warning: syncs and other grants still work"
    check = checks[f"eks.auth_mode:{account}/us-east-1/legacy-configmap"]
    assert check["status"] == "warn" and "access entries are unavailable" in check["message"]
    assert check["fix"] == (
        "aws eks update-cluster-config --name legacy-configmap --region us-east-1 "
        "--access-config authenticationMode=API_AND_CONFIG_MAP"
    )
    assert doc["summary"]["warn"] == 1 and doc["summary"]["fail"] == 0


def test_bad_token(sandbox, control_plane, capsys, tmp_path):
    wrong = "wrong-token-0123456789abcdef"
    code, doc, checks = run_doctor(capsys, tmp_path, control_plane.env(CONNECTOR_TOKEN=wrong), good_settings(sandbox))
    assert code == EXIT_FAILED
    assert failed(checks) == ["control_plane.token"]
    assert "UNAUTHENTICATED" in checks["control_plane.token"]["message"]
    assert "CONNECTOR_TOKEN_FILE" in checks["control_plane.token"]["fix"]
    assert wrong not in json.dumps(doc)  # the token is never printed


def test_control_plane_down(sandbox, control_plane, capsys, tmp_path):
    env = control_plane.env(CONTROL_PLANE_URL=f"https://localhost:{free_port()}")
    code, _, checks = run_doctor(capsys, tmp_path, env, good_settings(sandbox))
    assert code == EXIT_FAILED
    assert failed(checks) == ["control_plane.reachable"]
    assert "cannot connect" in checks["control_plane.reachable"]["message"]
    assert checks["aws.management_role"]["status"] == "pass"  # the AWS side is still checked


def test_untrusted_certificate(sandbox, control_plane, capsys, tmp_path):
    other_ca, _, _ = make_tls(tmp_path / "other")
    code, _, checks = run_doctor(
        capsys, tmp_path, control_plane.env(CONNECTOR_TLS_CA_FILE=str(other_ca)), good_settings(sandbox)
    )
    assert code == EXIT_FAILED
    assert failed(checks) == ["control_plane.tls"]
    assert "not trusted" in checks["control_plane.tls"]["message"]
    assert "CONNECTOR_TLS_CA_FILE" in checks["control_plane.tls"]["fix"]


def test_bad_guardrail_file(sandbox, control_plane, capsys, tmp_path):
    rails = tmp_path / "guardrails.yaml"
    rails.write_text("version: 1\nmax_duration: forever\nshoe_size: 42\n")
    env = control_plane.env(CONNECTOR_GUARDRAILS_FILE=str(rails))
    code, _, checks = run_doctor(capsys, tmp_path, env, good_settings(sandbox))
    assert code == EXIT_FAILED
    assert failed(checks) == ["guardrails"]
    assert "max_duration" in checks["guardrails"]["message"] and "shoe_size" in checks["guardrails"]["message"]


def test_nothing_configured_still_reports(sandbox, capsys, tmp_path):
    code, _, checks = run_doctor(capsys, tmp_path, {}, None)
    assert code == EXIT_FAILED
    assert failed(checks) == ["config", "control_plane.reachable"]
    assert "CONTROL_PLANE_URL" in checks["control_plane.reachable"]["fix"]
    assert checks["aws.identity"]["status"] == "pass"
    assert checks["aws.integration"]["status"] == "warn" and "--settings" in checks["aws.integration"]["fix"]


def test_cli_json_shape_and_text(sandbox, control_plane, tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(good_settings(sandbox)))
    env = {"PATH": os.environ.get("PATH", "")} | sandbox.env() | control_plane.env()
    env |= {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    base = [sys.executable, "-m", "connector", "doctor", "--settings", str(settings), "--sample", "2"]
    proc = subprocess.run([*base, "--json"], env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"ok", "summary", "checks", "seconds"}
    assert doc["ok"] is True and set(doc["summary"]) == {"pass", "warn", "fail"}
    assert all(set(c) == {"id", "status", "message", "fix"} for c in doc["checks"])
    assert all(c["status"] in ("pass", "warn", "fail") for c in doc["checks"])
    assert sum(1 for c in doc["checks"] if c["id"].startswith("aws.member_role:")) == 2  # --sample 2

    text = subprocess.run(base, env=env, capture_output=True, text=True, timeout=90)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0].startswith("PASS  config:")
    assert any(line.startswith("PASS  control_plane.token:") for line in lines)
    assert lines[-1] == f"doctor: {doc['summary']['pass']} pass, 0 warn, 0 fail"
