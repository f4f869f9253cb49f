"""What a granted principal did while its grant was live, read from logs the customer already has, summarised.

- CloudTrail event history (LookupEvents), per region of the grant and per event source of the services it
  covers (LookupAttributes EventSource=<service>.amazonaws.com: one attribute per call is all the API takes),
  kept when the caller is a session of the granted role (userIdentity.sessionContext.sessionIssuer.arn). The
  event history holds management events only: data events (S3 objects, SQS messages, SNS Publish, DynamoDB
  items) reach only a trail configured for them, which the summary says.
- The EKS control plane's audit log in CloudWatch Logs (`/aws/eks/<cluster>/cluster`, streams
  `kube-apiserver-audit-*`, which the customer turns on with the cluster's `audit` log type): FilterLogEvents
  with the role's ARN as a quoted term, then each event checked for the access entry's username and the
  role as its canonical ARN.
- Session Manager's session list (DescribeSessions, State=History and Active, a Target filter per granted
  instance and InvokedAfter / InvokedBefore for the window), kept when the Owner is a session of the granted
  role (`arn:<partition>:sts::<account>:assumed-role/<role>/...`). It names sessions, never what was typed in
  them: that needs Session Manager's session logging (S3 / CloudWatch Logs), which the summary says.

Bounded: at most MAX_PAGES pages per (region, source) and MAX_EVENTS events in all; past that `truncated`.
The summary carries counts per action, refused calls, first and last time, and up to MAX_LISTED resources
or namespaces: never a raw log line, a request body or a credential.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from connector.aws.errors import error_code
from connector.integrations.capabilities import AuditSummary

MAX_PAGES = 20  # LookupEvents pages of 50 per (region, event source); FilterLogEvents pages per cluster
MAX_EVENTS = 5000
MAX_LISTED = 25
NO_DATA_EVENTS = (
    "CloudTrail's event history has management events only: object, message and item calls (data events) "
    "are logged only by a trail configured for data events"
)
NO_SESSION_CONTENT = (
    "Session Manager's session history names sessions (who, which instance and document, when), not the "
    "commands run in them: turn on session logging to S3 or CloudWatch Logs in Session Manager's preferences "
    "to record those"
)
SESSION_STATES = ("History", "Active")  # terminated (kept 30 days) and still open


class _Tally:
    def __init__(self) -> None:
        self.actions: Counter[str] = Counter()
        self.errors = 0
        self.times: list[datetime] = []
        self.resources: dict[str, None] = {}
        self.truncated = False

    def add(self, action: str, when: datetime, failed: bool, resources: Iterable[str]) -> bool:
        """False once the bound is reached."""
        if sum(self.actions.values()) >= MAX_EVENTS:
            self.truncated = True
            return False
        self.actions[action] += 1
        self.errors += int(failed)
        self.times.append(when)
        for r in resources:
            if r and len(self.resources) < MAX_LISTED:
                self.resources[r[:256]] = None
        return True

    def summary(self, notes: tuple[str, ...] = ()) -> AuditSummary:
        return AuditSummary(
            events=sum(self.actions.values()),
            by_action=dict(self.actions.most_common(MAX_LISTED)),
            errors=self.errors,
            first=min(self.times).isoformat() if self.times else "",
            last=max(self.times).isoformat() if self.times else "",
            resources=tuple(self.resources),
            truncated=self.truncated or len(self.actions) > MAX_LISTED,
            notes=notes,
        )


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


def cloudtrail_summary(
    cloudtrail_in: Callable[[str], Any],
    role_arn: str,
    regions: Iterable[str],
    services: Iterable[str],
    start: datetime,
    end: datetime,
) -> AuditSummary:
    tally = _Tally()
    for region in regions:
        client = cloudtrail_in(region)
        for service in services:
            pages = client.get_paginator("lookup_events").paginate(
                LookupAttributes=[{"AttributeKey": "EventSource", "AttributeValue": f"{service}.amazonaws.com"}],
                StartTime=start,
                EndTime=end,
                PaginationConfig={"MaxItems": MAX_PAGES * 50, "PageSize": 50},
            )
            for page in pages:
                for event in page.get("Events", []):
                    try:
                        detail = json.loads(event.get("CloudTrailEvent") or "{}")
                    except ValueError:
                        continue
                    identity = detail.get("userIdentity") or {}
                    issuer = ((identity.get("sessionContext") or {}).get("sessionIssuer") or {}).get("arn")
                    if issuer != role_arn:
                        continue
                    names = [str(r.get("ResourceName", "")) for r in event.get("Resources", [])]
                    action = f"{service}:{event.get('EventName', '')}"
                    if not tally.add(action, _when(event["EventTime"]), bool(detail.get("errorCode")), names):
                        return tally.summary((NO_DATA_EVENTS,))
            if pages.resume_token:
                tally.truncated = True
    return tally.summary((NO_DATA_EVENTS,))


def eks_log_group(cluster: str) -> str:
    return f"/aws/eks/{cluster}/cluster"


def eks_audit_summary(
    logs: Any, cluster: str, role_arn: str, username: str, start: datetime, end: datetime
) -> AuditSummary:
    """The access entry's activity in the cluster's audit log. `username` is the entry's template: the part
    before `{{` must start the logged username (`apono:{{SessionName}}` -> `apono:`)."""
    prefix = username.split("{{", 1)[0]
    exact = "{{" not in username
    tally = _Tally()
    try:
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=eks_log_group(cluster),
            logStreamNamePrefix="kube-apiserver-audit",
            startTime=int(start.timestamp() * 1000),
            endTime=int(end.timestamp() * 1000),
            filterPattern=f'"{role_arn}"',
            PaginationConfig={"MaxItems": MAX_PAGES * 1000},
        )
        for page in pages:
            for line in page.get("events", []):
                try:
                    event = json.loads(line.get("message") or "{}")
                except ValueError:
                    continue
                user = event.get("user") or {}
                name = str(user.get("username", ""))
                canonical = (user.get("extra") or {}).get("canonicalArn") or []
                if role_arn not in canonical or not (name == username if exact else name.startswith(prefix)):
                    continue
                ref = event.get("objectRef") or {}
                action = f"{event.get('verb', '')} {ref.get('resource', '')}".strip()
                code = int((event.get("responseStatus") or {}).get("code") or 0)
                where = [f"namespace/{ref['namespace']}"] if ref.get("namespace") else []
                if not tally.add(action, _when(int(line.get("timestamp", 0)) / 1000), code >= 400, where):
                    break
        if pages.resume_token:
            tally.truncated = True
    except ClientError as exc:  # the log group's absence is an answer, not a failure
        if error_code(exc) == "ResourceNotFoundException":
            return AuditSummary(
                0,
                {},
                0,
                notes=(
                    f"log group {eks_log_group(cluster)} does not exist: turn on the cluster's audit log type "
                    "(aws eks update-cluster-config --logging ...audit...) to record what access entries do",
                ),
            )
        raise
    return tally.summary()


def _ssm_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ssm_sessions_summary(
    ssm: Any, owner: str, instances: Iterable[str], start: datetime, end: datetime
) -> AuditSummary:
    """The sessions on the granted instances that started inside the window and whose Owner starts with `owner`
    (connector.aws.iam_roles.assumed_role_prefix: any session of the granted role), counted per document and
    instance ("SSM-SessionManagerRunShell i-0abc..."); a session that failed counts as refused."""
    tally = _Tally()
    seen: set[str] = set()
    window = [
        {"key": "InvokedAfter", "value": _ssm_time(start)},
        {"key": "InvokedBefore", "value": _ssm_time(end)},
    ]
    for instance in instances:
        for state in SESSION_STATES:
            pages = ssm.get_paginator("describe_sessions").paginate(
                State=state,
                Filters=[{"key": "Target", "value": instance}, *window],
                PaginationConfig={"MaxItems": MAX_PAGES * 200, "PageSize": 200},
            )
            for page in pages:
                for session in page.get("Sessions", []):
                    session_id = str(session.get("SessionId", ""))
                    if session_id in seen or not str(session.get("Owner", "")).startswith(owner):
                        continue  # one that ended between the two reads is listed twice; another principal's
                    seen.add(session_id)
                    action = f"{session.get('DocumentName', '')} {session.get('Target', instance)}".strip()
                    failed = session.get("Status") == "Failed"
                    if not tally.add(action, _when(session.get("StartDate", 0)), failed, [instance]):
                        return tally.summary((NO_SESSION_CONTENT,))
            if pages.resume_token:
                tally.truncated = True
    return tally.summary((NO_SESSION_CONTENT,))
