"""EKS access entries and accessConfig, which moto 5.2.5 lacks, on top of moto's EKS backend.

State lives on moto's own Cluster objects (so it is per (account, region) exactly like moto's BackendDict,
goes away with the cluster, and is wiped by moto's reset). Shapes, status codes and error codes follow
botocore's eks 2017-11-01 model.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import moto.eks.urls
from moto.eks.models import Cluster, EKSBackend, eks_backends
from moto.eks.responses import EKSResponse

from connector.sandbox.identity import resolve_caller

AUTH_MODES = ("API", "API_AND_CONFIG_MAP", "CONFIG_MAP")
# botocore's CreateAccessConfigRequest doc: "If you create a cluster by using the EKS API, AWS SDKs, or AWS
# CloudFormation, the default is CONFIG_MAP" (the console defaults to API_AND_CONFIG_MAP).
DEFAULT_AUTH_MODE = "CONFIG_MAP"
# Modes only ever move towards the EKS API: CONFIG_MAP -> API_AND_CONFIG_MAP -> API.
_AUTH_MODE_RANK = {"CONFIG_MAP": 0, "API_AND_CONFIG_MAP": 1, "API": 2}
MODE_MESSAGE = (
    "The cluster's authentication mode must be set to one of [API, API_AND_CONFIG_MAP] to perform this operation."
)

ENTRY_TYPES = ("STANDARD", "EC2_LINUX", "EC2_WINDOWS", "FARGATE_LINUX", "EC2", "HYBRID_LINUX", "HYPERPOD_LINUX")
NODE_TYPES = frozenset(ENTRY_TYPES) - {"STANDARD"}  # node identities: no groups, no username, no policies

POLICY_ARN_PREFIX = "arn:aws:eks::aws:cluster-access-policy/"
# AWS managed cluster access policies (EKS user guide, "Access policy permissions").
ACCESS_POLICY_NAMES = (
    "AmazonAIOpsAssistantPolicy",
    "AmazonARCRegionSwitchScalingPolicy",
    "AmazonEKSAdminPolicy",
    "AmazonEKSAdminViewPolicy",
    "AmazonEKSAutoNodePolicy",
    "AmazonEKSBlockStorageClusterPolicy",
    "AmazonEKSBlockStoragePolicy",
    "AmazonEKSClusterAdminPolicy",
    "AmazonEKSClusterInsightsPolicy",
    "AmazonEKSComputePolicy",
    "AmazonEKSEditPolicy",
    "AmazonEKSHybridPolicy",
    "AmazonEKSLoadBalancingPolicy",
    "AmazonEKSNetworkingPolicy",
    "AmazonEKSViewPolicy",
    "AmazonEMRJobPolicy",
    "AmazonSagemakerHyperpodClusterPolicy",
    "AmazonSagemakerHyperpodControllerPolicy",
    "AmazonSagemakerHyperpodSystemNamespacePolicy",
)
ACCESS_POLICY_ARNS = frozenset(POLICY_ARN_PREFIX + name for name in ACCESS_POLICY_NAMES)
_POLICY_ARN = re.compile(r"^arn:(aws[\w-]*):eks::aws:cluster-access-policy/(\w+)$")


def policy_arn(partition: str, name: str) -> str:
    """An EKS access policy ARN in `partition` (GovCloud and China clusters name theirs arn:aws-us-gov: / arn:aws-cn:)."""
    return f"arn:{partition}:eks::aws:cluster-access-policy/{name}"


def _known_policy(backend: EKSBackend, arn: str) -> bool:
    found = _POLICY_ARN.match(arn)
    return found is not None and found.group(1) == backend.partition and found.group(2) in ACCESS_POLICY_NAMES


_IAM_PRINCIPAL = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):(role|user)/(?:.*/)?([\w+=,.@-]+)$")
_ASSUMED_ROLE = re.compile(r"^arn:aws[\w-]*:sts::\d{12}:assumed-role/")
_MAX_PAGE = 100
_STATE_LOCK = threading.RLock()


def _now() -> datetime:
    return datetime.now(UTC)


class EksApiError(Exception):
    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def _not_found(message: str) -> EksApiError:
    return EksApiError("ResourceNotFoundException", 404, message)


def _invalid_parameter(message: str) -> EksApiError:
    return EksApiError("InvalidParameterException", 400, message)


def _invalid_request(message: str) -> EksApiError:
    return EksApiError("InvalidRequestException", 400, message)


@dataclass
class AssociatedPolicy:
    policy_arn: str
    access_scope: dict[str, Any]
    associated_at: datetime = field(default_factory=_now)
    modified_at: datetime = field(default_factory=_now)

    def to_json(self) -> dict[str, Any]:
        return {
            "policyArn": self.policy_arn,
            "accessScope": self.access_scope,
            "associatedAt": self.associated_at.timestamp(),
            "modifiedAt": self.modified_at.timestamp(),
        }


@dataclass
class AccessEntry:
    cluster_name: str
    principal_arn: str
    access_entry_arn: str
    type: str
    username: str
    kubernetes_groups: list[str]
    tags: dict[str, str]
    created_at: datetime = field(default_factory=_now)
    modified_at: datetime = field(default_factory=_now)
    policies: dict[str, AssociatedPolicy] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "clusterName": self.cluster_name,
            "principalArn": self.principal_arn,
            "kubernetesGroups": list(self.kubernetes_groups),
            "accessEntryArn": self.access_entry_arn,
            "createdAt": self.created_at.timestamp(),
            "modifiedAt": self.modified_at.timestamp(),
            "tags": dict(self.tags),
            "username": self.username,
            "type": self.type,
        }


def access_entries(cluster: Cluster) -> dict[str, AccessEntry]:
    """The access entries of a moto cluster, by principal ARN (created on first use)."""
    entries: dict[str, AccessEntry] | None = getattr(cluster, "sandbox_access_entries", None)
    if entries is None:
        entries = {}
        setattr(cluster, "sandbox_access_entries", entries)  # noqa: B010 - moto's class has no such slot
    return entries


def authentication_mode(cluster: Cluster) -> str:
    config = getattr(cluster, "access_config", None) or {}
    return str(config.get("authenticationMode", DEFAULT_AUTH_MODE))


def set_access_config(cluster: Cluster, mode: str | None, bootstrap: bool | None) -> None:
    mode = mode or DEFAULT_AUTH_MODE
    if mode not in AUTH_MODES:
        raise _invalid_parameter(f"Unsupported authentication mode: {mode}. Valid values: {', '.join(AUTH_MODES)}")
    config = {
        "authenticationMode": mode,
        "bootstrapClusterCreatorAdminPermissions": True if bootstrap is None else bool(bootstrap),
    }
    setattr(cluster, "access_config", config)  # noqa: B010 - moto's serializer reads Cluster.access_config


def _cluster(backend: EKSBackend, name: str) -> Cluster:
    cluster = backend.clusters.get(name)
    if cluster is None:
        raise _not_found(f"No cluster found for name: {name}.")
    return cluster


def _api_cluster(backend: EKSBackend, name: str) -> Cluster:
    cluster = _cluster(backend, name)
    if authentication_mode(cluster) == "CONFIG_MAP":
        raise _invalid_request(MODE_MESSAGE)
    return cluster


def _entry(cluster: Cluster, principal_arn: str) -> AccessEntry:
    entry = access_entries(cluster).get(principal_arn)
    if entry is None:
        raise _not_found(
            f"The specified principalArn could not be found. You can view your available access entries with 'list-access-entries'. ({principal_arn})"
        )
    return entry


def _validate_groups(groups: Any) -> list[str]:
    if groups is None:
        return []
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise _invalid_parameter("kubernetesGroups must be a list of non-empty strings.")
    reserved = [g for g in groups if g.startswith("system:")]
    if reserved:
        raise _invalid_parameter(f"The kubernetes group name {reserved[0]} is invalid, it cannot start with system:")
    return list(dict.fromkeys(groups))


def _validate_scope(scope: Any) -> dict[str, Any]:
    if not isinstance(scope, dict) or scope.get("type") not in ("cluster", "namespace"):
        raise _invalid_parameter("accessScope.type must be one of [cluster, namespace].")
    namespaces = scope.get("namespaces") or []
    if not isinstance(namespaces, list) or not all(isinstance(n, str) and n for n in namespaces):
        raise _invalid_parameter("accessScope.namespaces must be a list of non-empty strings.")
    if scope["type"] == "namespace" and not namespaces:
        raise _invalid_parameter("accessScope.namespaces is required when accessScope.type is namespace.")
    if scope["type"] == "cluster" and namespaces:
        raise _invalid_parameter("accessScope.namespaces must be empty when accessScope.type is cluster.")
    return {"type": scope["type"], "namespaces": list(dict.fromkeys(namespaces))}


def _default_username(principal_arn: str, entry_type: str, kind: str, account: str, name: str, partition: str) -> str:
    if entry_type in ("EC2_LINUX", "EC2_WINDOWS", "EC2", "HYBRID_LINUX", "HYPERPOD_LINUX"):
        return "system:node:{{EC2PrivateDNSName}}"
    if entry_type == "FARGATE_LINUX":
        return "system:node:{{SessionName}}"
    if kind == "role":
        return f"arn:{partition}:sts::{account}:assumed-role/{name}/{{{{SessionName}}}}"
    return principal_arn


def create_access_entry(
    backend: EKSBackend,
    cluster_name: str,
    principal_arn: str,
    *,
    kubernetes_groups: Any = None,
    username: str | None = None,
    entry_type: str | None = None,
    tags: dict[str, str] | None = None,
) -> AccessEntry:
    """CreateAccessEntry; also used by the seeder (same validation, no HTTP)."""
    cluster = _api_cluster(backend, cluster_name)
    if not principal_arn or _ASSUMED_ROLE.match(principal_arn):
        raise _invalid_parameter(
            f"The specified principalArn is invalid: {principal_arn}. Assumed-role session ARNs are not supported; use the IAM role ARN."
        )
    found = _IAM_PRINCIPAL.match(principal_arn)
    if found is None:
        raise _invalid_parameter(
            f"The specified principalArn is invalid: {principal_arn}. Use an IAM role or user ARN."
        )
    entry_type = entry_type or "STANDARD"
    if entry_type not in ENTRY_TYPES:
        raise _invalid_parameter(f"The type {entry_type} is invalid. Valid values: {', '.join(ENTRY_TYPES)}.")
    groups = _validate_groups(kubernetes_groups)
    if entry_type in NODE_TYPES and (groups or username):
        raise _invalid_parameter(f"Access entries of type {entry_type} cannot specify kubernetesGroups or username.")
    if entry_type in NODE_TYPES and found.group(2) != "role":
        raise _invalid_parameter(f"Access entries of type {entry_type} require an IAM role principalArn.")
    entries = access_entries(cluster)
    if principal_arn in entries:
        raise EksApiError(
            "ResourceInUseException", 409, "The specified access entry resource is already in use on this cluster."
        )
    account, kind, name = found.group(1), found.group(2), found.group(3)
    entry = AccessEntry(
        cluster_name=cluster_name,
        principal_arn=principal_arn,
        access_entry_arn=(
            f"arn:{backend.partition}:eks:{backend.region_name}:{backend.account_id}:access-entry/{cluster_name}/{kind}/{account}/{name}/{uuid.uuid4()}"
        ),
        type=entry_type,
        username=username or _default_username(principal_arn, entry_type, kind, account, name, backend.partition),
        kubernetes_groups=["system:nodes"] if entry_type in NODE_TYPES - {"FARGATE_LINUX"} else groups,
        tags=dict(tags or {}),
    )
    entries[principal_arn] = entry
    return entry


def associate_access_policy(
    backend: EKSBackend, cluster_name: str, principal_arn: str, policy_arn: str, access_scope: Any
) -> AssociatedPolicy:
    entry = _entry(_api_cluster(backend, cluster_name), principal_arn)
    if not _known_policy(backend, policy_arn):
        raise _invalid_parameter(f"The specified policyArn is invalid: {policy_arn}. See list-access-policies.")
    if entry.type in NODE_TYPES:
        raise _invalid_request(f"Access policies cannot be associated with access entries of type {entry.type}.")
    scope = _validate_scope(access_scope)
    existing = entry.policies.get(policy_arn)
    if existing is not None:  # re-associating replaces the scope
        existing.access_scope = scope
        existing.modified_at = _now()
        return existing
    associated = AssociatedPolicy(policy_arn=policy_arn, access_scope=scope)
    entry.policies[policy_arn] = associated
    return associated


def _page(items: list[Any], max_results: Any, next_token: str | None) -> tuple[list[Any], str | None]:
    """Offset pagination with an opaque token, maxResults 1-100 (default 100) as the model says."""
    limit = _MAX_PAGE
    if max_results is not None:
        try:
            limit = int(max_results)
        except (TypeError, ValueError):
            raise _invalid_parameter("maxResults must be an integer between 1 and 100.") from None
        if not 1 <= limit <= _MAX_PAGE:
            raise _invalid_parameter("maxResults must be an integer between 1 and 100.")
    start = 0
    if next_token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(next_token.encode()))["offset"])
        except (ValueError, KeyError, TypeError):
            raise _invalid_parameter("The specified nextToken is invalid.") from None
    end = start + limit
    token = base64.urlsafe_b64encode(json.dumps({"offset": end}).encode()).decode() if end < len(items) else None
    return items[start:end], token


# -- reads, shared by moto's response class and the sandbox's direct lane (read_response) ---------------------
Query = Callable[[str], str | None]


def describe_access_entry(backend: EKSBackend, labels: Mapping[str, str], query: Query) -> dict[str, Any]:
    cluster = _api_cluster(backend, labels["name"])
    return {"accessEntry": _entry(cluster, labels["principalArn"]).to_json()}


def list_access_entries(backend: EKSBackend, labels: Mapping[str, str], query: Query) -> dict[str, Any]:
    cluster = _api_cluster(backend, labels["name"])
    policy = query("associatedPolicyArn")
    arns = sorted(a for a, e in access_entries(cluster).items() if policy is None or policy in e.policies)
    page, token = _page(arns, query("maxResults"), query("nextToken"))
    return {"accessEntries": page, "nextToken": token}


def list_associated_access_policies(backend: EKSBackend, labels: Mapping[str, str], query: Query) -> dict[str, Any]:
    entry = _entry(_api_cluster(backend, labels["name"]), labels["principalArn"])
    policies = [entry.policies[arn].to_json() for arn in sorted(entry.policies)]
    page, token = _page(policies, query("maxResults"), query("nextToken"))
    return {
        "clusterName": labels["name"],
        "principalArn": labels["principalArn"],
        "associatedAccessPolicies": page,
        "nextToken": token,
    }


READS: dict[str, Callable[[EKSBackend, Mapping[str, str], Query], dict[str, Any]]] = {
    "DescribeAccessEntry": describe_access_entry,
    "ListAccessEntries": list_access_entries,
    "ListAssociatedAccessPolicies": list_associated_access_policies,
}


def _json_response(body: dict[str, Any], status: int = 200) -> tuple[int, dict[str, str], str]:
    return (
        status,
        {"Content-Type": "application/json", "status": str(status)},
        json.dumps({k: v for k, v in body.items() if v is not None}),
    )


def _error_response(error: EksApiError) -> tuple[int, dict[str, str], str]:
    # moto's call_action takes the HTTP status from the "status" header, not from the tuple.
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error.code, "status": str(error.status)}
    return error.status, headers, json.dumps({"message": error.message})


def read_response(
    account: str, region: str, operation: str, labels: Mapping[str, str], query: Query
) -> tuple[int, dict[str, str], str]:
    """The response to one of the READS (`operation` must be one), straight from the state. The sync makes
    three of these per access entry: served without Flask and moto's per-request dispatch, which cost several
    times the read itself, they keep the emulator from being the bottleneck of a large sync."""
    try:
        with _STATE_LOCK:
            return _json_response(READS[operation](eks_backends[account][region], labels, query))
    except EksApiError as error:
        return _error_response(error)


class SandboxEKSResponse(EKSResponse):
    """moto's EKS responses plus access entries and accessConfig."""

    def _json(self, body: dict[str, Any], status: int = 200) -> tuple[int, dict[str, str], str]:
        return _json_response(body, status)

    def _error(self, error: EksApiError) -> tuple[int, dict[str, str], str]:
        return _error_response(error)

    def _body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body) if self.body else {}
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}

    def _query(self, name: str) -> str | None:
        values = self.querystring.get(name)
        return str(values[0]) if values else None

    def _match(self) -> tuple[str, dict[str, str]] | None:
        """Operation and path labels matched on the raw path, so `%2F` inside an ARN stays in its label."""
        from connector.sandbox.protocol import match_rest_operation

        if not hasattr(self, "_sandbox_match"):
            environ = self.normalized_request.environ
            raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
            path = str(raw).split("?", 1)[0] if raw else self.path
            self._sandbox_match = match_rest_operation("eks", self.method, path)
            if self._sandbox_match is not None:
                self.uri_match = dict(self._sandbox_match[1])
        return self._sandbox_match

    def _path_labels(self) -> dict[str, str]:
        matched = self._match()
        return matched[1] if matched else {}

    def _get_action(self) -> str:
        matched = self._match()
        return matched[0] if matched else str(super()._get_action())

    def _run(self, handler: Any) -> tuple[int, dict[str, str], str]:
        try:
            with _STATE_LOCK:  # the server is threaded: check-then-create must not race (one 409 wins)
                return self._json(handler(self._path_labels()))
        except EksApiError as error:
            return self._error(error)

    # -- clusters: accessConfig -----------------------------------------------------------------------------
    def create_cluster(self) -> Any:
        access_config = self._body().get("accessConfig") or {}
        mode = access_config.get("authenticationMode")
        if mode is not None and mode not in AUTH_MODES:
            return self._error(_invalid_parameter(f"Unsupported authentication mode: {mode}"))
        result = super().create_cluster()
        cluster = self.eks_backend.clusters[self._get_param("name")]
        bootstrap = access_config.get("bootstrapClusterCreatorAdminPermissions")
        set_access_config(cluster, mode, bootstrap)
        if authentication_mode(cluster) != "CONFIG_MAP" and getattr(cluster, "access_config", {}).get(
            "bootstrapClusterCreatorAdminPermissions"
        ):
            self._bootstrap_creator(cluster)
        return result

    def _bootstrap_creator(self, cluster: Cluster) -> None:
        """As AWS does: the creator's IAM principal gets an entry with AmazonEKSClusterAdminPolicy."""
        caller = resolve_caller(self.access_key, self.eks_backend.partition)
        principal = caller.role_arn or caller.arn
        if not _IAM_PRINCIPAL.match(principal):
            return  # the account root has no access entry
        try:
            create_access_entry(self.eks_backend, cluster.name, principal)
            associate_access_policy(
                self.eks_backend,
                cluster.name,
                principal,
                policy_arn(self.eks_backend.partition, "AmazonEKSClusterAdminPolicy"),
                {"type": "cluster"},
            )
        except EksApiError:
            pass

    def describe_cluster(self) -> Any:
        cluster = self.eks_backend.clusters.get(self._get_param("name"))
        if cluster is not None and getattr(cluster, "access_config", None) is None:
            set_access_config(cluster, None, None)
        return super().describe_cluster()

    def update_cluster_config(self) -> Any:
        access_config = self._body().get("accessConfig")
        if not access_config:
            return super().update_cluster_config()
        name = self._get_param("name")
        try:
            cluster = _cluster(self.eks_backend, name)
            current, wanted = authentication_mode(cluster), access_config.get("authenticationMode")
            if wanted not in AUTH_MODES:
                raise _invalid_parameter(f"Unsupported authentication mode: {wanted}")
            if _AUTH_MODE_RANK[wanted] <= _AUTH_MODE_RANK[current]:
                raise _invalid_parameter(f"Unsupported authentication mode update from {current} to {wanted}")
        except EksApiError as error:
            return self._error(error)
        set_access_config(
            cluster, wanted, getattr(cluster, "access_config", {}).get("bootstrapClusterCreatorAdminPermissions")
        )
        update = {
            "id": str(uuid.uuid4()),
            "status": "Successful",
            "type": "AccessConfigUpdate",
            "params": [{"type": "AuthenticationMode", "value": wanted}],
            "createdAt": _now().timestamp(),
            "errors": [],
        }
        return self._json({"update": update})

    # -- tags: access entries are taggable resources too ------------------------------------------------------
    def _tagged_entry(self) -> AccessEntry | None:
        arn = self._path_labels().get("resourceArn", "")
        if ":access-entry/" not in arn:
            return None
        cluster = self.eks_backend.clusters.get(arn.split(":access-entry/", 1)[1].split("/", 1)[0])
        for entry in access_entries(cluster).values() if cluster is not None else ():
            if entry.access_entry_arn == arn:
                return entry
        raise _not_found(f"The specified resource could not be found: {arn}")

    def tag_resource(self) -> Any:
        try:
            entry = self._tagged_entry()
        except EksApiError as error:
            return self._error(error)
        if entry is None:
            return super().tag_resource()
        entry.tags.update(self._body().get("tags") or {})
        return self._json({})

    def untag_resource(self) -> Any:
        try:
            entry = self._tagged_entry()
        except EksApiError as error:
            return self._error(error)
        if entry is None:
            return super().untag_resource()
        for key in self.querystring.get("tagKeys") or []:
            entry.tags.pop(str(key), None)
        return self._json({})

    def list_tags_for_resource(self) -> Any:
        try:
            entry = self._tagged_entry()
        except EksApiError as error:
            return self._error(error)
        if entry is None:
            return super().list_tags_for_resource()
        return self._json({"tags": dict(entry.tags)})

    # -- access entries -------------------------------------------------------------------------------------
    def create_access_entry(self) -> Any:
        def handle(labels: dict[str, str]) -> dict[str, Any]:
            body = self._body()
            entry = create_access_entry(
                self.eks_backend,
                labels["name"],
                str(body.get("principalArn") or ""),
                kubernetes_groups=body.get("kubernetesGroups"),
                username=body.get("username"),
                entry_type=body.get("type"),
                tags=body.get("tags"),
            )
            return {"accessEntry": entry.to_json()}

        return self._run(handle)

    def describe_access_entry(self) -> Any:
        return self._run(lambda labels: describe_access_entry(self.eks_backend, labels, self._query))

    def list_access_entries(self) -> Any:
        return self._run(lambda labels: list_access_entries(self.eks_backend, labels, self._query))

    def update_access_entry(self) -> Any:
        def handle(labels: dict[str, str]) -> dict[str, Any]:
            entry = _entry(_api_cluster(self.eks_backend, labels["name"]), labels["principalArn"])
            body = self._body()
            groups, username = body.get("kubernetesGroups"), body.get("username")
            if entry.type in NODE_TYPES and (groups is not None or username is not None):
                raise _invalid_parameter(
                    f"Access entries of type {entry.type} cannot update kubernetesGroups or username."
                )
            if groups is not None:
                entry.kubernetes_groups = _validate_groups(groups)
            if username is not None:
                entry.username = str(username)
            entry.modified_at = _now()
            return {"accessEntry": entry.to_json()}

        return self._run(handle)

    def delete_access_entry(self) -> Any:
        def handle(labels: dict[str, str]) -> dict[str, Any]:
            cluster = _api_cluster(self.eks_backend, labels["name"])
            _entry(cluster, labels["principalArn"])
            del access_entries(cluster)[labels["principalArn"]]
            return {}

        return self._run(handle)

    def associate_access_policy(self) -> Any:
        def handle(labels: dict[str, str]) -> dict[str, Any]:
            body = self._body()
            associated = associate_access_policy(
                self.eks_backend,
                labels["name"],
                labels["principalArn"],
                str(body.get("policyArn") or ""),
                body.get("accessScope"),
            )
            return {
                "clusterName": labels["name"],
                "principalArn": labels["principalArn"],
                "associatedAccessPolicy": associated.to_json(),
            }

        return self._run(handle)

    def disassociate_access_policy(self) -> Any:
        def handle(labels: dict[str, str]) -> dict[str, Any]:
            entry = _entry(_api_cluster(self.eks_backend, labels["name"]), labels["principalArn"])
            if labels["policyArn"] not in entry.policies:
                raise _not_found(f"The policy {labels['policyArn']} is not associated with this access entry.")
            del entry.policies[labels["policyArn"]]
            return {}

        return self._run(handle)

    def list_associated_access_policies(self) -> Any:
        return self._run(lambda labels: list_associated_access_policies(self.eks_backend, labels, self._query))

    def list_access_policies(self) -> Any:
        def handle(labels: dict[str, str]) -> dict[str, Any]:
            policies = [{"name": n, "arn": policy_arn(self.eks_backend.partition, n)} for n in ACCESS_POLICY_NAMES]
            page, token = _page(policies, self._query("maxResults"), self._query("nextToken"))
            return {"accessPolicies": page, "nextToken": token}

        return self._run(handle)


_ROUTES = {
    # Most specific first; ARN labels use `.+` because the server hands us `%2F` already decoded.
    "{0}/clusters/(?P<name>[^/]+)/access-entries/(?P<principalArn>.+)/access-policies/(?P<policyArn>.+)$": None,
    "{0}/clusters/(?P<name>[^/]+)/access-entries/(?P<principalArn>.+)/access-policies$": None,
    "{0}/clusters/(?P<name>[^/]+)/access-entries/(?P<principalArn>.+)$": None,
    "{0}/clusters/(?P<name>[^/]+)/access-entries$": None,
    "{0}/access-policies$": None,
}


def install() -> None:
    """Route moto's EKS paths (old and new) to SandboxEKSResponse. Must run before the first EKS request
    creates moto's Flask app for EKS; idempotent."""
    paths = moto.eks.urls.url_paths
    new_paths = {route: SandboxEKSResponse.dispatch for route in _ROUTES}
    for route in list(paths):
        if route not in new_paths:
            new_paths[route] = SandboxEKSResponse.dispatch
    paths.clear()
    paths.update(new_paths)


def backend(account: str, region: str) -> EKSBackend:
    return eks_backends[account][region]
