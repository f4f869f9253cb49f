"""What lives in the accounts: EKS clusters and their existing access, IAM roles, Identity Center."""

from __future__ import annotations

from .conftest import base_settings, run_sync


def test_clusters_in_every_mode_with_existing_access(sandbox):
    info = sandbox.seed_info
    run = run_sync(sandbox, base_settings(sandbox), resource_types=("eks_cluster",))
    assert run.outcome.outcome == "succeeded", run.outcome.error
    clusters = {i.id: i for i in run.of("eks.cluster")}
    reachable = [c for c in info.clusters if c.account != info.account_without_member_role]
    assert set(clusters) == {c.arn for c in reachable}
    modes = {clusters[c.arn].attributes["authentication_mode"] for c in reachable}
    assert modes == {"API", "API_AND_CONFIG_MAP", "CONFIG_MAP"}
    for c in reachable:
        attrs = clusters[c.arn].attributes
        assert attrs["authentication_mode"] == c.mode
        assert attrs["access_entries_supported"] == (c.mode != "CONFIG_MAP")
        assert {c.region} == {clusters[c.arn].region}
    entries = run.of("eks.access_entry")
    expected = {(c.arn, p) for c in reachable for p in c.access_entries}
    assert {(e.parent_id, e.name) for e in entries} >= expected
    scoped = [p for e in entries for p in e.attributes["policies"]]
    assert {p["scope"] for p in scoped} == {"cluster", "namespace"}
    assert all(p["namespaces"] for p in scoped if p["scope"] == "namespace")


def test_regions_sync_in_parallel_with_progress(sandbox):
    run = run_sync(
        sandbox, base_settings(sandbox, max_parallelism=4, regions=["eu-west-1"]), resource_types=("eks_cluster",)
    )
    assert run.outcome.outcome == "succeeded", run.outcome.error
    done = [d for d, _ in run.progress]
    totals = [t for _, t in run.progress]
    # Accounts are worked on while the walk still finds more: the total is 0 (unknown) until the walk ends,
    # then exact.
    known = [t for t in totals if t]
    assert done == sorted(done) and set(known) == {run.outcome.result["accounts_active"]}
    assert totals == sorted(totals) and all(d <= t for d, t in run.progress if t)
    assert done[-1] == totals[-1] == run.outcome.result["accounts_active"]
    # Scope tasks the same way: one report per finished task (1, 2, ...), the total once the walk is done.
    scopes = run.outcome.result["scopes"]
    finished = [d for d, _ in run.scope_progress]
    assert finished[0] == 1 and finished == sorted(finished) and finished[-1] == scopes
    assert {t for _, t in run.scope_progress} - {0} == {scopes} and run.scope_progress[-1] == (scopes, scopes)


def test_iam_roles_with_trust_summary(sandbox):
    info = sandbox.seed_info
    account = next(a.id for a in info.accounts[1:] if a.state == "ACTIVE" and a.id != info.account_without_member_role)
    run = run_sync(sandbox, base_settings(sandbox), resource_types=("iam_role",), account_ids=(account,))
    assert run.outcome.outcome == "succeeded", run.outcome.error
    roles = {i.name: i for i in run.of("iam.role")}
    member = roles[info.member_role_name]
    assert member.account_id == account
    assert f"AWS:{info.management_role_arn}" in member.attributes["trusted_principals"]
    assert member.attributes["max_session_duration"] >= 3600


def test_identity_center_assignments_discovered(sandbox):
    info = sandbox.seed_info
    ic = info.identity_center
    sso = sandbox.client("sso-admin", ic.region)
    account = info.accounts[5].id
    ps_name, ps_arn = next(iter(ic.permission_sets.items()))
    user_id = next(iter(ic.users.values()))
    group_id = next(iter(ic.groups.values()))
    assignments = [
        {
            "InstanceArn": ic.instance_arn,
            "TargetId": account,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": ps_arn,
            "PrincipalType": ptype,
            "PrincipalId": pid,
        }
        for ptype, pid in (("USER", user_id), ("GROUP", group_id))
    ]
    for assignment in assignments:
        sso.create_account_assignment(**assignment)
    try:
        # cost follows what is provisioned: one listing of accounts per set, assignments only where provisioned
        pairs = sum(
            len(
                sso.list_accounts_for_provisioned_permission_set(InstanceArn=ic.instance_arn, PermissionSetArn=arn)[
                    "AccountIds"
                ]
            )
            for arn in ic.permission_sets.values()
        )
        assert 1 <= pairs < len(info.accounts)
        sandbox.faults.reset_counts()
        run = run_sync(sandbox, base_settings(sandbox), resource_types=("identity_center",))
        assert run.outcome.outcome == "succeeded", run.outcome.error
        assert sandbox.faults.calls("sso-admin", "ListAccountsForProvisionedPermissionSet") == len(ic.permission_sets)
        assert sandbox.faults.calls("sso-admin", "ListAccountAssignments") == pairs
        assert run.ids("sso.instance") == {ic.instance_arn}
        assert {i.name for i in run.of("sso.permission_set")} == set(ic.permission_sets)
        assert run.ids("sso.user") == set(ic.users.values())
        assert run.ids("sso.group") == set(ic.groups.values())
        found = {
            (a.account_id, a.attributes["principal_type"], a.attributes["principal_id"])
            for a in run.of("sso.assignment")
        }
        assert {(account, "USER", user_id), (account, "GROUP", group_id)} <= found
        ps = {i.name: i for i in run.of("sso.permission_set")}[ps_name]
        assert isinstance(ps.attributes["managed_policies"], list)
    finally:
        for assignment in assignments:
            sso.delete_account_assignment(**assignment)


def test_every_enabled_region(sandbox):
    """regions: enabled -> the member role's DescribeRegions per account, then EKS in each region; a region
    denied by an SCP is that region's error only."""
    info = sandbox.seed_info
    account = next(c.account for c in info.clusters if c.account != info.account_without_member_role)
    ec2 = sandbox.client("ec2")
    enabled = {r["RegionName"] for r in ec2.describe_regions()["Regions"]}
    denied = sorted(enabled - {"us-east-1", "eu-west-1"})[0]
    rule = sandbox.faults.scp_deny("eks", account=account, region=denied)
    try:
        run = run_sync(
            sandbox, base_settings(sandbox, regions="enabled"), resource_types=("eks_cluster",), account_ids=(account,)
        )
    finally:
        sandbox.faults.remove(rule)
    assert run.outcome.outcome == "succeeded", run.outcome.error
    assert run.ids("eks.cluster") == {c.arn for c in info.clusters if c.account == account}
    assert {c.region for c in run.of("eks.cluster")} == {"us-east-1", "eu-west-1"}
    assert [(e.region, e.attributes["stage"]) for e in run.of("error")] == [(denied, "eks")]
    listed = {
        k.split("/")[1] for k in sandbox.faults.counts()["by_target"] if k.startswith(account) and k.endswith("/eks")
    }
    assert enabled <= listed
