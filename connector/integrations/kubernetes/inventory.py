"""The kubernetes integration's Syncer: namespaces, cluster roles, roles, and bindings to people and groups."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from connector.errors import InvalidJob
from connector.integrations.base import InventoryItem, JobContext, SyncRequest
from connector.k8s import names
from connector.k8s.client import KubeApi

RESOURCE_TYPES = ("k8s.namespace", "k8s.clusterrole", "k8s.role", "k8s.binding")


class KubernetesSync:
    def __init__(self, integration: Any) -> None:
        self.connection = integration.connection

    def sync(self, request: SyncRequest, ctx: JobContext) -> dict[str, Any]:
        api = self.connection.api()
        wanted = set(request.resource_types) or set(RESOURCE_TYPES)
        unknown = wanted - set(RESOURCE_TYPES)
        if unknown:
            raise InvalidJob(f"sync.resource_types {sorted(unknown)} unknown; choose from {list(RESOURCE_TYPES)}")
        counts = dict.fromkeys(sorted(wanted), 0)
        for item in self._inventory(api, wanted, ctx):
            ctx.emit(item)
            counts[item.type] += 1
        return {"items": counts}

    def _inventory(self, api: KubeApi, wanted: set[str], ctx: JobContext) -> Iterator[InventoryItem]:
        if "k8s.namespace" in wanted:
            for ns in api.paginate("list namespaces", api.core.list_namespace):
                ctx.check_cancelled()
                yield InventoryItem(
                    type="k8s.namespace",
                    id=ns.metadata.name,
                    name=ns.metadata.name,
                    attributes={"phase": (ns.status.phase if ns.status else "") or "", "labels": _labels(ns)},
                )
        if "k8s.clusterrole" in wanted:
            for role in api.paginate("list clusterroles", api.rbac.list_cluster_role):
                ctx.check_cancelled()
                name = role.metadata.name
                yield InventoryItem(type="k8s.clusterrole", id=name, name=name, attributes=_role_attributes(api, role))
        if "k8s.role" in wanted:
            for role in api.paginate("list roles in all namespaces", api.rbac.list_role_for_all_namespaces):
                ctx.check_cancelled()
                ns = role.metadata.namespace
                yield InventoryItem(
                    type="k8s.role",
                    id=f"{ns}/{role.metadata.name}",
                    name=role.metadata.name,
                    parent_id=ns,
                    attributes=_role_attributes(api, role),
                )
        if "k8s.binding" in wanted:
            listings = (
                ("clusterrolebinding", api.rbac.list_cluster_role_binding, "list clusterrolebindings"),
                ("rolebinding", api.rbac.list_role_binding_for_all_namespaces, "list rolebindings in all namespaces"),
            )
            for kind, fn, what in listings:
                for binding in api.paginate(what, fn):
                    ctx.check_cancelled()
                    item = _binding_item(api, kind, binding)
                    if item is not None:
                        yield item


def _labels(obj: Any) -> dict[str, str]:
    return dict(obj.metadata.labels or {}) if obj.metadata is not None else {}


def _role_attributes(api: KubeApi, role: Any) -> dict[str, Any]:
    data = api.to_dict(role)
    labels = data["metadata"].get("labels") or {}
    selectors = (data.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
    return {
        # labels that make this role part of an aggregated one (aggregate-to-view/edit/admin, custom)
        "aggregation_labels": {k: v for k, v in labels.items() if "aggregate-to-" in k},
        # selectors that make this role an aggregate of others
        "aggregates": [s.get("matchLabels") or {} for s in selectors],
        "rule_count": len(data.get("rules") or []),
        "managed_by_connector": labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE,
    }


def _binding_item(api: KubeApi, kind: str, binding: Any) -> InventoryItem | None:
    data = api.to_dict(binding)
    subjects = [
        {"kind": s.get("kind"), "name": s.get("name")}
        for s in data.get("subjects") or []
        if s.get("kind") in ("User", "Group")
    ]
    if not subjects:  # only bindings to people and groups are existing privileges worth reporting
        return None
    meta = data["metadata"]
    ns = meta.get("namespace", "")
    labels = meta.get("labels") or {}
    return InventoryItem(
        type="k8s.binding",
        id=f"{kind}/{ns + '/' if ns else ''}{meta['name']}",
        name=meta["name"],
        parent_id=ns,
        attributes={
            "kind": "RoleBinding" if kind == "rolebinding" else "ClusterRoleBinding",
            "namespace": ns,
            "role_ref": {"kind": data["roleRef"].get("kind"), "name": data["roleRef"].get("name")},
            "subjects": subjects,
            "managed_by_connector": labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE,
            "grant_id": (meta.get("annotations") or {}).get(names.GRANT_ID_ANNOTATION, ""),
        },
    )
