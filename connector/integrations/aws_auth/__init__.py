"""The eks_aws_auth integration type: the legacy aws-auth ConfigMap of a CONFIG_MAP-mode EKS cluster, reached
by the same `connection` settings as the kubernetes integration; its one kind maps an IAM role to Kubernetes
groups (provisioner.py)."""

from connector.integrations.aws_auth.integration import RESOURCE_TYPE, AwsAuthIntegration
from connector.integrations.aws_auth.provisioner import AwsAuthMappings
from connector.integrations.capabilities import IntegrationSpec, KindSpec

INTEGRATION = IntegrationSpec(AwsAuthIntegration)
KIND = KindSpec(AwsAuthIntegration.type_id, RESOURCE_TYPE, AwsAuthMappings)

__all__ = ["INTEGRATION", "KIND", "RESOURCE_TYPE", "AwsAuthIntegration", "AwsAuthMappings"]
