"""The sync lower bounds, computed from a call graph small enough to check by hand."""

from __future__ import annotations

import pytest

from connector.bench.bounds import RateLimit, sync_bounds
from connector.bench.stats import percentile, summary_ms

GRAPH = {
    # the org walk: 4 chained pages + 3 tag calls, all from the management account
    "123456789012/us-east-1/organizations:DescribeOrganization": 1,
    "123456789012/us-east-1/organizations:ListRoots": 1,
    "123456789012/us-east-1/organizations:ListAccountsForParent": 1,
    "123456789012/us-east-1/organizations:ListOrganizationalUnitsForParent": 1,
    "123456789012/us-east-1/organizations:ListTagsForResource": 3,
    "123456789012/us-east-1/sts:AssumeRole": 2,
    # two scopes: one with 20 DescribeAccessEntry calls (rate-limited), one tiny
    "210000000000/us-east-1/eks:ListClusters": 1,
    "210000000000/us-east-1/eks:DescribeAccessEntry": 20,
    "210000000001/eu-west-1/eks:ListClusters": 1,
}


def test_bounds_without_rate_limits_follow_latency_and_parallelism():
    b = sync_bounds(GRAPH, latency=0.1, parallelism=2, rate_limits=[])
    assert b["total_calls"] == 31
    assert b["organizations_calls"] == 7
    assert b["organizations_chain_calls"] == 4
    assert b["scopes"] == 2
    assert b["calls_per_scope_max"] == 21
    assert b["slowest_scope_seconds"] == pytest.approx(2.1)  # 21 dependent calls x 0.1 s
    assert b["work_seconds_over_parallelism"] == pytest.approx(1.55)  # 31 x 0.1 / 2
    assert b["limits_seconds"] == pytest.approx(2.1)  # the slowest scope dominates
    # design: the walk (4 chained calls + 3 tag calls 4 at a time) then the slowest scope, against the fan-out
    # max((2.1 + 0.1 + 2 x 0.1) / 2, 2.1)
    assert b["org_walk_seconds_in_design"] == pytest.approx(0.4 + 0.075)
    assert b["design_seconds"] == pytest.approx(0.475 + 2.1)
    # 30 more one-call scopes on one worker: the fan-out, (2.1 + 0.1 + 3.0 + 0.2) / 1 = 5.4, outlasts the walk,
    # and no shape beats the limits: all 61 calls one at a time, 6.1 s
    wide = GRAPH | {f"2100000001{n:02d}/us-east-1/eks:ListClusters": 1 for n in range(30)}
    assert sync_bounds(wide, latency=0.1, parallelism=1, rate_limits=[])["design_seconds"] == pytest.approx(6.1)


def test_rate_limit_binds_the_scope_when_tighter_than_latency():
    b = sync_bounds(GRAPH, latency=0.001, parallelism=8, rate_limits=[RateLimit(rate=5, burst=10, service="eks")])
    # 20 DescribeAccessEntry calls at 5/s after a burst of 10: 2 s
    assert b["slowest_scope_seconds"] == pytest.approx(2.0)
    assert b["limits_seconds"] == pytest.approx(2.0)
    other = sync_bounds(GRAPH, latency=0.001, parallelism=8, rate_limits=[RateLimit(rate=5, burst=10, service="iam")])
    assert other["slowest_scope_seconds"] == pytest.approx(0.021)


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) == 0.0
    assert summary_ms([0.001, 0.002, 0.003])["p50"] == 2.0
