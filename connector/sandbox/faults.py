"""Fault rules (latency, throttling, 500s, hangs, SCP denies, rate limits) and call counters.

Thread-safe: the moto server handles each request on its own thread.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

FaultKind = Literal["latency", "throttle", "error", "hang", "scp_deny", "rate_limit", "concurrency"]
KINDS: tuple[str, ...] = ("latency", "throttle", "error", "hang", "scp_deny", "rate_limit", "concurrency")
MAX_HANG_SECONDS = 120.0  # a hang never holds a server thread longer than this
# The first kind that fires answers the call: an SCP deny beats a rate limit beats throttling beats a 500.
_ERROR_PRECEDENCE: tuple[FaultKind, ...] = ("scp_deny", "rate_limit", "concurrency", "throttle", "error")
RATE_SCOPES = ("operation", "service")


@dataclass
class FaultRule:
    """One rule. Scope fields left None match everything.

    count: apply to the next N matching calls only, then the rule is spent.
    fraction: apply to this share of matching calls (RNG seeded per rule, so runs repeat).
    seconds: latency added, or how long a hang holds the call (capped at MAX_HANG_SECONDS).
    rate/burst: token bucket per (account, region, operation) for rate_limit; per (account, region, service)
    with per="service" (Identity Center's APIs share one 20 calls/s quota).
    limit: a concurrency rule's most matching calls in flight at once (injected latency included); the next
    one is answered as throttled (Identity Center: 15 outstanding CreateAccountAssignment calls).
    status: HTTP status of an `error` rule.
    code: error code of an `error` rule (e.g. "ConflictException"; default InternalFailure).
    message: error message of an `error` rule (default "The sandbox injected an error."), e.g. one quoting
    a token, to check that the connector does not repeat what AWS says.
    """

    kind: FaultKind
    service: str | None = None
    operation: str | None = None
    account: str | None = None
    region: str | None = None
    count: int | None = None
    fraction: float | None = None
    seconds: float = 0.0
    rate: float = 0.0
    burst: int = 1
    per: str = "operation"
    limit: int = 0
    status: int = 500
    code: str | None = None
    message: str | None = None
    seed: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be >= 1 (omit it to apply to every matching call)")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        if self.kind in ("latency", "hang") and self.seconds <= 0:
            raise ValueError(f"a {self.kind} rule needs seconds > 0")
        if self.kind == "hang":
            self.seconds = min(self.seconds, MAX_HANG_SECONDS)
        if self.kind == "rate_limit" and (self.rate <= 0 or self.burst < 1):
            raise ValueError("a rate_limit rule needs rate > 0 (calls per second) and burst >= 1")
        if self.per not in RATE_SCOPES:
            raise ValueError(f"per must be one of {', '.join(RATE_SCOPES)}")
        if self.kind == "concurrency" and self.limit < 1:
            raise ValueError("a concurrency rule needs limit >= 1 (calls in flight at once)")
        if self.kind == "scp_deny" and self.service is None:
            raise ValueError("an scp_deny rule needs a service (and usually an account and region)")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault rule field(s): {', '.join(unknown)}")
        if "kind" not in data:
            raise ValueError(f"a fault rule needs 'kind' (one of {', '.join(KINDS)})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, service: str, operation: str, account: str, region: str) -> bool:
        return (
            (self.service is None or self.service == service)
            and (self.operation is None or self.operation == operation)
            and (self.account is None or self.account == account)
            and (self.region is None or self.region == region)
        )


@dataclass
class Decision:
    """What the fault layer wants done with one call."""

    delay: float = 0.0
    fault: FaultKind | None = None  # throttle | error | scp_deny | rate_limit: answer with an error
    status: int = 500
    code: str | None = None
    message: str | None = None
    held: list[_RuleState] = field(default_factory=list)  # concurrency slots taken: Faults.release frees them


class _RuleState:
    def __init__(self, rule: FaultRule) -> None:
        self.rule = rule
        self.remaining = rule.count
        self.rng = random.Random(rule.seed)
        self.buckets: dict[tuple[str, str, str], tuple[float, float]] = {}  # key -> (tokens, last refill)
        self.in_flight = 0

    def fires(self) -> bool:
        """Count/fraction gate; consumes one of `count` when it fires."""
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.rule.fraction is not None and self.rng.random() >= self.rule.fraction:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True

    def over_rate(self, key: tuple[str, str, str], now: float) -> bool:
        tokens, last = self.buckets.get(key, (float(self.rule.burst), now))
        tokens = min(float(self.rule.burst), tokens + (now - last) * self.rule.rate)
        if tokens >= 1.0:
            self.buckets[key] = (tokens - 1.0, now)
            return False
        self.buckets[key] = (tokens, now)
        return True


class Faults:
    """The sandbox's fault rules and call counters (`Sandbox.faults`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, _RuleState] = {}
        self._by_operation: Counter[str] = Counter()
        self._by_target: Counter[str] = Counter()
        self._faulted: Counter[str] = Counter()

    # -- rules -------------------------------------------------------------------------------------------
    def add(self, rule: FaultRule | None = None, /, **kwargs: Any) -> str:
        """Add a rule (a FaultRule, or its fields as keywords: `add(kind="throttle", service="eks", count=2)`)."""
        if rule is None:
            rule = FaultRule.from_dict(kwargs)
        elif kwargs:
            raise TypeError("pass either a FaultRule or keyword fields, not both")
        with self._lock:
            self._rules[rule.id] = _RuleState(rule)
        return rule.id

    def latency(self, seconds: float, **scope: Any) -> str:
        return self.add(kind="latency", seconds=seconds, **scope)

    def throttle(self, count: int | None = None, fraction: float | None = None, **scope: Any) -> str:
        return self.add(kind="throttle", count=count, fraction=fraction, **scope)

    def error(self, fraction: float | None = None, count: int | None = None, status: int = 500, **scope: Any) -> str:
        return self.add(kind="error", fraction=fraction, count=count, status=status, **scope)  # scope may set code

    def hang(self, seconds: float, **scope: Any) -> str:
        return self.add(kind="hang", seconds=seconds, **scope)

    def scp_deny(self, service: str, account: str | None = None, region: str | None = None, **scope: Any) -> str:
        return self.add(kind="scp_deny", service=service, account=account, region=region, **scope)

    def rate_limit(self, rate: float, burst: int = 1, **scope: Any) -> str:
        return self.add(kind="rate_limit", rate=rate, burst=burst, **scope)

    def concurrency(self, limit: int, **scope: Any) -> str:
        return self.add(kind="concurrency", limit=limit, **scope)

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            return self._rules.pop(rule_id, None) is not None

    def clear(self) -> None:
        """Drop every rule (counters stay: see reset_counts)."""
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return [state.rule for state in self._rules.values()]

    # -- counters ----------------------------------------------------------------------------------------
    def counts(self) -> dict[str, dict[str, int]]:
        """Calls received (faulted ones included): by "service:Operation", by "account/region/service",
        and the faulted ones by "service:Operation"."""
        with self._lock:
            return {
                "by_operation": dict(self._by_operation),
                "by_target": dict(self._by_target),
                "faulted": dict(self._faulted),
            }

    def calls(self, service: str, operation: str) -> int:
        with self._lock:
            return self._by_operation[f"{service}:{operation}"]

    def reset_counts(self) -> None:
        with self._lock:
            self._by_operation.clear()
            self._by_target.clear()
            self._faulted.clear()

    # -- the request path --------------------------------------------------------------------------------
    def decide(self, service: str, operation: str, account: str, region: str) -> Decision:
        """Count one call and decide its fate. Order: SCP deny, rate limit, throttle, error; latency and
        hangs add delay to whatever the answer is."""
        decision = Decision()
        op_key = f"{service}:{operation}"
        with self._lock:
            self._by_operation[op_key] += 1
            self._by_target[f"{account}/{region}/{service}"] += 1
            now = time.monotonic()
            matching = [s for s in self._rules.values() if s.rule.matches(service, operation, account, region)]
            for state in matching:
                if state.rule.kind in ("latency", "hang") and state.fires():
                    decision.delay += state.rule.seconds
            for kind in _ERROR_PRECEDENCE:
                for state in matching:
                    if state.rule.kind != kind:
                        continue
                    if kind == "rate_limit":
                        per = operation if state.rule.per == "operation" else "*"
                        hit = state.over_rate((account, region, per), now)
                    elif kind == "concurrency":
                        hit = state.in_flight >= state.rule.limit
                        if not hit:
                            state.in_flight += 1
                            decision.held.append(state)
                    else:
                        hit = state.fires()
                    if hit:
                        decision.fault = kind
                        decision.status = state.rule.status
                        decision.code = state.rule.code
                        decision.message = state.rule.message
                        break
                if decision.fault is not None:
                    break
            if decision.fault is not None:
                self._faulted[op_key] += 1
        return decision

    def release(self, decision: Decision) -> None:
        """The call `decision` was made for has been answered: free its concurrency slots."""
        if decision.held:
            with self._lock:
                for state in decision.held:
                    state.in_flight -= 1
                decision.held.clear()
