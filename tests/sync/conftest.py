"""One seeded sandbox for the sync tests (moto state is process-global): 45 member accounts, so every
Organizations List* call needs several pages of 20; clusters in two regions with all three
authentication modes; one account without the member role; one suspended account."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.protobuf import struct_pb2

from connector.integrations.base import InventoryItem, JobContext, Services
from connector.jobs.dispatcher import Dispatcher, JobOutcome
from connector.jobs.registry import build_registry
from connector.sandbox import Sandbox, SeedSpec
from connector.v1 import connector_pb2 as pb
from tests.sandbox_env import sandbox_as_aws

SPEC = SeedSpec(accounts=45, regions=("us-east-1", "eu-west-1"), cluster_accounts=4, account_without_member_role=3)


@pytest.fixture(scope="package")
def sandbox() -> Iterator[Sandbox]:
    with sandbox_as_aws(SPEC) as sb:
        yield sb


def base_settings(sb: Sandbox, **overrides: Any) -> dict[str, Any]:
    info = sb.seed_info
    assert info is not None
    return {
        "integration_name": "sync-tests",
        "management_account_role_arn": info.management_role_arn,
        "member_role_name": info.member_role_name,
        "regions": list(SPEC.regions),
        "sso_region": "us-east-1",
        "max_parallelism": 8,
    } | overrides


@dataclass
class SyncRun:
    outcome: JobOutcome
    items: list[InventoryItem] = field(default_factory=list)
    progress: list[tuple[int, int]] = field(default_factory=list)
    scope_progress: list[tuple[int, int]] = field(default_factory=list)

    def of(self, type_: str) -> list[InventoryItem]:
        return [i for i in self.items if i.type == type_]

    def ids(self, type_: str) -> set[str]:
        return {i.id for i in self.of(type_)}

    def keyed(self) -> set[tuple[str, str]]:
        """Everything but errors, as comparable keys (order-independent)."""
        return {(i.type, i.id) for i in self.items}


_ids = itertools.count(1)


def run_sync(
    sb: Sandbox, settings: dict[str, Any], *, resource_types: tuple[str, ...] = (), account_ids: tuple[str, ...] = ()
) -> SyncRun:
    info = sb.seed_info
    assert info is not None
    s = struct_pb2.Struct()
    s.update(settings)
    job = pb.Job(
        id=f"sync-{next(_ids)}",
        attempt=1,
        integration=pb.Integration(id="org", type="aws_organization", settings=s),
        sync=pb.SyncJob(resource_types=resource_types, account_ids=account_ids),
    )
    run = SyncRun(outcome=JobOutcome("failed"))
    ctx = JobContext(
        job_id=job.id,
        attempt=1,
        connector_id=info.connector_id,
        integration_id="org",
        emit=run.items.append,
        progress=lambda done, total: run.progress.append((done, total)),
        scope_progress=lambda done, total: run.scope_progress.append((done, total)),
    )
    # A fresh dispatcher per run: no credentials or clients cached from an earlier test.
    run.outcome = Dispatcher(build_registry(["aws_organization"]), Services(connector_id=info.connector_id)).execute(
        job, ctx
    )
    return run
