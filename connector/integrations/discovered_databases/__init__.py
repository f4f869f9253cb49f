"""Databases found by tags in an AWS Organization, seen through the database engine layer: the organisation
sync's Syncer with the engine's inventory plugged in (contents.py), and the `rds_database` kind that grants
a database user on one of them (provisioner.py).

It builds on both integration types, aws_organization (discovery, credentials) and databases (engines), which
stay independent of each other; the registry names this spec instead of aws_organization's own.
"""

from connector.integrations.aws_organization import AwsOrganizationIntegration, OrgSync
from connector.integrations.capabilities import IntegrationSpec, KindSpec
from connector.integrations.discovered_databases.contents import DatabaseContents, settings_of
from connector.integrations.discovered_databases.provisioner import RESOURCE_TYPE, DiscoveredDatabaseGrants


class DiscoveringOrgSync(OrgSync):
    """The organisation sync that also lists what is inside each managed database it finds."""

    def __init__(self, integration: AwsOrganizationIntegration) -> None:
        super().__init__(integration)
        self.database_contents = DatabaseContents(integration)


INTEGRATION = IntegrationSpec(AwsOrganizationIntegration, syncer=DiscoveringOrgSync)
KIND = KindSpec("aws_organization", RESOURCE_TYPE, DiscoveredDatabaseGrants)

__all__ = [
    "INTEGRATION",
    "KIND",
    "RESOURCE_TYPE",
    "DatabaseContents",
    "DiscoveredDatabaseGrants",
    "DiscoveringOrgSync",
    "settings_of",
]
