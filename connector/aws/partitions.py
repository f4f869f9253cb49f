"""AWS partitions: which `arn:<partition>:` a region's resources carry (aws, aws-us-gov, aws-cn, aws-iso...).

Nothing may assume `arn:aws:`: a GovCloud or China account's ARNs carry their own partition, and an ARN built
with the wrong one names a resource that does not exist there. botocore's endpoint data knows every
partition and the pattern of its region names, so the partition is looked up there, never guessed.
"""

from __future__ import annotations

import functools
import re

import botocore.session
from botocore.exceptions import UnknownRegionError

# Every partition name botocore knows has this shape (aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b, aws-iso-e...).
PARTITION = r"aws(?:-[a-z]+)*"
ARN_PARTITION = re.compile(rf"^arn:({PARTITION}):")


@functools.cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.lru_cache(maxsize=256)
def partition_of(region: str) -> str:
    """The partition of `region`; ValueError for a region no partition claims (say what to fix)."""
    try:
        return str(_session().get_partition_for_region(region))
    except UnknownRegionError:
        raise ValueError(f"{region!r} is not a region of any AWS partition botocore knows") from None


def partition_of_arn(arn: str) -> str | None:
    m = ARN_PARTITION.match(arn)
    return m.group(1) if m else None


def eks_access_policy_arn(partition: str, name: str) -> str:
    """EKS cluster access policies are AWS-owned resources of the cluster's partition."""
    return f"arn:{partition}:eks::aws:cluster-access-policy/{name}"


def iam_role_arn(partition: str, account_id: str, role_name: str) -> str:
    return f"arn:{partition}:iam::{account_id}:role/{role_name}"


# Where a partition's STS is asked when the connector's own region is in another partition (or unset): its
# first commercial-style region. botocore's endpoint data lists the partition's regions but marks none default.
_PARTITION_HOME = {"aws": "us-east-1", "aws-us-gov": "us-gov-west-1", "aws-cn": "cn-north-1"}


def home_region(partition: str) -> str | None:
    """A region of `partition` to reach its global services (STS, IAM) through, or None if unknown."""
    if partition in _PARTITION_HOME:
        return _PARTITION_HOME[partition]
    for data in _session()._get_internal_component("endpoint_resolver")._endpoint_data["partitions"]:
        if data.get("partition") == partition and data.get("regions"):
            return str(sorted(data["regions"])[0])
    return None


def sts_region(own: str | None, role_arn: str) -> str | None:
    """The region whose STS endpoint assumes `role_arn`: `own`, the connector's region (AWS_REGION; a VPC endpoint for
    STS lives there) when it is in the role's partition, else the partition's home region. Without this a
    connector with no region set, or one in another partition, would ask the commercial global endpoint
    (sts.amazonaws.com), which knows no GovCloud or China role. None: leave it to botocore."""
    partition = partition_of_arn(role_arn)
    if partition is None:
        return None
    if own:
        try:
            if partition_of(own) == partition:
                return str(own)
        except ValueError:
            pass
    return home_region(partition)
