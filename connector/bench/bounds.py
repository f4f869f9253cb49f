"""Lower bounds of an org sync, computed from the call graph the sandbox counted during the run: calls per
(account, region, operation), the injected per-call latency, the rate limits, and the integration's
max_parallelism.

Two bounds, both ignoring CPU (that is what the sandbox capacity figure is for):

- `limits`: what AWS limits and the concurrency allow at all. The organisation's List* pages form a chain
  (each page needs the previous page's NextToken); everything else can overlap. One (account, region) scope
  is a chain of dependent calls (list -> describe -> list entries -> describe entry), and cannot run faster
  than its rate-limited operations allow. So: max(org page chain, all calls x latency / max_parallelism,
  the slowest scope, the slowest rate-limited key).
- `design`: the connector's shape as built: the org walk runs on one thread (its pages in a chain, each
  page's tag calls `tag_workers` at a time) while the scopes of the accounts it has found are spread over
  max_parallelism workers. So: max(all scopes over the workers, the walk then the slowest scope of the
  last account it finds).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

# Organizations calls that must follow one another (pagination and the tree's parent -> child order).
ORG_CHAIN_OPERATIONS = frozenset(
    {
        "DescribeOrganization",
        "ListRoots",
        "ListAccountsForParent",
        "ListOrganizationalUnitsForParent",
        "ListChildren",
        "ListAccounts",
    }
)


@dataclass(frozen=True)
class RateLimit:
    """Token bucket per (account, region, operation), as the sandbox's rate_limit fault applies it; per
    (account, region, service) with per="service" (Identity Center's shared quota)."""

    rate: float  # calls per second
    burst: int
    service: str | None = None  # None: every service
    per: str = "operation"


def parse_graph(graph: dict[str, int]) -> list[tuple[str, str, str, str, int]]:
    """ "account/region/service:Operation" -> (account, region, service, operation, calls)."""
    rows = []
    for key, calls in graph.items():
        account, region, rest = key.split("/", 2)
        service, _, operation = rest.partition(":")
        rows.append((account, region, service, operation, calls))
    return rows


def _rate_seconds(calls: int, limits: list[RateLimit], service: str) -> float:
    """Least time `calls` calls to one key take under the token buckets that apply to it."""
    worst = 0.0
    for limit in limits:
        if limit.per == "operation" and limit.service in (None, service) and calls > limit.burst:
            worst = max(worst, (calls - limit.burst) / limit.rate)
    return worst


def sync_bounds(
    graph: dict[str, int], *, latency: float, parallelism: int, rate_limits: list[RateLimit], tag_workers: int = 4
) -> dict[str, Any]:
    rows = parse_graph(graph)
    total_calls = sum(row[4] for row in rows)
    org_calls = sum(c for _, _, service, _, c in rows if service == "organizations")
    org_chain = sum(c for _, _, service, op, c in rows if service == "organizations" and op in ORG_CHAIN_OPERATIONS)

    # One scope = the EKS calls of one (account, region): a chain of dependent calls.
    scope_calls: Counter[tuple[str, str]] = Counter()
    scope_ops: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for account, region, service, operation, calls in rows:
        if service == "eks":
            scope_calls[(account, region)] += calls
            scope_ops[(account, region)][operation] += calls
    scope_seconds = {
        scope: max(
            calls * latency,
            max((_rate_seconds(n, rate_limits, "eks") for n in scope_ops[scope].values()), default=0.0),
        )
        for scope, calls in scope_calls.items()
    }
    slowest_scope = max(scope_seconds.values(), default=0.0)
    # Member-role AssumeRole: one per account, before its first scope.
    assume_calls = sum(c for _, _, service, op, c in rows if service == "sts" and op == "AssumeRole")
    key_rate = max((_rate_seconds(c, rate_limits, svc) for _, _, svc, _, c in rows), default=0.0)
    shared: dict[str, dict[str, Any]] = {}  # service -> its busiest (account, region)'s calls and bound
    for limit in rate_limits:
        if limit.per != "service":
            continue
        per_key: Counter[tuple[str, str, str]] = Counter()
        for account, region, service, _, calls in rows:
            if limit.service in (None, service):
                per_key[(account, region, service)] += calls
        for (_, _, service), calls in per_key.items():
            seconds = max(0.0, (calls - limit.burst) / limit.rate)
            if seconds >= shared.get(service, {}).get("bound_seconds", -1.0):
                shared[service] = {"calls": calls, "bound_seconds": round(seconds, 3)}
            key_rate = max(key_rate, seconds)

    work = total_calls * latency / parallelism
    limits_bound = max(org_chain * latency, work, slowest_scope, key_rate)
    fan_out = max((sum(scope_seconds.values()) + assume_calls * latency) / parallelism, slowest_scope)
    walk = (org_chain + (org_calls - org_chain) / tag_workers) * latency
    design_bound = max(fan_out, walk + slowest_scope, limits_bound)  # no shape beats the limits
    return {
        "total_calls": total_calls,
        "organizations_calls": org_calls,
        "organizations_chain_calls": org_chain,
        "sts_assume_role_calls": assume_calls,
        "scopes": len(scope_calls),
        "calls_per_scope_max": max(scope_calls.values(), default=0),
        "slowest_scope_seconds": round(slowest_scope, 3),
        "work_seconds_over_parallelism": round(work, 3),
        "limits_seconds": round(limits_bound, 3),
        "design_seconds": round(design_bound, 3),
        "org_walk_seconds_in_design": round(walk, 3),
        "shared_rate_limits": shared,
    }
