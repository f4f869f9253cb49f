"""A crash between any two AWS calls of a grant or revoke, then re-delivery: the end state is exactly one
grant (or none), and no record is left behind. The crash is a non-retryable error injected on the second
call of the step (botocore does not retry it, so the job fails right there, as if the process died)."""

from __future__ import annotations

import json

import pytest

from connector.integrations import ledger
from connector.integrations.iam_access import policy as iam_policy
from tests.jit.conftest import admin, dispatcher, job, ok, run

pytestmark = pytest.mark.timeout(120)


def _crash(sb, service, operation):
    return sb.faults.add(kind="error", service=service, operation=operation, status=400, code="InjectedCrash")


def test_iam_crash_after_record_and_after_delete(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    account = sb.seed_info.account("prod-0002").id
    iam = admin(sb, "iam", account)
    iam.create_role(RoleName="crashy", AssumeRolePolicyDocument=json.dumps({"Statement": []}))
    target = {
        "resource_type": "iam_resource_access",
        "account_id": account,
        "role": "crashy",
        "resources": [f"arn:aws:sns:us-east-1:{account}:t"],
    }
    key = ledger.grant_key("crash-iam")

    def tags():
        return {t["Key"] for t in iam.list_role_tags(RoleName="crashy")["Tags"]}

    rule = _crash(sb, "iam", "PutRolePolicy")
    assert run(d, job(sb, "grant", "crash-iam", "alice", target)).outcome == "failed"
    sb.faults.remove(rule)
    assert key in tags() and iam.list_role_policies(RoleName="crashy")["PolicyNames"] == []  # record first
    ok(run(d, job(sb, "grant", "crash-iam", "alice", target)))
    assert iam.list_role_policies(RoleName="crashy")["PolicyNames"] == [iam_policy.policy_name_for(key)]

    rule = _crash(sb, "iam", "UntagRole")
    assert run(d, job(sb, "revoke", "crash-iam", "alice", target)).outcome == "failed"
    sb.faults.remove(rule)
    assert iam.list_role_policies(RoleName="crashy")["PolicyNames"] == [] and key in tags()  # access gone first
    ok(run(d, job(sb, "revoke", "crash-iam", "alice", target)))
    assert key not in tags()


def test_identity_center_crash_after_record_and_after_delete(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    ic = sb.seed_info.identity_center
    account = sb.seed_info.account("prod-0002").id
    group = ic.groups["platform-admins"]
    target = {
        "resource_type": "identity_center_assignment",
        "account_id": account,
        "permission_set": "ReadOnly",
        "principal_type": "GROUP",
    }
    sso = admin(sb, "sso-admin", sb.seed_info.management_account_id, ic.region)
    key = ledger.grant_key("crash-ic")

    def state():
        found = sso.list_account_assignments(
            InstanceArn=ic.instance_arn, AccountId=account, PermissionSetArn=ic.permission_sets["ReadOnly"]
        )["AccountAssignments"]
        tags = sso.list_tags_for_resource(InstanceArn=ic.instance_arn, ResourceArn=ic.permission_sets["ReadOnly"])
        return [a["PrincipalId"] for a in found].count(group), key in {t["Key"] for t in tags["Tags"]}

    rule = _crash(sb, "sso-admin", "CreateAccountAssignment")
    assert run(d, job(sb, "grant", "crash-ic", group, target)).outcome == "failed"
    sb.faults.remove(rule)
    assert state() == (0, True)
    ok(run(d, job(sb, "grant", "crash-ic", group, target)))
    ok(run(d, job(sb, "grant", "crash-ic", group, target)))
    assert state() == (1, True)

    rule = _crash(sb, "sso-admin", "UntagResource")
    assert run(d, job(sb, "revoke", "crash-ic", group, target)).outcome == "failed"
    sb.faults.remove(rule)
    assert state() == (0, True)
    ok(run(d, job(sb, "revoke", "crash-ic", group, target)))
    assert state() == (0, False)
