"""Shared fixtures for the JIT tests: one seeded sandbox per test module (moto state is process-global),
the connector identity from the sandbox's env, and a Dispatcher running the real aws_organization
integration on real proto Jobs."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import struct_pb2

from connector.integrations.base import JobContext, Services
from connector.jobs.dispatcher import Dispatcher, JobOutcome
from connector.jobs.registry import build_registry
from connector.sandbox.seed import SeedSpec
from connector.sandbox.server import Sandbox
from connector.v1 import connector_pb2 as pb
from tests.sandbox_env import sandbox_as_aws

# Three workload accounts with one cluster each in us-east-1: modes API, API_AND_CONFIG_MAP, CONFIG_MAP.
SPEC = SeedSpec(accounts=6, regions=("us-east-1",), cluster_accounts=3, account_without_member_role=None, users=3)
MUTATING_PREFIXES = ("Create", "Delete", "Put", "Tag", "Untag", "Associate", "Disassociate", "Update", "Attach")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with sandbox_as_aws(SPEC) as sb:
        yield sb


def settings(sb: Sandbox) -> dict[str, Any]:
    info = sb.seed_info
    assert info is not None
    return {
        "integration_name": "jit-tests",
        "region": "us-east-1",
        "sso_region": "us-east-1",
        "management_account_role_arn": info.management_role_arn,
        "member_role_name": info.member_role_name,
        "regions": ["us-east-1"],
    }


def dispatcher(sb: Sandbox, guardrails: Any = None) -> Dispatcher:
    info = sb.seed_info
    assert info is not None
    return Dispatcher(
        build_registry(["aws_organization"]), Services(connector_id=info.connector_id, guardrails=guardrails)
    )


_ids = itertools.count(1)
DEFAULT_EXPIRY: Any = object()  # the same for every job of a run, so a re-delivery is identical
GRANTS_EXPIRE_AT = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=4)


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def job(
    sb: Sandbox,
    kind: str,
    grant_id: str,
    principal: str,
    target: dict[str, Any],
    *,
    expires_at: datetime | None = DEFAULT_EXPIRY,
    dry_run: bool = False,
) -> pb.Job:
    """A job for the real aws_organization integration. Grants expire at GRANTS_EXPIRE_AT unless told otherwise
    (without a guardrail file the default policy refuses grants that never expire); pass expires_at=None for
    one that never does."""
    j = pb.Job(
        id=f"job-{next(_ids)}",
        attempt=1,
        integration=pb.Integration(id="int-aws", type="aws_organization", settings=_struct(settings(sb))),
    )
    if kind == "grant":
        j.grant.CopyFrom(pb.GrantJob(grant_id=grant_id, principal=principal, target=_struct(target), dry_run=dry_run))
        when = GRANTS_EXPIRE_AT if expires_at is DEFAULT_EXPIRY else expires_at
        if when is not None:
            j.grant.expires_at.FromDatetime(when.astimezone(UTC).replace(tzinfo=None))
    else:
        j.revoke.CopyFrom(pb.RevokeJob(grant_id=grant_id, principal=principal, target=_struct(target), dry_run=dry_run))
    return j


def run(d: Dispatcher, j: pb.Job) -> JobOutcome:
    ctx = JobContext(job_id=j.id, attempt=j.attempt, connector_id="sandbox-connector-0001", integration_id="int-aws")
    return d.execute(j, ctx)


def ok(out: JobOutcome) -> dict[str, Any]:
    assert out.outcome == "succeeded", out.error
    return out.result


def mutating_calls(sb: Sandbox) -> dict[str, int]:
    counts = sb.faults.counts()["by_operation"]
    return {
        op: n
        for op, n in counts.items()
        if op.split(":", 1)[1].startswith(MUTATING_PREFIXES)
        # sts:AssumeRole is no change to the target. The sandbox names S3 calls by path and method only
        # (GetBucketEncryption, GET /bucket?encryption, is counted as s3:CreateSession); the connector
        # makes no S3 write, and the S3 state is asserted directly instead.
        and not op.startswith(("sts:", "s3:"))
    }


def admin(sb: Sandbox, service: str, account: str, region: str = "us-east-1") -> Any:
    """An admin client acting in `account` (moto's x-moto-account-id header), for set-up and assertions."""
    client = sb.client(service, region)

    def header(params: dict[str, Any], **_: Any) -> None:
        params["headers"]["x-moto-account-id"] = account

    client.meta.events.register("before-call.*.*", header)
    return client
