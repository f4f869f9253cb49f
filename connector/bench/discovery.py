"""Benchmark: S3 / SNS / SQS discovery of an organisation with and without Resource Explorer.

sandbox process (seeded org with buckets, topics and queues in every workload account and region, Resource
Explorer set up by "Quick Setup"; per-call latency; Resource Explorer's quotas as rate limits: Search 5/s,
its other calls 3/s, per account, region and operation) <- botocore over HTTP <- this process running the
organisation sync (`aws_organization`, resource types s3_bucket, sns_topic, sqs_queue) through the Dispatcher.

Three runs of the same organisation: `resource_explorer: off` (the service APIs in every account and region),
`auto` cold (a fresh process: the index coverage is read with ListIndexesForMembers), and `auto` warm (the same
process again: coverage cached for an hour). Each reports wall time, AWS calls by operation, the inventory
items (which must be the same in all three) and the machine's load average.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2

from connector.bench.procs import BenchError, SandboxProcess
from connector.integrations.base import InventoryItem, JobContext, Services
from connector.jobs.dispatcher import Dispatcher
from connector.jobs.registry import build_registry
from connector.v1 import connector_pb2 as pb

TYPES = ("s3_bucket", "sns_topic", "sqs_queue")


@dataclass(frozen=True)
class DiscoverySize:
    accounts: int
    regions: tuple[str, ...]
    buckets_per_account: int = 2
    topics_per_region: int = 2
    queues_per_region: int = 1
    latency: float = 0.040
    max_parallelism: int = 64

    def seed(self) -> dict[str, Any]:
        return {
            "accounts": self.accounts,
            "regions": list(self.regions),
            "cluster_accounts": 0,
            "account_without_member_role": None,
            "identity_center": False,
            "buckets_per_account": self.buckets_per_account,
            "topics_per_region": self.topics_per_region,
            "queues_per_region": self.queues_per_region,
            "resource_explorer": True,
        }


REGIONS = ("us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2")
SIZES = {
    "smoke": DiscoverySize(accounts=6, regions=REGIONS[:2], latency=0.005, max_parallelism=8),
    "medium": DiscoverySize(accounts=100, regions=REGIONS),
    "full": DiscoverySize(accounts=1000, regions=REGIONS),
}


def _sync(
    services: Services, settings: dict[str, Any], job_id: str
) -> tuple[float, dict[str, Any], set[tuple[str, str]]]:
    s = struct_pb2.Struct()
    s.update(settings)
    job = pb.Job(
        id=job_id,
        attempt=1,
        integration=pb.Integration(id="org-bench", type="aws_organization", settings=s),
        sync=pb.SyncJob(resource_types=TYPES),
    )
    items: list[InventoryItem] = []
    ctx = JobContext(
        job_id=job_id, attempt=1, connector_id=services.connector_id, integration_id="org-bench", emit=items.append
    )
    started = time.perf_counter()
    outcome = Dispatcher(build_registry(["aws_organization"]), services).execute(job, ctx)
    wall = time.perf_counter() - started
    if outcome.outcome != "succeeded":
        raise BenchError(f"the discovery sync failed: {outcome.error}")
    return wall, outcome.result, {(i.type, i.id) for i in items if i.type != "error"}


def run(size_name: str, workdir: Path) -> dict[str, Any]:
    names = ["medium", "full"] if size_name == "full" else [size_name]
    return {"size": size_name, "runs": [run_size(SIZES[n], n, workdir / n) for n in names]}


def run_size(size: DiscoverySize, name: str, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    sandbox = SandboxProcess.start(size.seed(), workdir / "sandbox.log")
    saved = {k: os.environ.get(k) for k in sandbox.env}
    try:
        os.environ.update(sandbox.env)
        sandbox.add_fault(kind="latency", seconds=size.latency)
        sandbox.add_fault(kind="rate_limit", service="resource-explorer-2", operation="Search", rate=5, burst=5)
        for op in ("ListIndexesForMembers", "ListIndexes", "ListViews", "GetView", "GetIndex", "GetDefaultView"):
            sandbox.add_fault(kind="rate_limit", service="resource-explorer-2", operation=op, rate=3, burst=3)
        seed = sandbox.seed
        settings = {
            "management_account_role_arn": seed["management_role_arn"],
            "member_role_name": seed["member_role_name"],
            "external_id": seed["external_id"],
            "regions": list(size.regions),
            "max_parallelism": size.max_parallelism,
            # the seed's management account has no member role (StackSets skip it)
            "excluded_account_ids": ["123456789012"],
        }
        out: dict[str, Any] = {"name": name, "organisation": size.seed(), "latency_ms": size.latency * 1000}
        inventories = {}
        warm_services = Services(connector_id="bench-connector")
        for label, mode, services in (
            ("service_apis", "off", Services(connector_id="bench-connector")),
            ("resource_explorer_cold", "auto", warm_services),
            ("resource_explorer_warm", "auto", warm_services),
        ):
            sandbox.reset()
            wall, result, inventory = _sync(services, settings | {"resource_explorer": mode}, f"discovery-{label}")
            counts = sandbox.counts()
            inventories[label] = inventory
            out[label] = {
                "wall_seconds": round(wall, 2),
                "aws_calls": sum(counts["by_operation"].values()),
                "calls_throttled": sum(counts["faulted"].values()) if counts.get("faulted") else 0,
                "calls_by_operation": dict(sorted(counts["by_operation"].items())),
                "items": len(inventory),
                "resource_explorer": result.get("resource_explorer", {}),
            }
        out["same_inventory"] = len({frozenset(v) for v in inventories.values()}) == 1
        out["load_average"] = {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        }
        return out
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sandbox.stop()
