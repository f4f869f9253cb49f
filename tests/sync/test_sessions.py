"""Assumed-role sessions: assumed once, refreshed before expiry, never per call — even the shortest ones."""

from __future__ import annotations

from connector.aws.sessions import MIN_SESSION_SECONDS, AwsSessions


def test_a_fifteen_minute_session_is_assumed_once(sandbox):
    info = sandbox.seed_info
    aws = AwsSessions(info.connector_id)
    key = aws.assume(info.management_role_arn, external_id=info.external_id, duration_seconds=MIN_SESSION_SECONDS)
    org = aws.client(key, "organizations", "us-east-1")
    sandbox.faults.reset_counts()
    for _ in range(5):
        org.describe_organization()
    calls = sandbox.faults.counts()["by_operation"]
    assert calls.get("sts:AssumeRole") == 1, calls
    assert calls.get("organizations:DescribeOrganization") == 5
    # ...and no refresh is attempted on every call: with botocore's default 15-min advisory window a 15-min
    # session would be "due" from its first second.
    assert not aws._role_credentials[key].refresh_needed()
