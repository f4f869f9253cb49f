"""Kubernetes RBAC: sync roles and bindings, grant by creating a RoleBinding / ClusterRoleBinding, revoke it.

Type id "kubernetes". The connector usually runs inside the cluster it manages (Helm chart) and uses its
ServiceAccount; it can also reach an EKS cluster from outside with an EKS bearer token, or an explicit
host (tests). Everything a grant creates is named from the grant id (connector.k8s.names) and labelled
managed-by=access-connector + grant-id, so a repeated grant finds its own bindings, a foreign object with
the same name is never overwritten (CONFLICT), and a revoke deletes exactly the grant's bindings.

Target: {"scope": "namespace"|"cluster", "namespaces": [...], "role_kind": "ClusterRole"|"Role",
         "role": name, "subject_kind": "User"|"Group"}; the principal is the subject name.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from connector.aws.eks_token import REFRESH_AFTER_SECONDS, cluster_connection_info, get_token
from connector.aws.sessions import AwsSessions
from connector.config import is_loopback
from connector.errors import ConnectorError, ErrorCode, InvalidJob, InvalidSettings
from connector.integrations.base import GrantRequest, Integration, InventoryItem, JobContext, RevokeRequest, SyncRequest
from connector.k8s import names
from connector.k8s.client import (
    PAGE_LIMIT,
    KubeApi,
    RefreshingBearer,
    api_error,
    api_exception,
    in_cluster_client,
    token_client,
)
from connector.logging import get_logger

log = get_logger("connector.integrations.kubernetes")

RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_VERSION = f"{RBAC_GROUP}/v1"
MAX_NAMESPACES = 100  # the seed's guardrail: at most 100 resources named one by one
CONNECTIONS = ("in_cluster", "eks", "host")
RESOURCE_TYPES = ("k8s.namespace", "k8s.clusterrole", "k8s.role", "k8s.binding")


# ---- connection (shared with connector.integrations.aws_auth) ---------------------------------------------
def _str_setting(settings: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = settings.get(key, "")
    if not isinstance(value, str):
        raise InvalidSettings(key, "must be a string")
    if required and not value.strip():
        raise InvalidSettings(key, "is required")
    return value.strip()


@dataclass(frozen=True)
class ClusterSettings:
    """How to reach the cluster. `connection`: in_cluster (default), eks, or host."""

    connection: str = "in_cluster"
    cluster_name: str = ""
    region: str = ""
    host: str = ""
    page_size: int = PAGE_LIMIT

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> ClusterSettings:
        connection = _str_setting(settings, "connection") or "in_cluster"
        if connection not in CONNECTIONS:
            raise InvalidSettings("connection", f"must be one of {', '.join(CONNECTIONS)}, got {connection[:40]!r}")
        page_size = settings.get("page_size", PAGE_LIMIT)
        if not isinstance(page_size, (int, float)) or isinstance(page_size, bool) or not 1 <= page_size <= 500:
            raise InvalidSettings("page_size", "must be a number from 1 to 500 (items per list call)")
        parsed = cls(
            connection=connection,
            page_size=int(page_size),
            cluster_name=_str_setting(settings, "cluster_name", required=connection == "eks"),
            region=_str_setting(settings, "region", required=connection == "eks"),
            host=_str_setting(settings, "host", required=connection == "host"),
        )
        if connection == "host":
            parts = urlsplit(parsed.host)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise InvalidSettings("host", "must look like https://host:port")
            if parts.scheme == "http" and not is_loopback(parts.hostname):
                raise InvalidSettings("host", "plaintext http:// is only allowed to a loopback address; use https://")
        return parsed


def _aws_clients(services: Any, region: str) -> tuple[Any, Any]:
    """(STS, EKS) clients of the connector identity, through the process-wide AwsSessions cache."""
    if services.aws is None:
        services.aws = AwsSessions(services.connector_id)
    aws: AwsSessions = services.aws
    identity = aws.identity()
    return aws.client(identity, "sts", region), aws.client(identity, "eks", region)


class ClusterConnection:
    """Builds the KubeApi once, on first use (a job, not start-up, reports an unreachable cluster)."""

    def __init__(self, cluster: ClusterSettings, services: Any) -> None:
        self.cluster = cluster
        self._services = services
        self._api: KubeApi | None = None
        self._lock = threading.Lock()

    def api(self) -> KubeApi:
        with self._lock:
            if self._api is None:
                self._api = KubeApi(self._build(), page_limit=self.cluster.page_size)
            return self._api

    def _build(self) -> Any:
        c = self.cluster
        if c.connection == "in_cluster":
            return in_cluster_client()
        if c.connection == "host":
            return token_client(c.host, None, None)
        sts, eks = _aws_clients(self._services, c.region)
        endpoint, ca_pem = cluster_connection_info(eks, c.cluster_name)  # botocore errors: typed by the dispatcher
        bearer = RefreshingBearer(lambda: get_token(sts, c.cluster_name).value, refresh_after=REFRESH_AFTER_SECONDS)
        return token_client(endpoint, ca_pem, bearer)


# ---- target validation ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BindingTarget:
    scope: str
    namespaces: tuple[str, ...]
    role_kind: str
    role: str
    subject_kind: str

    @classmethod
    def parse(cls, target: Mapping[str, Any], principal: str) -> BindingTarget:
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
            raise InvalidJob(f"refusing to bind {principal[:80]!r}: 'system:' subjects are reserved by Kubernetes")
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
    annotations = {names.GRANT_ID_ANNOTATION: request.grant_id}
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


def _subjects(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    return sorted((str(s.get("kind")), str(s.get("name"))) for s in obj.get("subjects") or [])


def _same_binding(existing: Mapping[str, Any], planned: Mapping[str, Any]) -> bool:
    ref_a, ref_b = existing.get("roleRef") or {}, planned["roleRef"]
    return (ref_a.get("kind"), ref_a.get("name")) == (ref_b["kind"], ref_b["name"]) and _subjects(
        existing
    ) == _subjects(planned)


# ---- the integration -----------------------------------------------------------------------------------
class KubernetesIntegration(Integration):
    type_id = "kubernetes"

    def __init__(self, integration_id: str, settings: Mapping[str, Any], services: Any) -> None:
        super().__init__(integration_id, settings, services)
        self.connection = ClusterConnection(ClusterSettings.parse(settings), services)
        allowed = settings.get("allowed_roles")
        if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(r, str) for r in allowed)):
            raise InvalidSettings("allowed_roles", "must be a list of role names (or absent to allow any role)")
        self.allowed_roles: frozenset[str] | None = None if allowed is None else frozenset(allowed)

    # -- sync --
    def sync(self, request: SyncRequest, ctx: JobContext) -> dict[str, Any]:
        api = self.connection.api()
        wanted = set(request.resource_types) or set(RESOURCE_TYPES)
        unknown = wanted - set(RESOURCE_TYPES)
        if unknown:
            raise InvalidJob(f"unknown resource types {sorted(unknown)}; this integration syncs {list(RESOURCE_TYPES)}")
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

    # -- grant --
    def grant(self, request: GrantRequest, ctx: JobContext) -> dict[str, Any]:
        target = BindingTarget.parse(request.target, request.principal)
        if self.allowed_roles is not None and target.role not in self.allowed_roles:
            raise ConnectorError(
                ErrorCode.GUARDRAIL_DENIED,
                f"role {target.role!r} is not in this integration's allowed_roles",
                retryable=False,
            )
        planned = plan_bindings(request, target)
        if request.dry_run:
            return {
                "grant_id": request.grant_id,
                "dry_run": True,
                "calls": [{"method": "POST", "path": p.path, "body": p.body} for p in planned],
            }
        api = self.connection.api()
        self._check_role_exists(api, target)
        done: list[dict[str, Any]] = []
        created: list[PlannedBinding] = []
        try:
            for binding in planned:
                ctx.check_cancelled()
                outcome = self._ensure_binding(api, request.grant_id, binding)
                if outcome["created"]:
                    created.append(binding)
                done.append(outcome)
        except Exception:
            # Never leave part of a failed grant behind: remove what this attempt created, then report.
            self._rollback(api, request.grant_id, created)
            raise
        log.info("k8s_grant_applied", grant_id=request.grant_id, bindings=[d["name"] for d in done])
        return {"grant_id": request.grant_id, "bindings": done}

    def _check_role_exists(self, api: KubeApi, target: BindingTarget) -> None:
        # RBAC accepts a binding to a missing role and it then grants nothing: say so instead.
        try:
            if target.role_kind == "ClusterRole":
                api.call(f"read clusterrole {target.role}", api.rbac.read_cluster_role, target.role)
            else:
                for ns in target.namespaces:
                    api.call(f"read role {ns}/{target.role}", api.rbac.read_namespaced_role, target.role, ns)
        except api_exception() as exc:
            if exc.status == 404:
                where = "" if target.role_kind == "ClusterRole" else f" in every namespace of {list(target.namespaces)}"
                raise ConnectorError(
                    ErrorCode.NOT_FOUND, f"{target.role_kind} {target.role!r} does not exist{where}", retryable=False
                ) from None
            raise api_error(exc, f"read {target.role_kind} {target.role}") from None

    def _create(self, api: KubeApi, binding: PlannedBinding) -> Any:
        if binding.kind == "ClusterRoleBinding":
            return api.call(f"create {binding.describe()}", api.rbac.create_cluster_role_binding, binding.body)
        return api.call(
            f"create {binding.describe()}", api.rbac.create_namespaced_role_binding, binding.namespace, binding.body
        )

    def _read(self, api: KubeApi, binding: PlannedBinding) -> Any:
        if binding.kind == "ClusterRoleBinding":
            return api.call(f"read {binding.describe()}", api.rbac.read_cluster_role_binding, binding.name)
        return api.call(
            f"read {binding.describe()}", api.rbac.read_namespaced_role_binding, binding.name, binding.namespace
        )

    def _ensure_binding(self, api: KubeApi, grant_id: str, binding: PlannedBinding) -> dict[str, Any]:
        result = {"kind": binding.kind, "namespace": binding.namespace, "name": binding.name}
        try:
            obj = api.to_dict(self._create(api, binding))
            return result | {"uid": obj["metadata"].get("uid", ""), "created": True}
        except api_exception() as exc:
            if exc.status == 404 and binding.namespace:
                raise ConnectorError(
                    ErrorCode.NOT_FOUND, f"namespace {binding.namespace!r} does not exist", retryable=False
                ) from None
            if exc.status != 409:
                raise api_error(exc, f"create {binding.describe()}") from None
        # 409 AlreadyExists: an earlier attempt of this grant, or someone else's object with our name.
        try:
            existing = api.to_dict(self._read(api, binding))
        except api_exception() as exc:
            raise api_error(exc, f"read {binding.describe()}") from None
        if not owned_by(existing, grant_id):
            raise ConnectorError(
                ErrorCode.CONFLICT,
                f"{binding.describe()} already exists and was not created by the connector for grant "
                f"{grant_id!r}; refusing to overwrite it. Rename or delete that object.",
                retryable=False,
            )
        if not _same_binding(existing, binding.body):
            raise ConnectorError(
                ErrorCode.CONFLICT,
                f"{binding.describe()} exists for grant {grant_id!r} with a different role or subject; "
                "revoke the grant first",
                retryable=False,
            )
        return result | {"uid": existing["metadata"].get("uid", ""), "created": False}

    def _rollback(self, api: KubeApi, grant_id: str, created: list[PlannedBinding]) -> None:
        for binding in created:
            try:
                self._delete(api, binding.kind, binding.namespace, binding.name, None)
            except Exception as exc:  # report the original failure; the revoke will retry this
                log.warning("k8s_grant_rollback_failed", grant_id=grant_id, binding=binding.describe(), error=str(exc))

    # -- revoke --
    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        api = self.connection.api()
        selector = names.grant_selector(request.grant_id)
        found: list[tuple[str, str, str, str]] = []  # kind, namespace, name, uid
        listings = (
            ("ClusterRoleBinding", api.rbac.list_cluster_role_binding, "list clusterrolebindings"),
            ("RoleBinding", api.rbac.list_role_binding_for_all_namespaces, "list rolebindings in all namespaces"),
        )
        expected_name = names.binding_name(request.grant_id)
        for kind, fn, what in listings:
            for obj in api.paginate(what, fn, label_selector=selector):
                data = api.to_dict(obj)
                meta = data["metadata"]
                # The label matched; the exact name and annotation make sure it is this grant's object.
                if meta.get("name") == expected_name and owned_by(data, request.grant_id):
                    found.append((kind, meta.get("namespace", ""), meta["name"], meta.get("uid", "")))
        if request.dry_run:
            return {
                "grant_id": request.grant_id,
                "dry_run": True,
                "calls": [
                    {"method": "DELETE", "path": _object_path(kind, ns, name), "preconditions": {"uid": uid}}
                    for kind, ns, name, uid in found
                ],
            }
        deleted = []
        for kind, ns, name, uid in found:
            ctx.check_cancelled()
            if self._delete(api, kind, ns, name, uid):
                deleted.append({"kind": kind, "namespace": ns, "name": name})
        log.info("k8s_grant_revoked", grant_id=request.grant_id, deleted=len(deleted))
        return {"grant_id": request.grant_id, "deleted": deleted, "already_revoked": not deleted}

    def _delete(self, api: KubeApi, kind: str, namespace: str, name: str, uid: str | None) -> bool:
        """Delete one binding (only the exact object when `uid` is given); False when already gone."""
        body = {"preconditions": {"uid": uid}} if uid else None
        what = f"delete {kind} {namespace + '/' if namespace else ''}{name}"
        try:
            if kind == "ClusterRoleBinding":
                api.call(what, api.rbac.delete_cluster_role_binding, name, body=body)
            else:
                api.call(what, api.rbac.delete_namespaced_role_binding, name, namespace, body=body)
        except api_exception() as exc:
            if exc.status == 404:
                return False
            raise api_error(exc, what) from None
        return True


def _object_path(kind: str, namespace: str, name: str) -> str:
    if kind == "ClusterRoleBinding":
        return f"/apis/{RBAC_VERSION}/clusterrolebindings/{name}"
    return f"/apis/{RBAC_VERSION}/namespaces/{namespace}/rolebindings/{name}"


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
