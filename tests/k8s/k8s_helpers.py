"""Shared helpers for tests/k8s: objects to seed, a job context that records inventory, integrations and their
kinds as the registry builds them, and the dispatcher's grant path (describe -> guardrails -> grant)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.integrations.base import GrantRequest, InventoryItem, JobContext, RevokeRequest, Services
from connector.integrations.capabilities import ExpiredGrant, ExpiryScan
from connector.integrations.effect import Effect
from connector.jobs import guardrails
from connector.jobs.guardrails import Guardrails
from connector.jobs.registry import build_registry

RBAC = "rbac.authorization.k8s.io/v1"
RBAC_GROUP = "rbac.authorization.k8s.io"
REGISTRY = build_registry()
# One expiry for a whole run, well within the default policy's 12 h, so a repeated grant is identical.
EXPIRES_AT = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=4)
# The customer's guardrail file that allows cluster-admin level grants (still within 12 h).
ADMIN_ALLOWED = Guardrails(max_duration="12h", allow_cluster_admin=True)

VIEW_RULES = [{"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get", "list", "watch"]}]
EDIT_RULES = [
    {"apiGroups": [""], "resources": ["pods", "configmaps", "services"], "verbs": ["create", "update", "delete"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
]
STAR_RULES = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]


# -- objects ------------------------------------------------------------------------------------------------
def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def cluster_role(
    name: str,
    labels: dict[str, str] | None = None,
    aggregate: bool = False,
    rules: list[dict[str, Any]] | None = None,
    selectors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ClusterRole (read-only on pods unless `rules`); `aggregate` or `selectors` make it an aggregated one."""
    obj: dict[str, Any] = {
        "apiVersion": RBAC,
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels or {}},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}] if rules is None else rules,
    }
    if aggregate:
        selectors = [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-" + name: "true"}}]
    if selectors is not None:
        obj["aggregationRule"] = {"clusterRoleSelectors": selectors}
    return obj


def role(namespace_: str, name: str, rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace_},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}] if rules is None else rules,
    }


def role_binding(namespace_: str, name: str, role_name: str, user: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace_, **meta},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "User", "apiGroup": RBAC_GROUP, "name": user}],
    }


def cluster_role_binding(name: str, role_name: str, group: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, **meta},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "Group", "apiGroup": RBAC_GROUP, "name": group}],
    }


# -- jobs ---------------------------------------------------------------------------------------------------
class RecordingContext(JobContext):
    def __init__(self, job_id: str = "job-1") -> None:
        super().__init__(job_id=job_id, attempt=1, connector_id="c-1", integration_id="k8s-int")
        self.items: list[InventoryItem] = []
        self.emit = self.items.append


def services() -> Services:
    return Services(connector_id="c-1")


def grant_request(
    grant_id: str, principal: str, target: dict[str, Any], expires_at: datetime | None = EXPIRES_AT, **kw: Any
) -> GrantRequest:
    return GrantRequest(grant_id=grant_id, principal=principal, target=target, expires_at=expires_at, **kw)


def revoke_request(grant_id: str, principal: str, target: dict[str, Any] | None = None, **kw: Any) -> RevokeRequest:
    return RevokeRequest(grant_id=grant_id, principal=principal, target=target or {}, **kw)


def kind_of(integration: Any, resource_type: str | None = None) -> Any:
    """The kind's Provisioner/ExpiryScanner as the registry makes it (one per integration instance)."""
    kind = REGISTRY.provisioner(integration, resource_type or integration.default_resource_type)
    assert kind is not None, f"{integration.type_id} has no kind {resource_type}"
    return kind


def describe(kind: Any, request: GrantRequest, ctx: JobContext | None = None) -> Effect:
    effect: Effect = kind.describe(request, ctx or RecordingContext())
    return effect


def grant(
    kind: Any, request: GrantRequest, policy: Guardrails = guardrails.DEFAULT, ctx: JobContext | None = None
) -> dict[str, Any]:
    """What the dispatcher does with a grant: describe the Effect, judge it with `policy` (the default policy
    unless told), then grant. Raises GuardrailDenied before anything is written when the policy refuses."""
    ctx = ctx or RecordingContext()
    effect = kind.describe(request, ctx)
    policy.check(effect, datetime.now(UTC))
    result: dict[str, Any] = kind.grant(request, effect, ctx)
    return result


def revoke(kind: Any, request: RevokeRequest) -> dict[str, Any]:
    result: dict[str, Any] = kind.revoke(request, RecordingContext())
    return result


def expired(kind: Any, now: int | float | datetime | None = None) -> list[ExpiredGrant]:
    """Every expired (or undecodable) record the kind finds, in a full scan at `now` (default: now)."""
    if isinstance(now, datetime):
        now = now.timestamp()
    at = int(time.time() if now is None else now)
    return list(kind.expired(ExpiryScan(now=at, full=True)))
