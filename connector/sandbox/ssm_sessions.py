"""Systems Manager's managed-instance view and Session Manager sessions, which moto 5.2.5 lacks.

moto raises NotImplementedError for DescribeInstanceInformation, StartSession, TerminateSession,
DescribeSessions and GetConnectionStatus. They are served here following botocore's ssm 2014-11-06 model
(shapes, MaxResults ranges, NextToken paging, error codes), on top of moto's EC2 instances and IAM roles:

- An instance is *managed* (listed by DescribeInstanceInformation) when it is not terminated, its SSM agent
  is installed (the default) and its instance profile's role has AmazonSSMManagedInstanceCore attached, as the
  product documents require. PingStatus is Online while it runs and its agent is up, else ConnectionLost.
  `set_agent` changes an instance's agent (not installed, offline, its version); tests call it in-process.
- Sessions live here per (account, region). StartSession needs a managed, Online target (else
  TargetNotConnected) and a known session document (SSM-SessionManagerRunShell, AWS-StartSSHSession,
  AWS-StartPortForwardingSession[ToRemoteHost]; else InvalidDocument). Each session carries the tag AWS
  gives it, aws:ssmmessages:session-id = the caller's aws:userid, which the documented "end your own
  sessions" policy conditions on.
- Roles tagged `sandbox:enforce-iam = true` are authorised the way AWS would for StartSession (the instance
  ARN and the document ARN) and TerminateSession (the session ARN and its tag), from the role's own inline and
  attached policies (connector.sandbox.iam_eval); other callers are not checked, as everywhere in moto.
"""

from __future__ import annotations

import base64
import functools
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from moto.ec2.models import ec2_backends
from moto.iam.models import AWSManagedPolicy, IAMBackend, iam_backends
from moto.utilities.utils import get_partition

from connector.sandbox import iam_eval
from connector.sandbox.identity import Caller, resolve_caller

OPERATIONS = frozenset(
    ("DescribeInstanceInformation", "StartSession", "TerminateSession", "DescribeSessions", "GetConnectionStatus")
)
CORE_POLICY = "AmazonSSMManagedInstanceCore"
ENFORCE_TAG = "sandbox:enforce-iam"
SESSION_ID_TAG = "aws:ssmmessages:session-id"
DEFAULT_DOCUMENT = "SSM-SessionManagerRunShell"
# Session documents SSM itself provides. SSM-SessionManagerRunShell is the account's own (made on first use),
# the others are AWS-owned: their ARNs have no account.
DOCUMENTS = ("SSM-SessionManagerRunShell", "AWS-StartSSHSession", "AWS-StartPortForwardingSession")
AWS_OWNED_DOCUMENTS = frozenset(
    ("AWS-StartSSHSession", "AWS-StartPortForwardingSession", "AWS-StartPortForwardingSessionToRemoteHost")
)
DEFAULT_AGENT_VERSION = "3.3.1142.0"
_LOCK = threading.RLock()


@dataclass
class Agent:
    installed: bool = True
    online: bool = True
    version: str = DEFAULT_AGENT_VERSION


@dataclass
class Session:
    session_id: str
    target: str
    document: str
    owner: str
    user_id: str  # the tag aws:ssmmessages:session-id
    reason: str
    start: float
    status: str = "Connected"
    end: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "SessionId": self.session_id,
            "Target": self.target,
            "Status": self.status,
            "StartDate": self.start,
            "DocumentName": self.document,
            "Owner": self.owner,
            "MaxSessionDuration": "60",
            "AccessType": "Standard",
            "OutputUrl": {},
        }
        if self.reason:
            out["Reason"] = self.reason
        if self.end is not None:
            out["EndDate"] = self.end
        return out


@dataclass
class _Region:
    agents: dict[str, Agent] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)


_STATE: dict[tuple[str, str], _Region] = {}


class SsmApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@functools.cache
def _core_policy_data() -> dict[str, Any]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    data: dict[str, Any] = json.loads(aws_managed_policies_data)[CORE_POLICY]
    return data


def install() -> None:
    """Make AmazonSSMManagedInstanceCore attachable in every account. moto loads AWS managed policies only when
    told to (all ~1,300 of them, in every account it touches): the sandbox loads this one alone."""
    original = getattr(IAMBackend._init_aws_policies, "__wrapped__", IAMBackend._init_aws_policies)

    def init_aws_policies(self: IAMBackend) -> list[Any]:
        policies: list[Any] = original(self)
        if not any(p.name == CORE_POLICY for p in policies):
            policies.append(
                AWSManagedPolicy.from_data(CORE_POLICY, self.account_id, self.region_name, _core_policy_data())
            )
        return policies

    init_aws_policies.__wrapped__ = original  # type: ignore[attr-defined]
    IAMBackend._init_aws_policies = init_aws_policies  # type: ignore[method-assign]


def reset() -> None:
    """Forget every agent and session (moto's state is reset at the same time)."""
    with _LOCK:
        _STATE.clear()


def _region(account: str, region: str) -> _Region:
    return _STATE.setdefault((account, region), _Region())


def set_agent(
    account: str,
    region: str,
    instance_id: str,
    *,
    installed: bool = True,
    online: bool = True,
    version: str = DEFAULT_AGENT_VERSION,
) -> None:
    with _LOCK:
        _region(account, region).agents[instance_id] = Agent(installed, online, version)


def sessions(account: str, region: str) -> list[Session]:
    with _LOCK:
        return list(_region(account, region).sessions.values())


# -- the managed-instance view -------------------------------------------------------------------------------
def _instances(account: str, region: str) -> list[Any]:
    backend = ec2_backends[account][region]
    return [i for r in backend.reservations.values() for i in r.instances if i.state != "terminated"]


def _profile_role(account: str, instance: Any) -> Any | None:
    profile = instance.iam_instance_profile or {}
    iam = iam_backends[account][get_partition(instance.region_name)]
    arn, name = profile.get("Arn"), profile.get("Name")
    for found in iam.instance_profiles.values():
        if found.arn == arn or found.name == name:
            return found.roles[0] if found.roles else None
    return None


def _has_core_policy(role: Any) -> bool:
    return any(str(arn).endswith("/" + CORE_POLICY) for arn in role.managed_policies)


def _information(account: str, region: str) -> list[dict[str, Any]]:
    out = []
    with _LOCK:
        agents = dict(_region(account, region).agents)
    for instance in _instances(account, region):
        agent = agents.get(instance.id, Agent())
        role = _profile_role(account, instance)
        if not agent.installed or role is None or not _has_core_policy(role):
            continue  # the agent never registered: SSM does not know the instance
        online = agent.online and instance.state == "running"
        windows = str(instance.platform or "").lower() == "windows"
        out.append(
            {
                "InstanceId": instance.id,
                "PingStatus": "Online" if online else "ConnectionLost",
                "LastPingDateTime": time.time() if online else time.time() - 3600,
                "AgentVersion": agent.version,
                "IsLatestVersion": agent.version == DEFAULT_AGENT_VERSION,
                "PlatformType": "Windows" if windows else "Linux",
                "PlatformName": "Microsoft Windows Server 2022 Datacenter" if windows else "Amazon Linux",
                "PlatformVersion": "10.0.20348" if windows else "2023",
                "ResourceType": "EC2Instance",
                "IPAddress": instance.private_ip,
                "ComputerName": f"ip-{str(instance.private_ip).replace('.', '-')}.ec2.internal",
                "SourceId": instance.id,
                "SourceType": "AWS::EC2::Instance",
            }
        )
    return out


def _online(account: str, region: str, target: str) -> bool:
    return any(i["InstanceId"] == target and i["PingStatus"] == "Online" for i in _information(account, region))


# -- paging --------------------------------------------------------------------------------------------------
def _page(
    items: list[Any], max_results: Any, token: Any, default: int, low: int, high: int
) -> tuple[list[Any], str | None]:
    size = default if max_results is None else int(max_results)
    if not low <= size <= high:
        raise SsmApiError("ValidationException", f"MaxResults must be between {low} and {high}")
    start = 0
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(str(token).encode()))["o"])
        except (ValueError, KeyError, TypeError):
            raise SsmApiError("InvalidNextToken", "The specified token isn't valid.") from None
    end = start + size
    nxt = base64.urlsafe_b64encode(json.dumps({"o": end}).encode()).decode() if end < len(items) else None
    return items[start:end], nxt


# -- operations ----------------------------------------------------------------------------------------------
def describe_instance_information(account: str, region: str, caller: Caller, params: Mapping[str, Any]) -> Any:
    items = _information(account, region)
    tags = {i.id: {t["key"]: t["value"] for t in i.get_tags()} for i in _instances(account, region)}
    keys = {"InstanceIds": "InstanceId", "PingStatus": "PingStatus", "PlatformTypes": "PlatformType",
            "ResourceType": "ResourceType", "AgentVersion": "AgentVersion"}  # fmt: skip
    pairs = [(f["key"], f["valueSet"]) for f in params.get("InstanceInformationFilterList") or []]
    pairs += [(f["Key"], f["Values"]) for f in params.get("Filters") or []]
    for key, values in pairs:
        if key.startswith("tag:"):
            items = [i for i in items if tags.get(i["InstanceId"], {}).get(key[4:]) in values]
        elif key == "tag-key":
            items = [i for i in items if set(values) & set(tags.get(i["InstanceId"], {}))]
        elif key in keys:
            items = [i for i in items if str(i[keys[key]]) in values]
        else:
            raise SsmApiError("InvalidFilterKey", f"The filter key {key} is not valid.")
    page, token = _page(items, params.get("MaxResults"), params.get("NextToken"), 10, 5, 50)
    return {"InstanceInformationList": page, **({"NextToken": token} if token else {})}


def _user_id(caller: Caller) -> str:
    name = caller.arn.rsplit("/", 1)[-1]
    iam = iam_backends[caller.account][caller.arn.split(":")[1]]
    if caller.role_arn is not None:
        role = next((r for r in iam.roles.values() if r.arn == caller.role_arn), None)
        return f"{role.id if role else 'AROA'}:{name}"
    user = iam.users.get(name)
    return str(user.id) if user is not None and caller.arn.endswith(f":user/{name}") else caller.account


def _tag_value(tags: Any, key: str) -> str | None:
    """A moto IAM resource's tag: kept as a list of {Key, Value} (or a dict of them, in older models)."""
    entries = tags.values() if isinstance(tags, dict) else (tags or [])
    return next((str(t.get("Value")) for t in entries if isinstance(t, dict) and t.get("Key") == key), None)


def _enforced_documents(caller: Caller) -> list[Any] | None:
    """The caller role's policy documents when the sandbox authorises it (tag sandbox:enforce-iam=true)."""
    if caller.role_arn is None:
        return None
    iam = iam_backends[caller.account][caller.arn.split(":")[1]]
    role = next((r for r in iam.roles.values() if r.arn == caller.role_arn), None)
    if role is None or _tag_value(role.tags, ENFORCE_TAG) != "true":
        return None
    documents: list[Any] = list(role.policies.values())
    for policy in role.managed_policies.values():
        documents.append(next(v.document for v in policy.versions if v.is_default))
    return documents


def _authorise(caller: Caller, action: str, resource: str, context: dict[str, str]) -> None:
    documents = _enforced_documents(caller)
    if documents is None:
        return
    full = {"aws:userid": _user_id(caller), "aws:username": caller.arn.rsplit("/", 1)[-1],
            "aws:PrincipalAccount": caller.account, **context}  # fmt: skip
    if not iam_eval.allowed(documents, iam_eval.Request(action, resource, full)):
        raise SsmApiError(
            "AccessDeniedException",
            f"User: {caller.arn} is not authorized to perform: {action} on resource: {resource} "
            f"because no identity-based policy allows the {action} action",
        )


def document_arn(region: str, account: str, name: str) -> str:
    return (
        f"arn:{get_partition(region)}:ssm:{region}::document/{name}"
        if name in AWS_OWNED_DOCUMENTS
        else (f"arn:{get_partition(region)}:ssm:{region}:{account}:document/{name}")
    )


def start_session(account: str, region: str, caller: Caller, params: Mapping[str, Any]) -> Any:
    target = str(params.get("Target") or "")
    document = str(params.get("DocumentName") or DEFAULT_DOCUMENT)
    if document not in DOCUMENTS and document not in AWS_OWNED_DOCUMENTS:
        raise SsmApiError("InvalidDocument", f"Document with name {document} does not exist.")
    instance = next((i for i in _instances(account, region) if i.id == target), None)
    tags = {f"ssm:resourceTag/{t['key']}": t["value"] for t in instance.get_tags()} if instance is not None else {}
    _authorise(
        caller, "ssm:StartSession", f"arn:{get_partition(region)}:ec2:{region}:{account}:instance/{target}", tags
    )
    _authorise(
        caller, "ssm:StartSession", document_arn(region, account, document), {"ssm:SessionDocumentAccessCheck": "true"}
    )
    if instance is None or not _online(account, region, target):
        raise SsmApiError("TargetNotConnected", f"{target} is not connected.")
    name = caller.arn.rsplit("/", 1)[-1].rsplit(":", 1)[-1] or "session"
    session = Session(
        session_id=f"{name}-{secrets.token_hex(9)[:17]}",
        target=target,
        document=document,
        owner=caller.arn,
        user_id=_user_id(caller),
        reason=str(params.get("Reason") or ""),
        start=time.time(),
    )
    with _LOCK:
        _region(account, region).sessions[session.session_id] = session
    return {
        "SessionId": session.session_id,
        "TokenValue": secrets.token_urlsafe(48),
        "StreamUrl": f"wss://ssmmessages.{region}.amazonaws.com/v1/data-channel/{session.session_id}"
        "?role=publish_subscribe&cell-number=AAEAAQ",
    }


def terminate_session(account: str, region: str, caller: Caller, params: Mapping[str, Any]) -> Any:
    session_id = str(params.get("SessionId") or "")
    with _LOCK:
        session = _region(account, region).sessions.get(session_id)
    if session is None:
        return {"SessionId": session_id}  # the model has no not-found error: terminating is idempotent
    _authorise(
        caller,
        "ssm:TerminateSession",
        f"arn:{get_partition(region)}:ssm:{region}:{account}:session/{session_id}",
        {f"ssm:resourceTag/{SESSION_ID_TAG}": session.user_id},
    )
    with _LOCK:
        if session.status != "Terminated":
            session.status, session.end = "Terminated", time.time()
    return {"SessionId": session_id}


def describe_sessions(account: str, region: str, caller: Caller, params: Mapping[str, Any]) -> Any:
    state = params.get("State")
    if state not in ("Active", "History"):
        raise SsmApiError("ValidationException", "State must be Active or History")
    with _LOCK:
        found = [
            s for s in _region(account, region).sessions.values() if (s.status == "Terminated") == (state == "History")
        ]
    for f in params.get("Filters") or []:
        key, value = f.get("key"), str(f.get("value"))
        if key == "Target":
            found = [s for s in found if s.target == value]
        elif key == "Owner":
            found = [s for s in found if s.owner == value]
        elif key == "Status":
            found = [s for s in found if s.status == value]
        elif key == "SessionId":
            found = [s for s in found if s.session_id == value]
        elif key in ("InvokedAfter", "InvokedBefore"):
            from datetime import datetime

            when = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            found = [s for s in found if (s.start >= when) == (key == "InvokedAfter")]
        elif key != "AccessType":
            raise SsmApiError("InvalidFilterKey", f"The filter key {key} is not valid.")
    found.sort(key=lambda s: -s.start)
    page, token = _page([s.to_dict() for s in found], params.get("MaxResults"), params.get("NextToken"), 20, 1, 200)
    return {"Sessions": page, **({"NextToken": token} if token else {})}


def get_connection_status(account: str, region: str, caller: Caller, params: Mapping[str, Any]) -> Any:
    target = str(params.get("Target") or "")
    return {"Target": target, "Status": "connected" if _online(account, region, target) else "notconnected"}


_HANDLERS: dict[str, Callable[[str, str, Caller, Mapping[str, Any]], Any]] = {
    "DescribeInstanceInformation": describe_instance_information,
    "StartSession": start_session,
    "TerminateSession": terminate_session,
    "DescribeSessions": describe_sessions,
    "GetConnectionStatus": get_connection_status,
}


def respond(
    account: str, region: str, operation: str, access_key: str, body: bytes
) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of one of OPERATIONS, in the JSON 1.1 protocol botocore parses."""
    headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", secrets.token_hex(16))]
    try:
        params = json.loads(body or b"{}")
        if not isinstance(params, dict):
            raise SsmApiError("SerializationException", "the request body is not a JSON object")
        answer = _HANDLERS[operation](account, region, resolve_caller(access_key, get_partition(region)), params)
    except SsmApiError as exc:
        error = {"__type": exc.code, "message": exc.message, "Message": exc.message}
        return exc.status, headers, json.dumps(error).encode()
    except ValueError:
        error = {"__type": "SerializationException", "message": "the request body is not JSON"}
        return 400, headers, json.dumps(error).encode()
    return 200, headers, json.dumps(answer).encode()
