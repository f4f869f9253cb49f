"""Seeding at scale: Organizations pagination over > 20 accounts, and the 1,000-account benchmark seed."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from connector.sandbox import Sandbox, SeedSpec

pytestmark = pytest.mark.timeout(240)


def test_organizations_pages_of_twenty_over_45_accounts() -> None:
    with Sandbox.start(seed=SeedSpec(accounts=45, identity_center=False)) as sb:
        orgs = sb.client("organizations")
        pages = list(orgs.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 20}))
        ids = [a["Id"] for page in pages for a in page["Accounts"]]
        assert len(pages) == 3 and len(ids) == 46 == len(set(ids))
        assert sb.faults.calls("organizations", "ListAccounts") == 3
        with pytest.raises(ClientError) as exc:  # AWS caps Organizations MaxResults at 20; moto would not
            orgs.list_accounts(MaxResults=21)
        assert exc.value.response["Error"]["Code"] == "InvalidInputException"


@pytest.mark.slow
def test_thousand_accounts_seed() -> None:
    spec = SeedSpec(
        accounts=1000,
        regions=("us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2"),
        cluster_accounts=None,
        clusters_per_region=3,
        entries_per_cluster=5,
        modes=("API", "API_AND_CONFIG_MAP"),
        identity_center=False,
    )
    started = time.perf_counter()
    with Sandbox.start(seed=spec) as sb:
        elapsed = time.perf_counter() - started
        info = sb.seed_info
        print(
            f"\nseeded {len(info.accounts)} accounts, {len(info.clusters)} clusters, "
            f"{sum(len(c.access_entries) for c in info.clusters)} access entries in {info.seconds:.2f}s "
            f"(start + seed {elapsed:.2f}s)"
        )
        workloads = [a for a in info.accounts if a.ou_path.startswith("Root/Workloads")]
        assert len(info.clusters) == len(workloads) * 4 * 3
        last = info.clusters[-1]
        eks = sb.account_session(last.account, last.region).client("eks", endpoint_url=sb.endpoint)
        assert len(eks.list_clusters()["clusters"]) == 3
        assert len(eks.list_access_entries(clusterName=last.name)["accessEntries"]) == 5


def test_unseeded_sandbox_is_empty_and_says_so() -> None:
    with Sandbox.start(seed=None) as sb:
        assert not sb.seeded
        with pytest.raises(RuntimeError, match="without a seed"):
            _ = sb.seed_info
        with pytest.raises(ClientError) as exc:  # moto's state was reset: no organisation
            sb.client("organizations").describe_organization()
        assert exc.value.response["Error"]["Code"] == "AWSOrganizationsNotInUseException"
        assert sb.env()["AWS_ACCESS_KEY_ID"] == "AKIASANDBOXROOT00001"
