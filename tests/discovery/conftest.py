"""One seeded sandbox for the S3 / SNS / SQS discovery, Resource Explorer and doctor tests: workload accounts
with buckets, topics and queues in two regions, Resource Explorer set up for the organisation (aggregator and
organisation view in the management account, us-east-1)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from connector.sandbox import Sandbox, SeedSpec
from tests.sandbox_env import sandbox_as_aws
from tests.sync.conftest import SyncRun
from tests.sync.conftest import run_sync as _run_sync

SPEC = SeedSpec(
    accounts=8,
    regions=("us-east-1", "eu-west-1"),
    cluster_accounts=0,
    account_without_member_role=None,
    identity_center=False,
    buckets_per_account=2,
    topics_per_region=2,
    queues_per_region=1,
    resource_explorer=True,
)
STORAGE = ("s3_bucket", "sns_topic", "sqs_queue")


@pytest.fixture(scope="package")
def sandbox() -> Iterator[Sandbox]:
    with sandbox_as_aws(SPEC) as sb:
        yield sb


def settings(sb: Sandbox, **overrides: Any) -> dict[str, Any]:
    info = sb.seed_info
    return {
        "integration_name": "discovery-tests",
        "management_account_role_arn": info.management_role_arn,
        "member_role_name": info.member_role_name,
        "regions": list(SPEC.regions),
        "max_parallelism": 4,
        # The seed's management account has no member role (StackSets skip it): leave it out, as docs say.
        "excluded_account_ids": [info.management_account_id],
    } | overrides


_ids = itertools.count(1)


def run_sync(sb: Sandbox, resource_types: tuple[str, ...] = STORAGE, **overrides: Any) -> SyncRun:
    return _run_sync(sb, settings(sb, **overrides), resource_types=resource_types)


def calls(sb: Sandbox) -> dict[str, int]:
    return dict(sb.faults.counts()["by_operation"])


def workloads(sb: Sandbox) -> list[str]:
    return [a.id for a in sb.seed_info.accounts if a.ou_path.startswith("Root/Workloads") and a.state == "ACTIVE"]
