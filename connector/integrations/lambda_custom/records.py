"""Where a Lambda custom grant is recorded: SSM parameters beside the function (same account and region).

The function's own effect lives in the customer's system, out of the connector's sight, so the ledger record
goes to the nearest durable place every replica can read: one SSM parameter per live grant, written before
grant-access is invoked and deleted after revoke-access answered,
    /access-connector-grants/<connector>/lambda/<integration>/<grant>   the record (ledger JSON form: expiry, grant
                                                                       id, function, username, resources, permission)
and one marker per grant that proves a create-credentials was started,
    /access-connector-grants/<connector>/lambda/<integration>/<grant>.create   made with Overwrite=False
PutParameter without Overwrite fails when the parameter exists, so of any number of deliveries and replicas
exactly one starts create-credentials; every later one resets instead (see provisioner.py). The marker says
whether that create may still be running: `state=started until=<epoch>` until its invocation is over (then
`state=answered`); past `until` Lambda has stopped it whatever happened to the caller. Standard parameters:
values up to 4 KB, no cost. The names use hashes where an id does not fit SSM's characters.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from connector.aws.errors import error_code
from connector.integrations import ledger

# Not under /access-connector/, where customers keep the connector's guardrail policy parameter: the
# connector's own role may write here, and must never be able to write there.
ROOT = "/access-connector-grants"
VALUE_LIMIT = 4096  # a standard SSM parameter
CREATE_MARKER = ".create"
# A marker whose `until` cannot be read: a create may run for Lambda's longest Timeout after it was written.
UNREADABLE_MARKER_SECONDS = 900 + 60
_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _segment(value: str) -> str:
    """A path segment for an id: itself when it fits SSM's name characters, else a hash."""
    if _SAFE.match(value) and not value.startswith("."):
        return value
    return "h-" + hashlib.sha256(value.encode()).hexdigest()[:40]


def base_path(connector_id: str, integration_id: str) -> str:
    return f"{ROOT}/{_segment(connector_id)}/lambda/{_segment(integration_id)}"


def grant_segment(grant_id: str) -> str:
    return "g-" + hashlib.sha256(grant_id.encode()).hexdigest()[:40]  # fixed shape: never ends in .create


def encode(grant_id: str, expires_at: datetime | None, fields: Mapping[str, Any]) -> str:
    """The record's value; InvalidJob when it would not fit one parameter (checked before anything is done)."""
    return ledger.encode_json(
        expires_at,
        {"grant_id": grant_id, **fields},
        limit=VALUE_LIMIT,
        what="this grant's record (an SSM parameter beside the function)",
    )


@dataclass(frozen=True)
class Marker:
    """A grant's create marker: who started create-credentials, and whether it may still be running."""

    state: str  # started | answered (anything else: read as started)
    token: str
    until: float  # epoch seconds after which a started create can no longer be running

    def settled(self, now: float) -> bool:
        return self.state == "answered" or now >= self.until


def _parse_marker(value: str, modified: Any) -> Marker:
    words = dict(w.partition("=")[::2] for w in value.split())
    fallback = (modified.timestamp() if isinstance(modified, datetime) else 0.0) + UNREADABLE_MARKER_SECONDS
    until = words.get("until", "")
    readable = until.isascii() and until.isdigit()
    return Marker(words.get("state", ""), words.get("token", ""), float(until) if readable else fallback)


class GrantRecords:
    def __init__(self, ssm: Any, connector_id: str, integration_id: str) -> None:
        self.ssm = ssm
        self.base = base_path(connector_id, integration_id)

    def name(self, grant_id: str) -> str:
        return f"{self.base}/{grant_segment(grant_id)}"

    def _get(self, name: str) -> dict[str, Any] | None:
        try:
            parameter: dict[str, Any] = self.ssm.get_parameter(Name=name)["Parameter"]
        except ClientError as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise
        return parameter

    def get(self, grant_id: str) -> ledger.Record | None:
        parameter = self._get(self.name(grant_id))
        return None if parameter is None else ledger.decode_json(str(parameter.get("Value", "")))

    def put(self, grant_id: str, expires_at: datetime | None, fields: Mapping[str, Any]) -> None:
        self.ssm.put_parameter(
            Name=self.name(grant_id),
            Value=encode(grant_id, expires_at, fields),
            Type="String",
            Overwrite=True,
            Description="access-connector grant record: revoked at its expiry by the connector",
        )

    # -- the create marker -------------------------------------------------------------------------------
    def start_create(self, grant_id: str, attempt: int, until: float) -> bool:
        """True for the one delivery that may run create-credentials for this grant; False for every other.
        `until`: when Lambda will have stopped the create this delivery is about to invoke."""
        token = uuid.uuid4().hex
        try:
            self.ssm.put_parameter(
                Name=self.name(grant_id) + CREATE_MARKER,
                Value=f"state=started attempt={attempt} until={int(until) + 1} token={token}",
                Type="String",
                Overwrite=False,
                Description="access-connector: create-credentials was started for this grant",
            )
        except ClientError as exc:
            if error_code(exc) != "ParameterAlreadyExists":
                raise
            # botocore may have retried a put whose first answer was lost: then the marker is ours.
            marker = self.marker(grant_id)
            return marker is not None and marker.token == token
        return True

    def marker(self, grant_id: str) -> Marker | None:
        parameter = self._get(self.name(grant_id) + CREATE_MARKER)
        if parameter is None:
            return None
        return _parse_marker(str(parameter.get("Value", "")), parameter.get("LastModifiedDate"))

    def create_answered(self, grant_id: str, attempt: int) -> None:
        """The create's invocation is over: a later delivery may reset straight away."""
        self.ssm.put_parameter(
            Name=self.name(grant_id) + CREATE_MARKER,
            Value=f"state=answered attempt={attempt}",
            Type="String",
            Overwrite=True,
        )

    def undo_create(self, grant_id: str) -> None:
        """The function answered that it made nothing: a later delivery may create after all."""
        self._delete(self.name(grant_id) + CREATE_MARKER)

    def forget(self, grant_id: str) -> None:
        """The marker first, the record last: a crash in between leaves a record the expiry loop acts on."""
        self._delete(self.name(grant_id) + CREATE_MARKER)
        self._delete(self.name(grant_id))

    def _delete(self, name: str) -> None:
        try:
            self.ssm.delete_parameter(Name=name)
        except ClientError as exc:
            if error_code(exc) != "ParameterNotFound":
                raise

    def all(self) -> Iterator[tuple[str, ledger.Record]]:
        """(parameter name, record) of every grant recorded for this integration."""
        paginator = self.ssm.get_paginator("get_parameters_by_path")
        for page in paginator.paginate(Path=self.base, Recursive=False):
            for parameter in page.get("Parameters", []):
                name = str(parameter["Name"])
                if not name.endswith(CREATE_MARKER):
                    yield name, ledger.decode_json(str(parameter.get("Value", "")))
