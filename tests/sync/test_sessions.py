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


def test_role_clients_sign_as_their_own_account_when_made_concurrently(sandbox):
    """Every role's clients come from one shared botocore session that holds a role's credentials only while
    a client is made: clients made from many threads at once must each sign as their own account. And the
    STS client that assumes member roles is made once for the source credentials, not once per role."""
    from concurrent.futures import ThreadPoolExecutor

    info = sandbox.seed_info
    aws = AwsSessions(info.connector_id)
    mgmt = aws.assume(info.management_role_arn, external_id=info.external_id)
    members = [
        a.id
        for a in info.accounts[1:]
        if a.state == "ACTIVE" and a.id not in (info.account_without_member_role, info.management_account_id)
    ][:12]
    keys = {account: aws.assume(info.member_role_arn(account), via=mgmt) for account in members}

    def who(job: tuple[str, str]) -> tuple[str, str]:
        account, region = job
        return account, aws.client(keys[account], "sts", region).get_caller_identity()["Account"]

    jobs = [(account, region) for account in members for region in ("us-east-1", "eu-west-1")]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(who, jobs))
    assert answers == [(account, account) for account, _ in jobs]
    assert len(aws._sts_clients) == 2  # the identity's (assumed the management role), the management role's (all 12)
    assert aws._roles._credentials is None  # the shared session keeps no role's credentials between creations


def test_timestamps_parse_to_the_same_instants_in_utc(sandbox):
    """Epoch numbers (EKS's createdAt) come back in the standard library's UTC, not a dateutil tzlocal per
    value; ISO strings (STS's Expiration) still go through botocore's own parser. Same instants either way."""
    import datetime

    from botocore.utils import parse_timestamp

    from connector.aws.timestamps import parse_aws_timestamp

    info = sandbox.seed_info
    aws = AwsSessions(info.connector_id)
    mgmt = aws.assume(info.management_role_arn, external_id=info.external_id)
    account, region, name = next(
        (c.account, c.region, c.name) for c in info.clusters if c.account != info.management_account_id
    )
    member = aws.assume(info.member_role_arn(account), via=mgmt)
    created = aws.client(member, "eks", region).describe_cluster(name=name)["cluster"]["createdAt"]
    assert created.tzinfo is datetime.UTC
    for value in (1.7e9, 1700000000, "2026-12-01T10:00:00Z", "2026-12-01T10:00:00.5+02:00"):
        assert parse_aws_timestamp(value) == parse_timestamp(value)
    assert parse_aws_timestamp(1.7e9).isoformat() == "2023-11-14T22:13:20+00:00"
