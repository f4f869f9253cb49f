"""The Session Manager audit reader's rules that the sandbox end-to-end test cannot reach: a session listed by
both states counted once, a Failed one as refused, another principal's ignored, and the bound (truncated). The
client is botocore's own, answered by its Stubber (the requests it sends are checked against the model)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from connector.aws.iam_roles import assumed_role_prefix
from connector.integrations.aws_organization import audit_trail

START = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
OWNER = assumed_role_prefix("aws", "111122223333", "dev-ssm")
INSTANCE = "i-0123456789abcdef0"


def _session(n: int, owner: str = OWNER + "alice", status: str = "Terminated") -> dict[str, Any]:
    return {
        "SessionId": f"alice-{n:017x}",
        "Target": INSTANCE,
        "Status": status,
        "StartDate": START + timedelta(minutes=n % 50),
        "DocumentName": "SSM-SessionManagerRunShell",
        "Owner": owner,
    }


FILTERS = [
    {"key": "Target", "value": INSTANCE},
    {"key": "InvokedAfter", "value": "2026-01-01T10:00:00Z"},
    {"key": "InvokedBefore", "value": "2026-01-01T11:00:00Z"},
]


def _expect(stub: Stubber, state: str, sessions: list[dict[str, Any]], token: str | None = None) -> None:
    params = {"State": state, "Filters": FILTERS, "MaxResults": 200}
    stub.add_response("describe_sessions", {"Sessions": sessions, **({"NextToken": token} if token else {})}, params)


def _ssm() -> Any:
    return boto3.client("ssm", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_counts_once_refused_and_only_the_role() -> None:
    ssm = _ssm()
    with Stubber(ssm) as stub:
        ended, failed = _session(1), _session(2, status="Failed")
        _expect(stub, "History", [ended, failed, _session(3, owner="arn:aws:sts::111122223333:assumed-role/x/a")])
        _expect(stub, "Active", [ended, _session(4, status="Connected")])  # ended between the two reads
        summary = audit_trail.ssm_sessions_summary(ssm, OWNER, [INSTANCE], START, END)
        stub.assert_no_pending_responses()
    assert summary.events == 3 and summary.errors == 1
    assert summary.by_action == {f"SSM-SessionManagerRunShell {INSTANCE}": 3}
    assert summary.resources == (INSTANCE,) and not summary.truncated
    assert summary.first == (START + timedelta(minutes=1)).isoformat()


def test_the_bound_says_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_trail, "MAX_PAGES", 1)
    ssm = _ssm()
    with Stubber(ssm) as stub:
        _expect(stub, "History", [_session(n) for n in range(200)], token="more")
        _expect(stub, "Active", [])
        summary = audit_trail.ssm_sessions_summary(ssm, OWNER, [INSTANCE], START, END)
    assert summary.events == 200 and summary.truncated
