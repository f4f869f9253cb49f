"""The sandbox in GovCloud: its EKS knows access policies only by the partition's ARNs (as AWS does), so a
connector that built `arn:aws:` there would fail the demo's grant; and SeedSpec keeps regions in the partition."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from connector.sandbox import Sandbox, SeedSpec
from tests.sandbox_env import in_account, sandbox_as_aws

SPEC = SeedSpec(accounts=5, cluster_accounts=1, identity_center=False, partition="aws-us-gov")


@pytest.fixture(scope="module")
def gov() -> Iterator[Sandbox]:
    with sandbox_as_aws(SPEC) as sb:
        yield sb


def test_seed_follows_the_partition(gov: Sandbox) -> None:
    info = gov.seed_info
    assert SPEC.regions == ("us-gov-west-1", "us-gov-east-1") and info.home_region == "us-gov-west-1"
    assert info.management_role_arn.startswith("arn:aws-us-gov:iam::")
    assert all(c.arn.startswith("arn:aws-us-gov:eks:us-gov-") for c in info.clusters)
    with pytest.raises(ValueError, match="not in partition aws-us-gov"):
        SeedSpec(partition="aws-us-gov", regions=("us-east-1",))


def test_access_policies_only_in_the_clusters_partition(gov: Sandbox) -> None:
    cluster = next(c for c in gov.seed_info.clusters if c.mode != "CONFIG_MAP")
    eks = in_account(gov, "eks", cluster.account, cluster.region)
    principal = f"arn:aws-us-gov:iam::{cluster.account}:role/partition-check"
    eks.create_access_entry(clusterName=cluster.name, principalArn=principal)
    scope = {"type": "cluster"}
    with pytest.raises(ClientError, match="policyArn is invalid"):
        eks.associate_access_policy(
            clusterName=cluster.name,
            principalArn=principal,
            policyArn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy",
            accessScope=scope,
        )
    eks.associate_access_policy(
        clusterName=cluster.name,
        principalArn=principal,
        policyArn="arn:aws-us-gov:eks::aws:cluster-access-policy/AmazonEKSViewPolicy",
        accessScope=scope,
    )
