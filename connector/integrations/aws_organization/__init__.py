"""The AWS Organization integration type: settings and credentials (integration.py), and its Syncer, the
organisation sync (sync.py). The grant kinds that run under it are their own packages."""

from connector.integrations.aws_organization.integration import AwsOrganizationIntegration
from connector.integrations.aws_organization.sync import OrgSync
from connector.integrations.capabilities import IntegrationSpec

INTEGRATION = IntegrationSpec(AwsOrganizationIntegration, syncer=OrgSync)

__all__ = ["INTEGRATION", "AwsOrganizationIntegration", "OrgSync"]
