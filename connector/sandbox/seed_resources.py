"""Seed S3 buckets, SNS topics and SQS queues in the workload accounts, and Resource Explorer's indexes and
organisation view, straight into moto's backends (fast enough for 1,000 accounts).

Each active workload account gets `buckets_per_account` buckets (regions cycled), `topics_per_region` topics
and `queues_per_region` queues in every seeded region, tagged `team` = team-<i mod 3> and `environment`.
With `resource_explorer`, Quick Setup's result: a LOCAL index in every (account, region) of the organisation
but the regions in `resource_explorer_without_index` (where, in seed 001's troubleshooting, an SCP denied
CloudFormation), an AGGREGATOR index in the management account's first region, and an organisation-wide
default view there that includes tags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.sandbox.identity import PARTITION

if TYPE_CHECKING:
    from connector.sandbox.resource_explorer import ResourceExplorer
    from connector.sandbox.seed import AccountInfo, SeedInfo, SeedSpec


def resource_tags(account: Any, i: int) -> dict[str, str]:
    return {"team": f"team-{i % 3}", "environment": account.tags.get("environment", "dev")}


def seed_resources(spec: SeedSpec, workloads: list[AccountInfo]) -> None:
    if not (spec.buckets_per_account or spec.topics_per_region or spec.queues_per_region):
        return
    from moto.s3.models import s3_backends
    from moto.sns.models import sns_backends
    from moto.sqs.models import sqs_backends

    for account in workloads:
        if account.state != "ACTIVE":
            continue
        s3 = s3_backends[account.id][PARTITION]
        for i in range(spec.buckets_per_account):
            name = f"data-{account.id}-{i}"
            s3.create_bucket(name, spec.regions[i % len(spec.regions)])
            s3.put_bucket_tagging(name, resource_tags(account, i))
        for region in spec.regions:
            for i in range(spec.topics_per_region):
                sns_backends[account.id][region].create_topic(f"events-{i}", tags=resource_tags(account, i))
            for i in range(spec.queues_per_region):
                sqs_backends[account.id][region].create_queue(f"jobs-{i}", tags=resource_tags(account, i))


def setup_resource_explorer(spec: SeedSpec, info: SeedInfo, explorer: ResourceExplorer) -> str | None:
    accounts = [a.id for a in info.accounts if a.state == "ACTIVE"]
    without = {
        (a, r) for a in accounts for r in spec.resource_explorer_without_index if a != info.management_account_id
    }
    return explorer.setup_organization(
        info.management_account_id, spec.regions[0], accounts, list(spec.regions), without_index=without
    )
