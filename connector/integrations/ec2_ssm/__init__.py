"""Just-in-time EC2 access through AWS Systems Manager Session Manager (integration type aws_organization,
resource type ec2_ssm_session): target.py validates, policy.py builds the inline policy and the connect
commands, roles.py writes the record and the policy and ends sessions on revoke, provisioner.py describes the
Effect, scans for expiry and reports drift."""

from connector.integrations.capabilities import KindSpec
from connector.integrations.ec2_ssm.provisioner import Ec2SsmAccess
from connector.integrations.ec2_ssm.target import RESOURCE_TYPE

KIND = KindSpec("aws_organization", RESOURCE_TYPE, Ec2SsmAccess)

__all__ = ["KIND", "RESOURCE_TYPE", "Ec2SsmAccess"]
