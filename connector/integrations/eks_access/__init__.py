"""Just-in-time EKS access through access entries (integration type aws_organization, resource type
eks_cluster): target.py validates the job's target, entries.py makes and removes the entry, its tags and
associations, provisioner.py describes the Effect and scans for expired records."""

from connector.integrations.capabilities import KindSpec
from connector.integrations.eks_access.provisioner import RESOURCE_TYPE, EksAccess

KIND = KindSpec("aws_organization", RESOURCE_TYPE, EksAccess)

__all__ = ["KIND", "RESOURCE_TYPE", "EksAccess"]
