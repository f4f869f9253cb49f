"""CloudTrail event history (LookupEvents) for the sandbox: moto implements the trails, not the history.

Every signed call the sandbox serves is recorded as CloudTrail would record it in the caller's account and
the call's region: event name, source (`<signing name>.amazonaws.com`), time, the caller (userIdentity with
the assumed role behind a session), read-only or not, the error code of a refused call, and the resource it
named where the request says so (SNS TopicArn, SQS QueueUrl, an S3 bucket, a DynamoDB TableName). As in AWS,
data events (S3 object calls, SQS messages, SNS Publish, DynamoDB item calls) are NOT in the event history:
they reach only trails configured for data events. LookupEvents answers as botocore's model has it: at most
one lookup attribute, MaxResults 1-50, newest first, StartTime/EndTime, NextToken. Bounded: the newest
MAX_EVENTS events are kept.
"""

from __future__ import annotations

import base64
import collections
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connector.sandbox import protocol
from connector.sandbox.identity import resolve_caller

MAX_EVENTS = 50_000
DATA_EVENTS = {
    "s3": ("GetObject", "PutObject", "DeleteObject", "HeadObject", "CopyObject", "ListObjects", "ListObjectsV2"),
    "sqs": ("SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch",
            "ChangeMessageVisibility", "ChangeMessageVisibilityBatch"),
    "sns": ("Publish", "PublishBatch"),
    "dynamodb": ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem", "BatchWriteItem"),
}  # fmt: skip
READ_PREFIXES = ("Get", "List", "Describe", "Lookup", "Search", "Head")
NOT_RECORDED = ("cloudtrail:LookupEvents",)  # the history does not record reads of itself in the sandbox


@dataclass(frozen=True)
class Recorded:
    id: str
    time: datetime
    account: str
    region: str
    service: str
    operation: str
    access_key: str
    resource: str
    error_code: str


def resource_named(service: str, labels: dict[str, str], params: dict[str, Any]) -> str:
    if service == "sns" and params.get("TopicArn"):
        return str(params["TopicArn"])
    if service == "sqs" and params.get("QueueUrl"):
        return str(params["QueueUrl"])
    if service == "s3" and labels.get("Bucket"):
        return f"arn:aws:s3:::{labels['Bucket']}"
    if service == "dynamodb" and params.get("TableName"):
        return str(params["TableName"])
    return ""


class EventHistory:
    def __init__(self) -> None:
        self._events: collections.deque[Recorded] = collections.deque(maxlen=MAX_EVENTS)
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._events.clear()

    def record(self, info: protocol.RequestInfo, account: str, params: dict[str, Any], status: int) -> None:
        if not info.operation or f"{info.service}:{info.operation}" in NOT_RECORDED:
            return
        if info.operation in DATA_EVENTS.get(info.service, ()):
            return
        error = "" if status < 400 else ("AccessDenied" if status == 403 else f"HTTP{status}")
        event = Recorded(
            id=str(uuid.uuid4()),
            time=datetime.now(UTC),
            account=account,
            region=info.region,
            service=info.service,
            operation=info.operation,
            access_key=info.access_key,
            resource=resource_named(info.service, dict(info.labels), params),
            error_code=error,
        )
        with self._lock:
            self._events.append(event)

    def lookup(self, account: str, region: str, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            params = json.loads(body or b"{}")
            answer = self._lookup(account, region, params)
        except LookupError as exc:
            code, message = exc.args
            return protocol.error_response("cloudtrail", code, message, 400)
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", str(uuid.uuid4()))]
        return 200, headers, json.dumps(answer).encode()

    def _lookup(self, account: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        attributes = params.get("LookupAttributes") or []
        if len(attributes) > 1:
            raise LookupError("InvalidLookupAttributesException", "You can only specify one lookup attribute.")
        size = int(params.get("MaxResults") or 50)
        if not 1 <= size <= 50:
            raise LookupError("InvalidMaxResultsException", "MaxResults must be between 1 and 50.")
        start = _time(params.get("StartTime"), datetime.min.replace(tzinfo=UTC))
        end = _time(params.get("EndTime"), datetime.max.replace(tzinfo=UTC))
        if start > end:
            raise LookupError("InvalidTimeRangeException", "StartTime must be before EndTime.")
        with self._lock:
            events = [e for e in self._events if e.account == account and e.region == region and start <= e.time <= end]
        events.reverse()  # newest first, as AWS returns them
        if attributes:
            key, value = attributes[0].get("AttributeKey"), attributes[0].get("AttributeValue")
            events = [e for e in events if _attribute(e, key) == value]
        offset = 0
        if params.get("NextToken"):
            try:
                offset = int(base64.urlsafe_b64decode(str(params["NextToken"]).encode()).decode())
            except ValueError:
                raise LookupError("InvalidNextTokenException", "Invalid NextToken.") from None
        chunk = events[offset : offset + size]
        out: dict[str, Any] = {"Events": [_wire(e) for e in chunk]}
        if offset + size < len(events):
            out["NextToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return out


def _time(value: Any, default: datetime) -> datetime:
    if value is None:
        return default
    return datetime.fromtimestamp(float(value), UTC)


def _read_only(e: Recorded) -> str:
    return "true" if e.operation.startswith(READ_PREFIXES) else "false"


def _attribute(e: Recorded, key: str | None) -> str:
    caller = resolve_caller(e.access_key)
    return {
        "EventId": e.id,
        "EventName": e.operation,
        "ReadOnly": _read_only(e),
        "Username": _username(caller.arn),
        "ResourceName": e.resource,
        "EventSource": f"{_source(e.service)}.amazonaws.com",
        "AccessKeyId": e.access_key,
    }.get(key or "", "")


def _username(arn: str) -> str:
    """CloudTrail's Username: the session name of a role session, the user name, or `root`."""
    return arn.rsplit("/", 1)[-1] if "/" in arn else "root"


def _source(service: str) -> str:
    model = protocol.service_model(service)
    return str(model.metadata.get("endpointPrefix", service)) if model is not None else service


def _wire(e: Recorded) -> dict[str, Any]:
    caller = resolve_caller(e.access_key)
    identity: dict[str, Any] = {"arn": caller.arn, "accountId": caller.account, "accessKeyId": e.access_key}
    if caller.role_arn is not None:
        identity |= {
            "type": "AssumedRole",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "arn": caller.role_arn,
                    "userName": caller.role_arn.rsplit("/", 1)[-1],
                }
            },
        }
    else:
        identity["type"] = "Root" if caller.arn.endswith(":root") else "IAMUser"
    source = f"{_source(e.service)}.amazonaws.com"
    detail = {
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": e.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": source,
        "eventName": e.operation,
        "awsRegion": e.region,
        "sourceIPAddress": "192.0.2.10",
        "readOnly": _read_only(e) == "true",
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": e.account,
        "eventID": e.id,
        **({"errorCode": e.error_code} if e.error_code else {}),
        **({"resources": [{"ARN": e.resource}]} if e.resource.startswith("arn:") else {}),
    }
    return {
        "EventId": e.id,
        "EventName": e.operation,
        "ReadOnly": _read_only(e),
        "AccessKeyId": e.access_key,
        "EventTime": e.time.timestamp(),
        "EventSource": source,
        "Username": _username(caller.arn),
        "Resources": [{"ResourceType": "", "ResourceName": e.resource}] if e.resource else [],
        "CloudTrailEvent": json.dumps(detail),
    }
