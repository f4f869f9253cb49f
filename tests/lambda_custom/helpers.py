"""Shared set-up for the Lambda custom tests: one sandbox per test module (moto state is process-global) that this
process's AWS SDK uses as the connector identity, the customer's functions created in it, and ways to run the
kind directly or through the Dispatcher on real proto Jobs. Functions answer through registered Python
handlers (CredentialsFunction, or a small handler), over HTTP, as AWS does."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from google.protobuf import struct_pb2

from connector.integrations.base import GrantRequest, JobContext, Services
from connector.integrations.lambda_custom import LambdaCustomIntegration, LambdaGrants
from connector.integrations.lambda_custom.records import GrantRecords
from connector.jobs.dispatcher import Dispatcher, JobOutcome
from connector.jobs.registry import build_registry
from connector.sandbox import Sandbox
from connector.v1 import connector_pb2 as pb
from tests.sandbox_env import sandbox_as_aws

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # the sandbox admin's account (unseeded: the connector acts as it)
CONNECTOR_ID = "c-1"
INTEGRATION_ID = "lambda-1"
EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18
TARGET = {"resources": ["resource1", "resource2"], "permission": "reader"}
CUSTOM = {"param1": "a", "param2": "b"}
TAG = {"apono-connector-access": "true"}
# name -> (Timeout seconds, tags)
FUNCTIONS = {
    "access-fn": (3, TAG),
    "quick-fn": (2, TAG),  # a short Timeout: Lambda's "Task timed out" comes fast
    "long-fn": (30, TAG),  # long enough for a gate to hold a create-credentials in flight
    "other-fn": (3, {"team": "x"}),  # not tagged: never invoked
}


def start_sandbox() -> Iterator[Sandbox]:
    with sandbox_as_aws(None) as sb:
        iam = sb.client("iam", REGION)
        trust = {"Version": "2012-10-17", "Statement": []}
        role = iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        lam = sb.client("lambda", REGION)
        for name, (timeout, tags) in FUNCTIONS.items():
            lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role,
                Handler="h.h",
                Code={"ZipFile": EMPTY_ZIP},
                Timeout=timeout,
                Tags=tags,
            )
        yield sb


def fresh(sb: Sandbox) -> Iterator[Sandbox]:
    """Per test: no handlers, no recorded invocations, no faults, counters at zero."""
    sb.lambdas.clear_invocations()
    sb.faults.clear()
    sb.faults.reset_counts()
    yield sb
    for name in FUNCTIONS:
        sb.lambdas.unregister(name)
    sb.faults.clear()


def settings(function: str = "access-fn", **extra: Any) -> dict[str, Any]:
    return {"function_name": function, "region": REGION, "custom_parameters": dict(CUSTOM), **extra}


def integration(
    function: str = "access-fn", *, integration_id: str = INTEGRATION_ID, **extra: Any
) -> LambdaCustomIntegration:
    return LambdaCustomIntegration(integration_id, settings(function, **extra), Services(connector_id=CONNECTOR_ID))


def kind_of(integration: LambdaCustomIntegration) -> LambdaGrants:
    kind = build_registry(["lambda_custom"]).provisioner(integration, "lambda_custom")
    assert isinstance(kind, LambdaGrants)
    return kind


class Ctx(JobContext):
    def __init__(self, attempt: int = 1, deadline: float | None = None) -> None:
        super().__init__(
            job_id="j", attempt=attempt, connector_id=CONNECTOR_ID, integration_id=INTEGRATION_ID, deadline=deadline
        )
        self.items: list[Any] = []
        self.emit = self.items.append


def grant(kind: LambdaGrants, request: GrantRequest, ctx: JobContext | None = None) -> dict[str, Any]:
    """describe + grant, as the dispatcher does (without the guardrails)."""
    ctx = ctx or Ctx()
    return kind.grant(request, kind.describe(request, ctx), ctx)


def records(sb: Sandbox, integration_id: str = INTEGRATION_ID) -> GrantRecords:
    return GrantRecords(sb.client("ssm", REGION), CONNECTOR_ID, integration_id)


def parameter(sb: Sandbox, name: str) -> str | None:
    try:
        return str(sb.client("ssm", REGION).get_parameter(Name=name)["Parameter"]["Value"])
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ParameterNotFound"
        return None


def events(sb: Sandbox, function: str = "access-fn") -> list[str | None]:
    return [i.event_type for i in sb.lambdas.invocations(function)]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- through the Dispatcher, on real proto Jobs ------------------------------------------------------------
_ids = itertools.count(1)
EXPIRES = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)  # within the default 12 h


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def grant_job(
    grant_id: str,
    principal: str,
    target: dict[str, Any],
    *,
    attempt: int = 1,
    public_key: bytes = b"",
    function: str = "access-fn",
    expires_at: datetime | None = EXPIRES,
    integration_id: str = INTEGRATION_ID,
) -> pb.Job:
    j = pb.Job(
        id=f"job-{next(_ids)}",
        attempt=attempt,
        integration=pb.Integration(id=integration_id, type="lambda_custom", settings=struct(settings(function))),
    )
    j.grant.CopyFrom(
        pb.GrantJob(grant_id=grant_id, principal=principal, target=struct(target), requester_public_key=public_key)
    )
    if expires_at is not None:
        j.grant.expires_at.FromDatetime(expires_at.astimezone(UTC).replace(tzinfo=None))
    return j


def revoke_job(grant_id: str, principal: str, target: dict[str, Any], function: str = "access-fn") -> pb.Job:
    j = pb.Job(
        id=f"job-{next(_ids)}",
        attempt=1,
        integration=pb.Integration(id=INTEGRATION_ID, type="lambda_custom", settings=struct(settings(function))),
    )
    j.revoke.CopyFrom(pb.RevokeJob(grant_id=grant_id, principal=principal, target=struct(target)))
    return j


def dispatcher() -> Dispatcher:
    return Dispatcher(build_registry(["lambda_custom"]), Services(connector_id=CONNECTOR_ID))


def run(d: Dispatcher, job: pb.Job, deadline: float | None = None) -> JobOutcome:
    ctx = JobContext(
        job_id=job.id,
        attempt=job.attempt,
        connector_id=CONNECTOR_ID,
        integration_id=INTEGRATION_ID,
        deadline=deadline,
    )
    return d.execute(job, ctx)


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    thread.start()
    return thread, box
