"""The inline policy of an EC2-through-SSM grant, its name and its record, and how the requester connects.

The policy follows AWS's "Sample IAM policies for Session Manager": ssm:StartSession on exactly the granted
instances and the session documents the customer allows, what the Session Manager plugin needs to show and
follow a session, and ending or resuming only the requester's own sessions. Roles and Identity Center users
cannot use `session/${aws:username}-*` (that works for IAM users only): their own sessions are the ones whose
tag aws:ssmmessages:session-id, which SSM sets, equals the caller's ${aws:userid}.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from connector.integrations import ledger

POLICY_PREFIX = "access-connector-ssm-"
# The record's tag key on the role. Not under ledger.GRANT_PREFIX: that prefix on a role is the IAM kind's
# record, which its expiry scan reads and would revoke as its own.
RECORD_PREFIX = "access-connector/ssm-grant/"
ROLE_INLINE_LIMIT = 10_240  # AWS: all inline policies of a role together, whitespace not counted
_POLICY_NAME_OK = re.compile(r"^[\w+=,.@-]{1,100}$")

# Setting / target name -> the SSM document. SSM-SessionManagerRunShell is the account's own document (SSM
# makes it on first use); the others are AWS-owned, so their ARNs carry no account.
DOCUMENTS = {
    "shell": "SSM-SessionManagerRunShell",
    "ssh": "AWS-StartSSHSession",
    "port_forwarding": "AWS-StartPortForwardingSession",
}
AWS_OWNED = frozenset(("AWS-StartSSHSession", "AWS-StartPortForwardingSession"))

# Fixed statements besides StartSession; drift compares a connector-made policy against exactly these.
OBSERVE_ACTIONS = (
    "ssm:DescribeSessions",  # list their sessions (the plugin and the console)
    "ssm:GetConnectionStatus",  # whether the instance is reachable before connecting
    "ssm:DescribeInstanceInformation",  # the instance's agent and ping status
    "ssm:DescribeInstanceProperties",  # the console's instance list
    "ec2:DescribeInstances",  # find the instance by name or tag
)
OWN_SESSION_ACTIONS = ("ssm:TerminateSession", "ssm:ResumeSession")  # end or resume their own sessions only
DATA_CHANNEL_ACTIONS = ("ssmmessages:OpenDataChannel",)  # the session's data stream
SIDS = ("StartSessionOnGrantedInstances", "ObserveSessions", "EndOwnSessions", "OwnDataChannel")


def record_key(grant_id: str) -> str:
    return RECORD_PREFIX + ledger.key_suffix(ledger.grant_key(grant_id))


def grant_id_of(key: str) -> str:
    """The grant id a revoke addresses this record with (`record_key(grant_id_of(k)) == k`)."""
    return key.removeprefix(RECORD_PREFIX)


def policy_name_for(grant_id: str) -> str:
    suffix = ledger.key_suffix(ledger.grant_key(grant_id))
    if not _POLICY_NAME_OK.match(suffix) or len(POLICY_PREFIX + suffix) > 128:
        suffix = "h-" + hashlib.sha256(suffix.encode()).hexdigest()[:40]
    return POLICY_PREFIX + suffix


def instance_arn(partition: str, region: str, account: str, instance_id: str) -> str:
    return f"arn:{partition}:ec2:{region}:{account}:instance/{instance_id}"


def document_arn(partition: str, region: str, account: str, document: str) -> str:
    name = DOCUMENTS[document]
    return f"arn:{partition}:ssm:{region}:{'' if name in AWS_OWNED else account}:document/{name}"


def build_document(
    partition: str, region: str, account: str, instances: Iterable[str], documents: Iterable[str]
) -> dict[str, Any]:
    start = [instance_arn(partition, region, account, i) for i in instances]
    start += [document_arn(partition, region, account, d) for d in documents]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": SIDS[0],
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": start,
                # AWS's sample: the document check also applies when a caller names no document.
                "Condition": {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}},
            },
            {"Sid": SIDS[1], "Effect": "Allow", "Action": list(OBSERVE_ACTIONS), "Resource": "*"},
            {
                "Sid": SIDS[2],
                "Effect": "Allow",
                "Action": list(OWN_SESSION_ACTIONS),
                "Resource": f"arn:{partition}:ssm:*:*:session/*",
                "Condition": {"StringLike": {"ssm:resourceTag/aws:ssmmessages:session-id": ["${aws:userid}"]}},
            },
            {
                "Sid": SIDS[3],
                "Effect": "Allow",
                "Action": list(DATA_CHANNEL_ACTIONS),
                "Resource": f"arn:{partition}:ssm:*:*:session/${{aws:userid}}-*",
            },
        ],
    }


def policy_chars(document: Any) -> int:
    text = document if isinstance(document, str) else json.dumps(document, separators=(",", ":"))
    return sum(1 for ch in text if not ch.isspace())


def granted_instances(document: Mapping[str, Any]) -> list[str]:
    """Instance ids a policy of ours lets start sessions on (read back by revoke, to end those sessions)."""
    out = []
    for statement in _statements(document):
        if statement.get("Sid") == SIDS[0]:
            for arn in _listed(statement.get("Resource")):
                if ":instance/" in arn:
                    out.append(arn.rsplit("/", 1)[-1])
    return out


def foreign_statements(document: Mapping[str, Any]) -> list[str]:
    """What in a connector-made policy the connector did not write: statements with another Sid, another
    effect, or actions beyond its fixed lists (drift: someone added access to a policy the connector owns)."""
    expected = {
        SIDS[0]: {"ssm:StartSession"},
        SIDS[1]: set(OBSERVE_ACTIONS),
        SIDS[2]: set(OWN_SESSION_ACTIONS),
        SIDS[3]: set(DATA_CHANNEL_ACTIONS),
    }
    out = []
    for statement in _statements(document):
        sid = str(statement.get("Sid", ""))
        actions = {a.lower() for a in _listed(statement.get("Action"))}
        allowed = {a.lower() for a in expected.get(sid, set())}
        if sid not in expected or statement.get("Effect") != "Allow" or "NotAction" in statement or actions - allowed:
            out.append(sid or "(no Sid)")
    return out


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = document.get("Statement", [])
    return [s for s in (found if isinstance(found, list) else [found]) if isinstance(s, Mapping)]


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def connect_commands(region: str, instances: Iterable[str], documents: Iterable[str]) -> dict[str, Any]:
    """How the requester connects (they need the AWS CLI and its Session Manager plugin, seed 001)."""
    ids = list(instances)
    first = ids[0] if ids else "<instance id>"
    out: dict[str, Any] = {"requires": "AWS CLI v2 with the Session Manager plugin"}
    for document in documents:
        if document == "shell":
            out["shell"] = [f"aws ssm start-session --target {i} --region {region}" for i in ids]
        elif document == "ssh":
            out["ssh"] = (
                "ssh -o ProxyCommand='aws ssm start-session --target %h --document-name AWS-StartSSHSession "
                f"--parameters portNumber=%p --region {region}' <user>@{first}"
            )
        elif document == "port_forwarding":
            out["port_forwarding"] = (
                f"aws ssm start-session --target {first} --document-name AWS-StartPortForwardingSession "
                f"--parameters portNumber=<port on the instance>,localPortNumber=<local port> --region {region}"
            )
    return out


def encode_record(expires_at: Any, policy: str, region: str) -> str:
    return ledger.encode(
        expires_at, [("ssm", policy), ("region", region)], what="this grant's record on the role (one tag)"
    )
