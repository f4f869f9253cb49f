"""Just-in-time access to AWS resources through an inline role policy (integration type aws_organization,
resource type iam_resource_access): target.py validates, tag_selection.py resolves resources named by tag to
ARNs, policy.py builds the document within IAM's limits, roles.py writes the record and the policy,
provisioner.py describes the Effect, scans for expiry and reads the grant's CloudTrail activity (audit)."""

from connector.integrations.capabilities import KindSpec
from connector.integrations.iam_access.provisioner import RESOURCE_TYPE, IamAccess

KIND = KindSpec("aws_organization", RESOURCE_TYPE, IamAccess)

__all__ = ["KIND", "RESOURCE_TYPE", "IamAccess"]
