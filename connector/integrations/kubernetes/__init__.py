"""The kubernetes integration type: a cluster reached by `connection` (connection.py), its RBAC inventory
(inventory.py), and what RBAC really gives (rbac_effect.py, shared with eks_aws_auth). Grants are the
kubernetes_rbac kind's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.errors import InvalidSettings
from connector.integrations.base import Services
from connector.integrations.capabilities import Integration, IntegrationSpec
from connector.integrations.kubernetes.connection import ClusterConnection, ClusterSettings
from connector.integrations.kubernetes.inventory import RESOURCE_TYPES, KubernetesSync


class KubernetesIntegration(Integration):
    type_id = "kubernetes"
    default_resource_type = "kubernetes_rbac"

    def __init__(self, integration_id: str, settings: Mapping[str, Any], services: Services) -> None:
        super().__init__(integration_id, settings, services)
        self.connection = ClusterConnection(ClusterSettings.parse(settings), services)
        allowed = settings.get("allowed_roles")
        if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(r, str) for r in allowed)):
            raise InvalidSettings("allowed_roles", "must be a list of role names (or absent to allow any role)")
        # Settings may only narrow what the customer's policy allows: this list restricts, never widens.
        self.allowed_roles: frozenset[str] | None = None if allowed is None else frozenset(allowed)


INTEGRATION = IntegrationSpec(KubernetesIntegration, syncer=KubernetesSync)

__all__ = ["INTEGRATION", "RESOURCE_TYPES", "ClusterConnection", "ClusterSettings", "KubernetesIntegration"]
