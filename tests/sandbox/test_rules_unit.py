"""Pure rule logic: trust-policy evaluation, fault-rule validation, REST operation matching."""

from __future__ import annotations

import json

import pytest

from connector.sandbox import FaultRule, Faults
from connector.sandbox.identity import Caller
from connector.sandbox.protocol import match_rest_operation, throttling_error
from connector.sandbox.sts_trust import trust_admits

ROLE_CALLER = Caller(
    "111111111111", "arn:aws:sts::111111111111:assumed-role/app/s", "arn:aws:iam::111111111111:role/app"
)


def _policy(principal: object, condition: dict[str, object] | None = None, effect: str = "Allow") -> str:
    statement: dict[str, object] = {"Effect": effect, "Principal": principal, "Action": "sts:AssumeRole"}
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.mark.parametrize(
    ("principal", "admitted"),
    [
        ("*", True),
        ({"AWS": "*"}, True),
        ({"AWS": "arn:aws:iam::111111111111:role/app"}, True),
        ({"AWS": ["arn:aws:iam::999999999999:root", "arn:aws:iam::111111111111:root"]}, True),
        ({"AWS": "111111111111"}, True),
        ({"AWS": "arn:aws:iam::111111111111:role/other"}, False),
        ({"AWS": "arn:aws:iam::222222222222:root"}, False),
        ({"Service": "ecs-tasks.amazonaws.com"}, False),
    ],
)
def test_principals(principal: object, admitted: bool) -> None:
    assert trust_admits(_policy(principal), ROLE_CALLER, None) is admitted


def test_external_id_and_explicit_deny() -> None:
    policy = _policy({"AWS": "*"}, {"StringEquals": {"sts:ExternalId": ["a1", "b2"]}})
    assert trust_admits(policy, ROLE_CALLER, "b2")
    assert not trust_admits(policy, ROLE_CALLER, "c3")
    assert not trust_admits(policy, ROLE_CALLER, None)
    both = json.loads(_policy({"AWS": "*"}))
    both["Statement"].append(json.loads(_policy({"AWS": "111111111111"}, effect="Deny"))["Statement"][0])
    assert not trust_admits(json.dumps(both), ROLE_CALLER, None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "boom"}, "unknown fault kind"),
        ({}, "needs 'kind'"),
        ({"kind": "throttle", "fraction": 1.5}, "fraction"),
        ({"kind": "latency"}, "seconds > 0"),
        ({"kind": "rate_limit", "rate": 0}, "rate > 0"),
        ({"kind": "scp_deny"}, "needs a service"),
        ({"kind": "throttle", "count": 0}, "count must be >= 1"),
        ({"kind": "throttle", "colour": "red"}, "unknown fault rule field"),
    ],
)
def test_bad_rules_say_what_to_fix(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultRule.from_dict(fields)


def test_precedence_and_counts() -> None:
    faults = Faults()
    faults.throttle(count=1, service="eks")
    faults.scp_deny("eks", account="1")
    assert faults.decide("eks", "ListClusters", "1", "us-east-1").fault == "scp_deny"
    # the throttle's single shot was not spent by the denied call
    assert faults.decide("eks", "ListClusters", "2", "us-east-1").fault == "throttle"
    assert faults.decide("eks", "ListClusters", "2", "us-east-1").fault is None
    assert faults.hang(500) and max(r.seconds for r in faults.rules()) == 120.0
    assert faults.counts()["by_target"] == {"1/us-east-1/eks": 1, "2/us-east-1/eks": 2}


def test_rest_matching_and_throttle_codes() -> None:
    path = "/clusters/c1/access-entries/arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%2Fb/access-policies"
    assert match_rest_operation("eks", "GET", path) == (
        "ListAssociatedAccessPolicies",
        {"name": "c1", "principalArn": "arn:aws:iam::1:role/a/b"},
    )
    assert match_rest_operation("eks", "GET", "/clusters") == ("ListClusters", {})
    assert throttling_error("organizations") == ("TooManyRequestsException", 400)
    assert throttling_error("eks") == ("ThrottlingException", 429)
    assert throttling_error("sts") == ("Throttling", 400)
