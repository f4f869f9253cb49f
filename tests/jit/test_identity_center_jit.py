"""Identity Center account assignments through the Dispatcher against the sandbox."""

from __future__ import annotations

import threading

import pytest

from connector.errors import ConnectorError, ErrorCode
from connector.integrations import ledger
from connector.integrations.identity_center import assignments as ica
from tests.jit.conftest import admin, dispatcher, job, mutating_calls, ok, run

pytestmark = pytest.mark.timeout(120)


def _ic(sb):
    return sb.seed_info.identity_center


def _account(sb):
    return sb.seed_info.account("prod-0000").id


def _target(sb, permission_set="ReadOnly", principal_type="USER"):
    return {
        "resource_type": "identity_center_assignment",
        "account_id": _account(sb),
        "permission_set": permission_set,
        "principal_type": principal_type,
    }


def _assignments(sb, ps_name="ReadOnly"):
    ic = _ic(sb)
    sso = admin(sb, "sso-admin", sb.seed_info.management_account_id, ic.region)
    found = sso.list_account_assignments(
        InstanceArn=ic.instance_arn, AccountId=_account(sb), PermissionSetArn=ic.permission_sets[ps_name]
    )["AccountAssignments"]
    return [(a["PrincipalType"], a["PrincipalId"]) for a in found]


def _tags(sb, ps_name="ReadOnly"):
    ic = _ic(sb)
    sso = admin(sb, "sso-admin", sb.seed_info.management_account_id, ic.region)
    tags = sso.list_tags_for_resource(InstanceArn=ic.instance_arn, ResourceArn=ic.permission_sets[ps_name])["Tags"]
    return {t["Key"]: t["Value"] for t in tags}


def test_grant_revoke_and_duplicates(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    user = _ic(sb).users["user0@example.com"]
    sb.faults.reset_counts()
    first = ok(run(d, job(sb, "grant", "ic-1", user, _target(sb))))
    assert first["assignment_created"] is True and first["assignment_owned"] is True
    assert sb.faults.calls("sso-admin", "DescribeAccountAssignmentCreationStatus") >= 1  # polled to SUCCEEDED
    ok(run(d, job(sb, "grant", "ic-1", user, _target(sb))))  # re-delivery: list-before-create
    assert _assignments(sb).count(("USER", user)) == 1
    assert sb.faults.calls("sso-admin", "CreateAccountAssignment") == 1
    assert ledger.grant_key("ic-1") in _tags(sb)

    ok(run(d, job(sb, "revoke", "ic-1", user, _target(sb))))
    assert ("USER", user) not in _assignments(sb)
    assert sb.faults.calls("sso-admin", "DescribeAccountAssignmentDeletionStatus") >= 1
    sb.faults.reset_counts()
    again = ok(run(d, job(sb, "revoke", "ic-1", user, _target(sb))))
    assert again["already_revoked"] is True and mutating_calls(sb) == {}
    assert ledger.grant_key("ic-1") not in _tags(sb)


def test_the_result_carries_the_sign_in_link(sandbox, monkeypatch):
    import tests.jit.conftest as jit

    portal = "https://d-1234567890.awsapps.com/start"
    monkeypatch.setattr(jit, "settings", lambda s, _base=jit.settings: _base(s) | {"sso_portal_url": portal})
    sb, d = sandbox, dispatcher(sandbox)
    user = _ic(sb).users["user1@example.com"]
    granted = ok(run(d, job(sb, "grant", "ic-link", user, _target(sb))))
    assert granted["sign_in_url"] == portal
    assert _account(sb) in granted["sign_in"] and "ReadOnly" in granted["sign_in"]
    ok(run(d, job(sb, "revoke", "ic-link", user, _target(sb))))
    monkeypatch.undo()
    plain = ok(run(d, job(sb, "grant", "ic-nolink", user, _target(sb))))
    assert "sign_in_url" not in plain
    ok(run(d, job(sb, "revoke", "ic-nolink", user, _target(sb))))


def test_conflict_is_retried_with_backoff(sandbox, monkeypatch):
    monkeypatch.setattr(ica, "CONFLICT_WAIT_MAX", 0.3)
    sb, d = sandbox, dispatcher(sandbox)
    user = _ic(sb).users["user1@example.com"]
    sb.faults.reset_counts()
    sb.faults.add(
        kind="error",
        service="sso-admin",
        operation="CreateAccountAssignment",
        count=3,
        status=400,
        code="ConflictException",
    )
    result = ok(run(d, job(sb, "grant", "ic-conflict", user, _target(sb, principal_type="USER"))))
    assert sb.faults.counts()["faulted"]["sso-admin:CreateAccountAssignment"] == 3
    assert sb.faults.calls("sso-admin", "CreateAccountAssignment") == 4
    assert result["assignment_created"] and _assignments(sb).count(("USER", user)) == 1
    ok(run(d, job(sb, "revoke", "ic-conflict", user, _target(sb))))


def test_conflict_that_never_clears_is_a_retryable_conflict(sandbox, monkeypatch):
    monkeypatch.setattr(ica, "CONFLICT_WAIT_MAX", 0.05)
    monkeypatch.setattr(ica, "CONFLICT_ATTEMPTS", 3)
    sb, d = sandbox, dispatcher(sandbox)
    user = _ic(sb).users["user2@example.com"]
    rule = sb.faults.add(
        kind="error", service="sso-admin", operation="CreateAccountAssignment", status=400, code="ConflictException"
    )
    out = run(d, job(sb, "grant", "ic-stuck", user, _target(sb)))
    sb.faults.remove(rule)
    assert out.outcome == "failed" and out.error.code == ErrorCode.CONFLICT and out.error.retryable
    ok(run(d, job(sb, "grant", "ic-stuck", user, _target(sb))))  # the retry after the conflict clears
    ok(run(d, job(sb, "revoke", "ic-stuck", user, _target(sb))))
    assert ("USER", user) not in _assignments(sb)


def test_existing_assignment_is_not_revoked(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    ic = _ic(sb)
    group = ic.groups["developers"]
    sso = admin(sb, "sso-admin", sb.seed_info.management_account_id, ic.region)
    sso.create_account_assignment(
        InstanceArn=ic.instance_arn,
        TargetId=_account(sb),
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=ic.permission_sets["EksClusterAdmin"],
        PrincipalType="GROUP",
        PrincipalId=group,
    )
    target = _target(sb, permission_set=ic.permission_sets["EksClusterAdmin"], principal_type="GROUP")
    granted = ok(run(d, job(sb, "grant", "ic-foreign", group, target)))
    assert granted["assignment_owned"] is False and granted["assignment_created"] is False
    revoked = ok(run(d, job(sb, "revoke", "ic-foreign", group, target)))
    assert revoked["assignment_deleted"] is False
    assert ("GROUP", group) in _assignments(sb, "EksClusterAdmin")
    assert ledger.grant_key("ic-foreign") not in _tags(sb, "EksClusterAdmin")


def test_bad_principal_and_unknown_permission_set(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    out = run(d, job(sb, "grant", "ic-bad", "alice@example.com", _target(sb)))
    assert out.error.code == ErrorCode.INVALID_JOB and "identity-store" in out.error.message
    out = run(d, job(sb, "grant", "ic-bad", _ic(sb).users["user0@example.com"], _target(sb, "NoSuchSet")))
    assert out.error.code == ErrorCode.NOT_FOUND and "NoSuchSet" in out.error.message


def test_dry_run_makes_no_mutating_call(sandbox):
    sb, d = sandbox, dispatcher(sandbox)
    user = _ic(sb).users["user0@example.com"]
    sb.faults.reset_counts()
    result = ok(run(d, job(sb, "grant", "ic-dry", user, _target(sb), dry_run=True)))
    assert [c["operation"] for c in result["calls"]] == ["tag_resource", "create_account_assignment"]
    assert mutating_calls(sb) == {}
    assert ("USER", user) not in _assignments(sb)


def test_failed_status_raises_with_the_failure_reason():
    statuses = iter(
        [
            {"Status": "IN_PROGRESS", "RequestId": "r1"},
            {
                "Status": "FAILED",
                "RequestId": "r1",
                "FailureReason": "Received a 404 status error: Not supported account",
            },
        ]
    )
    with pytest.raises(ConnectorError) as caught:
        ica.wait_for_status(lambda: next(statuses), what="assign", remaining=5, check=lambda: None)
    assert "Not supported account" in caught.value.message and not caught.value.retryable


def test_two_grants_sharing_an_assignment_revoked_at_once_leave_neither_access_nor_record(sandbox):
    """Each revoke used to read the other's record, keep the assignment for it, and remove its own record: the
    assignment stayed with no record, so nothing would ever expire it. Both first reads are held together."""
    sb, d = sandbox, dispatcher(sandbox)
    user = _ic(sb).users["user2@example.com"]
    for grant_id in ("ic-race-a", "ic-race-b"):
        ok(run(d, job(sb, "grant", grant_id, user, _target(sb))))
    assert ("USER", user) in _assignments(sb)
    rule = sb.faults.latency(0.6, service="sso-admin", operation="ListTagsForResource")
    try:
        outcomes: list[object] = []
        threads = [
            threading.Thread(target=lambda g=g: outcomes.append(run(d, job(sb, "revoke", g, user, _target(sb)))))
            for g in ("ic-race-a", "ic-race-b")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sb.faults.remove(rule)
    assert all(o.outcome == "succeeded" for o in outcomes), outcomes  # type: ignore[attr-defined]
    assert ("USER", user) not in _assignments(sb)
    assert not any(k.endswith(("ic-race-a", "ic-race-b")) for k in _tags(sb))
