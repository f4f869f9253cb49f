"""Shared helpers for tests/k8s: objects to seed, a job context that records inventory, integrations."""

from __future__ import annotations

from typing import Any

from connector.integrations.base import InventoryItem, JobContext, Services

RBAC = "rbac.authorization.k8s.io/v1"


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def cluster_role(name: str, labels: dict[str, str] | None = None, aggregate: bool = False) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": RBAC,
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels or {}},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    }
    if aggregate:
        obj["aggregationRule"] = {
            "clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-" + name: "true"}}]
        }
    return obj


def role(namespace_: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace_},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
    }


def role_binding(namespace_: str, name: str, role_name: str, user: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace_, **meta},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}],
    }


class RecordingContext(JobContext):
    def __init__(self, job_id: str = "job-1") -> None:
        super().__init__(job_id=job_id, attempt=1, connector_id="c-1", integration_id="k8s-int")
        self.items: list[InventoryItem] = []
        self.emit = self.items.append


def services() -> Services:
    return Services(connector_id="c-1")
