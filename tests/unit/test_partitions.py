"""No ARN assumes `arn:aws:`: EKS policy ARNs follow the cluster's region, member roles the organisation, and
targets naming ARNs of another partition are refused before any call."""

from __future__ import annotations

from typing import Any

import pytest

from connector.aws.partitions import eks_access_policy_arn, partition_of, partition_of_arn
from connector.aws.sessions import AwsSessions
from connector.errors import InvalidJob
from connector.integrations.aws_organization import AwsOrganizationIntegration
from connector.integrations.base import GrantRequest, JobContext, Services
from connector.integrations.eks_access.target import parse_target, validate_principal
from connector.jobs.registry import build_registry

ACCOUNT = "111122223333"
GOV_ROLE = "arn:aws-us-gov:iam::123456789012:role/ConnectorManagementRole"
CTX = JobContext(job_id="j", attempt=1, connector_id="c", integration_id="i")


def _eks(region: str, **extra: Any) -> dict[str, Any]:
    return {
        "resource_type": "eks_cluster",
        "account_id": ACCOUNT,
        "region": region,
        "cluster": "prod",
        "access_policies": ["AmazonEKSViewPolicy", "AmazonEKSEditPolicy"],
        "scope": "cluster",
    } | extra


class NoStsSessions(AwsSessions):
    """The real AwsSessions, except that credentials are never fetched: what is assumed is all a test sees."""

    def credentials_of(self, session_key: str) -> Any:
        return None

    def assumed(self) -> list[str]:
        return [role for role, _, _ in self._credentials]


def _integration(settings: dict[str, Any]) -> AwsOrganizationIntegration:
    services = Services(connector_id="conn-1", aws=NoStsSessions("conn-1"))
    return AwsOrganizationIntegration("int-1", settings, services)


@pytest.mark.parametrize(
    ("region", "partition"), [("us-gov-west-1", "aws-us-gov"), ("cn-north-1", "aws-cn"), ("eu-west-1", "aws")]
)
def test_eks_policy_arns_are_in_the_regions_partition(region, partition):
    assert partition_of(region) == partition
    target = parse_target(_eks(region))
    assert target.policy_arns == {
        "AmazonEKSViewPolicy": f"arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSViewPolicy",
        "AmazonEKSEditPolicy": f"arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSEditPolicy",
    }
    given = parse_target(_eks(region, access_policies=[eks_access_policy_arn(partition, "AmazonEKSViewPolicy")]))
    assert given.policy_names == ("AmazonEKSViewPolicy",)


@pytest.mark.parametrize(
    ("region", "policy"),
    [
        ("us-gov-west-1", "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"),
        ("cn-north-1", "arn:aws-us-gov:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"),
        ("eu-west-1", "arn:aws-cn:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"),
    ],
)
def test_eks_policy_arn_of_another_partition_is_refused(region, policy):
    with pytest.raises(InvalidJob, match=r"access_policies.*partition"):
        parse_target(_eks(region, access_policies=[policy]))


def test_eks_principal_of_another_partition_is_refused():
    assert validate_principal(f"arn:aws-cn:iam::{ACCOUNT}:role/dev", "aws-cn")
    with pytest.raises(InvalidJob, match="partition aws,"):
        validate_principal(f"arn:aws:iam::{ACCOUNT}:role/dev", "aws-us-gov")


def test_member_role_of_a_govcloud_organisation_is_in_govcloud():
    integration = _integration({"management_account_role_arn": GOV_ROLE, "region": "us-gov-west-1"})
    assert integration.partition == "aws-us-gov"
    expected = f"arn:aws-us-gov:iam::{ACCOUNT}:role/ConnectorMemberRole"
    assert integration.member_role_arn(ACCOUNT) == expected
    integration.member(ACCOUNT)  # what the credentials code is really asked to assume
    assert set(integration.aws.assumed()) == {GOV_ROLE, expected}
    china = _integration({"region": "cn-north-1", "member_role_name": "Member"})
    assert china.member_role_arn(ACCOUNT) == f"arn:aws-cn:iam::{ACCOUNT}:role/Member"


def test_eks_grant_in_another_partition_than_the_organisation_is_refused():
    kind = build_registry().provisioner(_integration({"region": "us-east-1"}), "eks_cluster")
    request = GrantRequest("g", f"arn:aws-us-gov:iam::{ACCOUNT}:role/dev", _eks("us-gov-west-1"))
    with pytest.raises(InvalidJob, match="organisation"):
        kind.describe(request, CTX)
    gov = build_registry().provisioner(
        _integration({"management_account_role_arn": GOV_ROLE, "region": "us-gov-west-1"}), "eks_cluster"
    )
    effect = gov.describe(request, CTX)
    assert effect.region == "us-gov-west-1" and effect.access_policies == ("AmazonEKSViewPolicy", "AmazonEKSEditPolicy")


@pytest.mark.parametrize(
    "change",
    [
        {"resources": ["arn:aws:s3:::team-a-bucket"]},
        {"resources": [f"arn:aws-us-gov:sqs:us-gov-west-1:{ACCOUNT}:q", "arn:aws-cn:s3:::b"]},
        {"role": f"arn:aws:iam::{ACCOUNT}:role/app"},
    ],
)
def test_iam_target_with_arns_of_another_partition_is_refused(change):
    integration = _integration({"management_account_role_arn": GOV_ROLE, "region": "us-gov-west-1"})
    kind = build_registry().provisioner(integration, "iam_resource_access")
    target = {
        "resource_type": "iam_resource_access",
        "account_id": ACCOUNT,
        "role": "app",
        "resources": ["arn:aws-us-gov:s3:::team-a-bucket"],
    }
    effect = kind.describe(GrantRequest("g", "alice", target), CTX)
    assert effect.principal == f"arn:aws-us-gov:iam::{ACCOUNT}:role/app"
    assert partition_of_arn(effect.resources[0]) == "aws-us-gov"
    with pytest.raises(InvalidJob, match="partition"):
        kind.describe(GrantRequest("g", "alice", target | change), CTX)
    assert integration.aws.assumed() == []  # refused before any credentials were asked for
