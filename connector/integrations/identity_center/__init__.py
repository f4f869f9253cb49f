"""Just-in-time IAM Identity Center access (integration type aws_organization, resource type
identity_center_assignment): assignments.py makes and removes account assignments and their records on the
permission set, permission_sets.py works out what a set really gives, provisioner.py ties them together."""

from connector.integrations.capabilities import KindSpec
from connector.integrations.identity_center.provisioner import RESOURCE_TYPE, IdentityCenterAccess

KIND = KindSpec("aws_organization", RESOURCE_TYPE, IdentityCenterAccess)

__all__ = ["KIND", "RESOURCE_TYPE", "IdentityCenterAccess"]
