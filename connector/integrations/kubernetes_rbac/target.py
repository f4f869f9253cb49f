"""The `target` of a Kubernetes RBAC grant, and the bindings it plans.

Target: {"scope": "namespace"|"cluster", "namespaces": [...], "role_kind": "ClusterRole"|"Role",
         "role": name, "subject_kind": "User"|"Group"}; the principal is the subject name. Unknown fields are
refused: nothing in a target chooses the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connector.errors import InvalidJob
from connector.integrations import ledger
from connector.integrations.base import GrantRequest
from connector.k8s import names

RESOURCE_TYPE = "kubernetes_rbac"
RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_VERSION = f"{RBAC_GROUP}/v1"
MAX_NAMESPACES = 100  # the seed's guardrail: at most 100 resources named one by one
FIELDS = frozenset({"resource_type", "scope", "namespaces", "role_kind", "role", "subject_kind"})
GRANT_RECORD_ANNOTATION = "access-connector/grant"  # the ledger record: "exp=<epoch|never>"


@dataclass(frozen=True)
class BindingTarget:
    scope: str
    namespaces: tuple[str, ...]
    role_kind: str
    role: str
    subject_kind: str

    @classmethod
    def parse(cls, target: Mapping[str, Any], principal: str) -> BindingTarget:
        unknown = sorted(set(target) - FIELDS)
        if unknown:
            # A decoy (say `cluster`) must not look like it steers anything: the binding lands on the cluster
            # the integration's settings reach.
            raise InvalidJob(
                f"target.{str(unknown[0])[:60]}: unknown field; a kubernetes_rbac target takes {', '.join(sorted(FIELDS))} "
                "(the cluster is the one the integration's connection setting reaches)"
            )
        if target.get("resource_type", RESOURCE_TYPE) != RESOURCE_TYPE:
            raise InvalidJob(f"target.resource_type must be {RESOURCE_TYPE!r} for this integration")
        scope = target.get("scope")
        if scope not in ("namespace", "cluster"):
            raise InvalidJob("target.scope must be 'namespace' or 'cluster'")
        raw_ns = target.get("namespaces") or []
        if not isinstance(raw_ns, list) or not all(isinstance(n, str) for n in raw_ns):
            raise InvalidJob("target.namespaces must be a list of namespace names")
        namespaces = tuple(dict.fromkeys(raw_ns))  # de-duplicated, order kept
        if scope == "namespace":
            if not namespaces:
                raise InvalidJob("target.namespaces is required for scope 'namespace'")
            if len(namespaces) > MAX_NAMESPACES:
                raise InvalidJob(f"target.namespaces names {len(namespaces)} namespaces; at most {MAX_NAMESPACES}")
            bad = [n for n in namespaces if not names.is_dns_label(n)]
            if bad:
                raise InvalidJob(f"target.namespaces: {bad[0][:80]!r} is not a valid namespace name (DNS-1123 label)")
        elif namespaces:
            raise InvalidJob("target.namespaces must be empty for scope 'cluster'")
        role_kind = target.get("role_kind", "ClusterRole")
        if role_kind not in ("ClusterRole", "Role"):
            raise InvalidJob("target.role_kind must be 'ClusterRole' or 'Role'")
        if role_kind == "Role" and scope == "cluster":
            raise InvalidJob("a Role is namespaced: scope 'cluster' needs role_kind 'ClusterRole'")
        role = target.get("role")
        if not isinstance(role, str) or not role or len(role) > 253 or "/" in role or "%" in role:
            raise InvalidJob("target.role must be the name of an existing ClusterRole or Role")
        subject_kind = target.get("subject_kind", "User")
        if subject_kind not in ("User", "Group"):
            raise InvalidJob("target.subject_kind must be 'User' or 'Group'")
        if principal.startswith("system:"):
            # system:authenticated, system:masters, system:serviceaccount:... are not people.
            raise InvalidJob(f"principal {principal[:80]!r}: 'system:' subjects are reserved by Kubernetes; not bound")
        return cls(scope, namespaces, role_kind, role, subject_kind)


@dataclass(frozen=True)
class PlannedBinding:
    kind: str  # RoleBinding | ClusterRoleBinding
    namespace: str  # "" for ClusterRoleBinding
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def path(self) -> str:
        if self.kind == "ClusterRoleBinding":
            return f"/apis/{RBAC_VERSION}/clusterrolebindings"
        return f"/apis/{RBAC_VERSION}/namespaces/{self.namespace}/rolebindings"

    def describe(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


def plan_bindings(request: GrantRequest, target: BindingTarget) -> list[PlannedBinding]:
    # The ledger record (what the expiry loop reads) and, for people, the same expiry as a readable time.
    annotations = {
        names.GRANT_ID_ANNOTATION: request.grant_id,
        GRANT_RECORD_ANNOTATION: ledger.encode(request.expires_at, what="the binding's grant record"),
    }
    if request.expires_at is not None:
        annotations[names.EXPIRES_AT_ANNOTATION] = request.expires_at.isoformat()
    subject = {"kind": target.subject_kind, "apiGroup": RBAC_GROUP, "name": request.principal}
    role_ref = {"apiGroup": RBAC_GROUP, "kind": target.role_kind, "name": target.role}

    def body(kind: str, namespace: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": names.binding_name(request.grant_id),
            "labels": names.grant_labels(request.grant_id),
            "annotations": dict(annotations),
        }
        if namespace:
            metadata["namespace"] = namespace
        return {
            "apiVersion": RBAC_VERSION,
            "kind": kind,
            "metadata": metadata,
            "roleRef": dict(role_ref),
            "subjects": [dict(subject)],
        }

    if target.scope == "cluster":
        return [PlannedBinding("ClusterRoleBinding", "", body("ClusterRoleBinding", ""))]
    return [PlannedBinding("RoleBinding", ns, body("RoleBinding", ns)) for ns in target.namespaces]


def owned_by(obj: Mapping[str, Any], grant_id: str) -> bool:
    """True when `obj` (API dict form) was created by the connector for exactly this grant."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return (
        labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE
        and labels.get(names.GRANT_ID_LABEL) == names.label_value(grant_id)
        and annotations.get(names.GRANT_ID_ANNOTATION) == grant_id
    )


def subjects_of(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    return sorted((str(s.get("kind")), str(s.get("name"))) for s in obj.get("subjects") or [])


def same_binding(existing: Mapping[str, Any], planned: Mapping[str, Any]) -> bool:
    ref_a, ref_b = existing.get("roleRef") or {}, planned["roleRef"]
    return (ref_a.get("kind"), ref_a.get("name")) == (ref_b["kind"], ref_b["name"]) and subjects_of(
        existing
    ) == subjects_of(planned)


def object_path(kind: str, namespace: str, name: str) -> str:
    if kind == "ClusterRoleBinding":
        return f"/apis/{RBAC_VERSION}/clusterrolebindings/{name}"
    return f"/apis/{RBAC_VERSION}/namespaces/{namespace}/rolebindings/{name}"
