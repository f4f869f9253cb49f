"""Partial failure and throttling: the sync finishes, with the same inventory as without faults."""

from __future__ import annotations

from .conftest import base_settings, run_sync

TYPES = ("organization", "eks_cluster")


def served(counts):
    """Calls answered normally (received minus faulted), per Organizations / EKS operation."""
    return {
        op: n - counts["faulted"].get(op, 0)
        for op, n in counts["by_operation"].items()
        if op.startswith(("organizations:", "eks:"))
    }


def test_one_region_denied_by_scp(sandbox):
    info = sandbox.seed_info
    victim = next(c for c in info.clusters if c.account != info.account_without_member_role)
    rule = sandbox.faults.scp_deny("eks", account=victim.account, region=victim.region)
    try:
        run = run_sync(sandbox, base_settings(sandbox), resource_types=TYPES)
    finally:
        sandbox.faults.remove(rule)
    assert run.outcome.outcome == "succeeded", run.outcome.error
    denied = [e for e in run.of("error") if e.account_id == victim.account]
    assert [(e.region, e.attributes["stage"]) for e in denied] == [(victim.region, "eks")]
    assert "service control policy" in denied[0].attributes["hint"]
    assert victim.arn not in run.ids("eks.cluster")
    others = {
        c.arn for c in info.clusters if c.account not in (info.account_without_member_role,) and c.arn != victim.arn
    }
    assert others <= run.ids("eks.cluster")


def test_throttling_storm_gives_the_same_inventory(sandbox):
    # One region keeps it quick; the storm hits every Organizations and EKS call alike.
    settings = base_settings(sandbox, regions=["us-east-1"])
    sandbox.faults.reset_counts()
    baseline = run_sync(sandbox, settings, resource_types=TYPES)
    assert baseline.outcome.outcome == "succeeded", baseline.outcome.error
    clean_calls = served(sandbox.faults.counts())
    rules = [
        sandbox.faults.throttle(fraction=0.3, service="organizations"),
        sandbox.faults.throttle(fraction=0.3, service="eks"),
    ]
    try:
        sandbox.faults.reset_counts()
        stormy = run_sync(sandbox, settings, resource_types=TYPES)
        counts = sandbox.faults.counts()
        faulted = sum(counts["faulted"].values())
    finally:
        for rule in rules:
            sandbox.faults.remove(rule)
    assert stormy.outcome.outcome == "succeeded", stormy.outcome.error
    assert faulted > 20  # the storm really happened
    assert stormy.keyed() == baseline.keyed()
    # Only throttled calls were repeated: the calls that were answered are exactly those of the clean run,
    # so no page was fetched twice.
    assert served(counts) == clean_calls
    print(f"throttled calls survived: {faulted}; items: {len(stormy.items)}")
