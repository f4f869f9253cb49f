"""Organization sync against the sandbox over real botocore: tree, scoping, exclusions, partial failure."""

from __future__ import annotations

import pytest

from connector.errors import ErrorCode

from .conftest import SPEC, base_settings, run_sync


def test_full_tree_nested_ous_and_pagination(sandbox):
    info = sandbox.seed_info
    sandbox.faults.reset_counts()
    run = run_sync(sandbox, base_settings(sandbox), resource_types=("organization",))
    assert run.outcome.outcome == "succeeded", run.outcome.error
    assert run.ids("aws.account") == {a.id for a in info.accounts}  # > 40 accounts, pages of 20
    assert len(run.ids("aws.account")) > 40
    paths = {i.attributes["path"] for i in run.of("aws.ou")}
    assert {"Root/Workloads/Prod", "Root/Workloads/Dev", "Root/Security", "Root/Suspended"} <= paths
    assert set(info.ou_ids.values()) == run.ids("aws.ou") | {info.root_id}
    assert run.ids("aws.root") == {info.root_id}
    by_id = {i.id: i for i in run.of("aws.account")}
    for account in info.accounts:
        assert by_id[account.id].attributes["state"] == account.state
        assert by_id[account.id].attributes["path"] == account.ou_path
        assert by_id[account.id].attributes["tags"] == account.tags
    org = run.of("aws.organization")
    assert len(org) == 1 and org[0].name == info.organization_id
    # Pages of at most 20: the big Workloads/Prod-or-Dev parents need several ListAccountsForParent calls.
    calls = sandbox.faults.counts()["by_operation"]
    biggest = max(sum(1 for a in info.accounts if a.ou_path == p) for p in info.ou_ids)
    assert calls["organizations:ListAccountsForParent"] >= len(info.ou_ids) + 1 + (biggest - 1) // 20


def test_excluded_ou_subtree_and_excluded_accounts(sandbox):
    info = sandbox.seed_info
    workloads = info.ou_ids["Root/Workloads"]
    security_accounts = [a.id for a in info.accounts if a.ou_path == "Root/Security"]
    settings = base_settings(sandbox, excluded_ou_ids=workloads, excluded_account_ids=",".join(security_accounts[:1]))
    run = run_sync(sandbox, settings, resource_types=("organization",))
    assert run.outcome.outcome == "succeeded", run.outcome.error
    kept = run.ids("aws.account")
    assert not any(a.ou_path.startswith("Root/Workloads") and a.id in kept for a in info.accounts)
    assert security_accounts[0] not in kept
    assert info.ou_ids["Root/Workloads/Prod"] not in run.ids("aws.ou")  # the whole subtree is gone
    assert kept == {
        a.id for a in info.accounts if not a.ou_path.startswith("Root/Workloads") and a.id != security_accounts[0]
    }


def test_ou_scope_limits_to_the_subtree(sandbox):
    info = sandbox.seed_info
    run = run_sync(
        sandbox,
        base_settings(sandbox, organizational_unit_id=info.ou_ids["Root/Workloads"]),
        resource_types=("organization",),
    )
    assert run.outcome.outcome == "succeeded", run.outcome.error
    assert run.ids("aws.account") == {a.id for a in info.accounts if a.ou_path.startswith("Root/Workloads")}
    assert {i.attributes["path"] for i in run.of("aws.ou")} == {"Root/Workloads/Prod", "Root/Workloads/Dev"}


def test_suspended_accounts_listed_but_not_visited(sandbox):
    info = sandbox.seed_info
    suspended = {a.id for a in info.accounts if a.state != "ACTIVE"}
    assert suspended
    sandbox.faults.reset_counts()
    run = run_sync(
        sandbox, base_settings(sandbox, regions=["us-east-1"]), resource_types=("organization", "eks_cluster")
    )
    assert run.outcome.outcome == "succeeded", run.outcome.error
    assert suspended <= run.ids("aws.account")
    assert {s["id"] for s in run.outcome.result["accounts_skipped"]} == suspended
    touched = {key.split("/")[0] for key in sandbox.faults.counts()["by_target"] if key.endswith("/eks")}
    assert not touched & suspended


def test_missing_member_role_is_recorded_and_the_rest_synced(sandbox):
    info = sandbox.seed_info
    run = run_sync(
        sandbox,
        base_settings(sandbox, excluded_account_ids=[info.management_account_id]),
        resource_types=("eks_cluster",),
    )
    assert run.outcome.outcome == "succeeded", run.outcome.error
    errors = run.of("error")
    missing = info.account_without_member_role
    assert {e.account_id for e in errors} == {missing}
    assert {e.region for e in errors} == set(SPEC.regions)
    assert all("member-account role" in e.attributes["hint"] for e in errors)
    expected = {c.arn for c in info.clusters if c.account not in (missing, info.management_account_id)}
    assert run.ids("eks.cluster") == expected
    assert run.outcome.result["scope_errors"] == len(errors)


def test_management_role_failure_fails_the_job(sandbox):
    info = sandbox.seed_info
    run = run_sync(
        sandbox, base_settings(sandbox, external_id="not-the-connector-id"), resource_types=("organization",)
    )
    assert run.outcome.outcome == "failed"
    assert run.outcome.error.code == ErrorCode.ACCESS_DENIED
    assert "ExternalId" in run.outcome.error.message
    assert info.management_role_arn in run.outcome.error.message


def test_session_duration_clamped_and_said(sandbox):
    run = run_sync(sandbox, base_settings(sandbox, session_duration_hours=4), resource_types=("organization",))
    assert run.outcome.outcome == "succeeded", run.outcome.error
    assert any("role chaining" in n for n in run.outcome.result["notes"])


def test_invalid_setting_is_named(sandbox):
    run = run_sync(sandbox, base_settings(sandbox, excluded_ou_ids="ou-bad"), resource_types=("organization",))
    assert run.outcome.error.code == ErrorCode.INVALID_SETTINGS
    assert "excluded_ou_ids" in run.outcome.error.message
    assert not run.outcome.error.retryable


def test_account_scoped_sync(sandbox):
    info = sandbox.seed_info
    wanted = tuple(c.account for c in info.clusters[:2])
    run = run_sync(sandbox, base_settings(sandbox), resource_types=("organization", "eks_cluster"), account_ids=wanted)
    assert run.outcome.outcome == "succeeded", run.outcome.error
    assert run.ids("aws.account") == set(wanted)
    assert {i.account_id for i in run.of("eks.cluster")} <= set(wanted)
    assert not run.of("aws.ou")  # the org tree belongs to the full sync


def test_split_children_resolve_accounts_concurrently_in_the_order_asked(sandbox):
    """OrgWalk.resolve (what an account-scoped child does instead of the walk): several accounts in flight at
    once, the answers in the order asked, exclusions kept. At most one DescribeAccount in flight (the sandbox's
    concurrency limit) with no retries: the concurrent resolve trips it, the serial one never does."""
    from botocore.exceptions import ClientError

    from connector.integrations.aws_organization.org_tree import OrgWalk
    from tests.sandbox.sandbox_helpers import NO_RETRIES

    info = sandbox.seed_info
    org = sandbox.client("organizations", "us-east-1", config=NO_RETRIES)
    wanted = [a.id for a in info.accounts[1:13]]
    excluded = wanted[4]
    walk = OrgWalk(org, excluded_accounts=frozenset({excluded}), resolve_workers=8)
    assert [a.id for a in walk.resolve(wanted, None)] == [a for a in wanted if a != excluded]
    assert walk.skipped == [(excluded, "excluded_account_ids")]

    sandbox.faults.concurrency(1, service="organizations", operation="DescribeAccount")
    sandbox.faults.latency(0.05, service="organizations", operation="DescribeAccount")
    try:
        with pytest.raises(ClientError) as err:
            list(OrgWalk(org, resolve_workers=8).resolve(wanted, None))
        assert err.value.response["Error"]["Code"] == "TooManyRequestsException"
        assert len(list(OrgWalk(org, resolve_workers=1).resolve(wanted[:4], None))) == 4
    finally:
        sandbox.faults.clear()
