"""The eks_aws_auth integration: settings and the cluster connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.errors import InvalidSettings
from connector.integrations.base import Services
from connector.integrations.capabilities import Integration
from connector.integrations.kubernetes.connection import ClusterConnection, ClusterSettings

RESOURCE_TYPE = "aws_auth_mapping"


class AwsAuthIntegration(Integration):
    type_id = "eks_aws_auth"
    default_resource_type = RESOURCE_TYPE

    def __init__(self, integration_id: str, settings: Mapping[str, Any], services: Services) -> None:
        super().__init__(integration_id, settings, services)
        self.connection = ClusterConnection(ClusterSettings.parse(settings), services)
        allow = settings.get("allow_system_groups", False)
        if allow is not False:
            # Settings arrive with the job: they may never loosen the customer's own policy.
            raise InvalidSettings(
                "allow_system_groups",
                "is no longer a setting: Kubernetes system groups are judged by the connector's guardrail file "
                "(system:masters is cluster-admin level: allow_cluster_admin); remove it from the settings",
            )
