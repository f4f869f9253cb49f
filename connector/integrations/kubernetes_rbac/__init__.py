"""Just-in-time Kubernetes RBAC (integration type kubernetes, resource type kubernetes_rbac): target.py
validates and plans the bindings, bindings.py creates, finds and deletes them, provisioner.py describes the
Effect from the role's real rules and scans the cluster for expired bindings."""

from connector.integrations.capabilities import KindSpec
from connector.integrations.kubernetes_rbac.provisioner import RbacBindings
from connector.integrations.kubernetes_rbac.target import RESOURCE_TYPE

KIND = KindSpec("kubernetes", RESOURCE_TYPE, RbacBindings)

__all__ = ["KIND", "RESOURCE_TYPE", "RbacBindings"]
