"""Just-in-time EKS access through access entries: grant and revoke, idempotent and crash-safe.

The record of what the connector granted lives on the access entry itself, as tags, so it survives
restarts and is shared by every replica:
  access-connector/managed-by = access-connector    the connector created this entry (it may delete it)
  access-connector/grant/<grant key> = "exp=<epoch|never> <Policy>=cluster <Policy>=ns:a+b"
                                                    one tag per live grant: what it granted, until when
  access-connector/policy/<Policy> = owned          the connector created this policy association
An association is only ever changed if the connector owns it; its scope is the union of the live grants
that use it. Ownership tags are written before the association is made, so a crash between two calls can
never leave access the connector does not know about. Revoke recomputes each owned association from the
grants that remain, removes this grant's tag, and deletes the entry only if the connector created it and
no live grant remains.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connector.aws.errors import error_code
from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations import validation

MANAGED_BY_KEY = "access-connector/managed-by"
MANAGED_BY_VALUE = "access-connector"
GRANT_PREFIX = "access-connector/grant/"
POLICY_PREFIX = "access-connector/policy/"
POLICY_OWNED = "owned"
DEFAULT_USERNAME = "apono:{{SessionName}}"  # per the product docs (seed 001)
POLICY_ARN = re.compile(r"^arn:(aws|aws-us-gov|aws-cn):eks::aws:cluster-access-policy/([A-Za-z0-9]{1,100})$")
POLICY_NAME = re.compile(r"^[A-Za-z0-9]{1,100}$")
PRINCIPAL_ARN = re.compile(r"^arn:(aws|aws-us-gov|aws-cn):iam::(\d{12}):(role|user)/[\w+=,.@/-]{1,512}$")
ASSUMED_ROLE_ARN = re.compile(r"^arn:(aws|aws-us-gov|aws-cn):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$")
TAG_VALUE_MAX = 256
MAX_TAGS = 50  # per AWS resource; every live grant on an entry costs one
CLUSTER_ADMIN_POLICIES = frozenset({"AmazonEKSClusterAdminPolicy"})

Scope = tuple[str, ...] | None  # None = cluster-wide; a tuple = those namespaces


class EksTarget(BaseModel):
    """The `target` of an EKS access-entry grant or revoke job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource_type: Literal["eks_cluster"] = "eks_cluster"
    account_id: str = Field(pattern=r"^\d{12}$")
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    cluster: str
    access_policies: tuple[str, ...] = Field(min_length=1, max_length=10)
    scope: Literal["cluster", "namespace"]
    namespaces: tuple[str, ...] = ()
    username: str = Field(default=DEFAULT_USERNAME, min_length=1, max_length=256)
    kubernetes_groups: tuple[str, ...] = ()

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:
        if not CLUSTER_NAME.match(value):
            raise ValueError("must be an EKS cluster name (letters, digits, - and _, up to 100)")
        return value

    @field_validator("access_policies")
    @classmethod
    def _policies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for policy in value:
            if POLICY_NAME.match(policy):
                policy = f"arn:aws:eks::aws:cluster-access-policy/{policy}"
            if not POLICY_ARN.match(policy):
                raise ValueError(
                    f"{policy[:120]!r} is not an EKS access policy: use arn:aws:eks::aws:cluster-access-policy/<Name>"
                )
            out.append(policy)
        return tuple(dict.fromkeys(out))

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ns in value:
            if not NAMESPACE.match(ns):
                raise ValueError(f"{ns[:80]!r} is not a Kubernetes namespace name (DNS-1123 label)")
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _scope(self) -> EksTarget:
        if self.scope == "namespace" and not self.namespaces:
            raise ValueError("scope 'namespace' needs at least one entry in namespaces")
        if self.scope == "cluster" and self.namespaces:
            raise ValueError("scope 'cluster' takes no namespaces; use scope 'namespace' to limit it")
        return self

    @property
    def grant_scope(self) -> Scope:
        return None if self.scope == "cluster" else self.namespaces

    @property
    def policy_names(self) -> tuple[str, ...]:
        return tuple(policy_name(p) for p in self.access_policies)


def parse_target(raw: Mapping[str, Any]) -> EksTarget:
    return validation.parse_target(EksTarget, raw)


def validate_principal(principal: str) -> str:
    if ASSUMED_ROLE_ARN.match(principal):
        m = ASSUMED_ROLE_ARN.match(principal)
        assert m is not None
        raise InvalidJob(
            f"principal {principal[:200]!r} is an assumed-role session ARN; EKS access entries take the IAM role "
            f"ARN instead: arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}"
        )
    if not PRINCIPAL_ARN.match(principal):
        raise InvalidJob(f"principal must be an IAM role (or user) ARN, got {principal[:200]!r}")
    return principal


def policy_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def grant_tag_key(grant_id: str) -> str:
    """Deterministic tag key for a grant id (tag keys: 128 chars of letters, digits, space, _.:/=+-@)."""
    safe = re.sub(r"[^A-Za-z0-9_.:/=+@-]", "-", grant_id)
    if safe != grant_id or len(grant_id) > 96:
        safe = "h-" + hashlib.sha256(grant_id.encode()).hexdigest()[:40]
    return GRANT_PREFIX + safe


def encode_grant(expires_at: datetime | None, policies: Iterable[str], scope: Scope) -> str:
    scope_text = "cluster" if scope is None else "ns:" + "+".join(scope)
    value = " ".join(
        [f"exp={int(expires_at.timestamp()) if expires_at else 'never'}"] + [f"{p}={scope_text}" for p in policies]
    )
    if len(value) > TAG_VALUE_MAX:
        raise InvalidJob(
            f"this grant names too many namespaces to record on the access entry ({len(value)} > {TAG_VALUE_MAX} "
            "characters); split it into several grants or use fewer namespaces"
        )
    return value


@dataclass
class GrantRecord:
    expires_epoch: int | None
    scopes: dict[str, Scope] = field(default_factory=dict)  # policy name -> scope


def decode_grant(value: str) -> GrantRecord:
    record = GrantRecord(expires_epoch=None)
    for part in value.split():
        key, _, raw = part.partition("=")
        if key == "exp":
            record.expires_epoch = int(raw) if raw.isdigit() else None
        elif raw == "cluster":
            record.scopes[key] = None
        elif raw.startswith("ns:"):
            record.scopes[key] = tuple(sorted(n for n in raw[3:].split("+") if n))
    return record


def union_scope(scopes: Iterable[Scope]) -> Scope | Literal[False]:
    """The scope that covers all `scopes`: None (cluster) if any is cluster-wide; False if there are none."""
    result: set[str] = set()
    seen = False
    for scope in scopes:
        seen = True
        if scope is None:
            return None
        result.update(scope)
    return tuple(sorted(result)) if seen else False


def access_scope(scope: Scope) -> dict[str, Any]:
    return {"type": "cluster"} if scope is None else {"type": "namespace", "namespaces": list(scope)}


def scope_of(raw: Mapping[str, Any]) -> Scope:
    return None if raw.get("type") == "cluster" else tuple(sorted(raw.get("namespaces", [])))


def covers(have: Scope, want: Scope) -> bool:
    if have is None:
        return True
    return want is not None and set(want) <= set(have)


class CallLog:
    """Makes (or, in a dry run, only records) the mutating calls, so a result lists exactly what was done."""

    def __init__(self, client: Any, dry_run: bool) -> None:
        self.client = client
        self.dry_run = dry_run
        self.calls: list[dict[str, Any]] = []

    def __call__(self, operation: str, *, ok_codes: tuple[str, ...] = (), **params: Any) -> Any:
        self.calls.append({"operation": operation, "params": params})
        if self.dry_run:
            return None
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            if error_code(exc) in ok_codes:
                self.calls[-1]["outcome"] = error_code(exc)
                return None
            raise


def _not_found(exc: ClientError) -> bool:
    return error_code(exc) == "ResourceNotFoundException"


def describe_entry(client: Any, cluster: str, principal: str) -> dict[str, Any] | None:
    try:
        return dict(client.describe_access_entry(clusterName=cluster, principalArn=principal)["accessEntry"])
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise


def associations(client: Any, cluster: str, principal: str) -> dict[str, Scope]:
    found: dict[str, Scope] = {}
    paginator = client.get_paginator("list_associated_access_policies")
    for page in paginator.paginate(clusterName=cluster, principalArn=principal):
        for assoc in page.get("associatedAccessPolicies", []):
            found[policy_name(assoc["policyArn"])] = scope_of(assoc.get("accessScope", {}))
    return found


def require_access_entries(client: Any, cluster: str) -> dict[str, Any]:
    try:
        info = client.describe_cluster(name=cluster)["cluster"]
    except ClientError as exc:
        if _not_found(exc):
            raise ConnectorError(ErrorCode.NOT_FOUND, f"EKS cluster {cluster!r} not found", retryable=False) from None
        raise
    mode = info.get("accessConfig", {}).get("authenticationMode", "CONFIG_MAP")
    if mode not in ("API", "API_AND_CONFIG_MAP"):
        raise ConnectorError(
            ErrorCode.PRECONDITION_FAILED,
            f"EKS cluster {cluster!r} uses authentication mode {mode}, which has no access entries. Enable them with: "
            f"aws eks update-cluster-config --name {cluster} --access-config authenticationMode=API_AND_CONFIG_MAP "
            "(or use the aws-auth integration for this cluster)",
            retryable=False,
        )
    return dict(info)


def live_grants(tags: Mapping[str, str], exclude: str = "") -> dict[str, GrantRecord]:
    return {k: decode_grant(v) for k, v in tags.items() if k.startswith(GRANT_PREFIX) and k != exclude}


def grant(
    client: Any,
    *,
    grant_id: str,
    principal: str,
    target: EksTarget,
    expires_at: datetime | None,
    dry_run: bool,
) -> dict[str, Any]:
    validate_principal(principal)
    require_access_entries(client, target.cluster)
    gkey = grant_tag_key(grant_id)
    gvalue = encode_grant(expires_at, target.policy_names, target.grant_scope)
    calls = CallLog(client, dry_run)
    entry = describe_entry(client, target.cluster, principal)
    created = False
    if entry is None:
        tags = {MANAGED_BY_KEY: MANAGED_BY_VALUE, gkey: gvalue} | {
            POLICY_PREFIX + p: POLICY_OWNED for p in target.policy_names
        }
        params: dict[str, Any] = {
            "clusterName": target.cluster,
            "principalArn": principal,
            "username": target.username,
            "type": "STANDARD",
            "tags": tags,
            "clientRequestToken": hashlib.sha256(f"{grant_id}|{principal}".encode()).hexdigest()[:36],
        }
        if target.kubernetes_groups:
            params["kubernetesGroups"] = list(target.kubernetes_groups)
        result = calls("create_access_entry", ok_codes=("ResourceInUseException",), **params)
        created = result is not None or dry_run
        if dry_run:
            entry = {"tags": tags, "accessEntryArn": ""}
        elif result is not None and result.get("accessEntry"):
            entry = dict(result["accessEntry"])  # CreateAccessEntry answers with the entry: no need to read it back
        else:  # it was there already (a concurrent or repeated delivery): read what is there
            entry = describe_entry(client, target.cluster, principal)
        if entry is None:
            raise ConnectorError(ErrorCode.CONFLICT, "the access entry vanished right after it was created; retrying")
    if entry.get("type", "STANDARD") != "STANDARD":
        raise ConnectorError(
            ErrorCode.PRECONDITION_FAILED,
            f"the access entry for {principal} is of type {entry.get('type')}, which cannot carry access policies",
            retryable=False,
        )
    tags = dict(entry.get("tags") or {})
    existing = associations(client, target.cluster, principal) if not created else {}
    # Refuse before changing anything if an association we do not own would have to change.
    for name in target.policy_names:
        foreign = name in existing and tags.get(POLICY_PREFIX + name) != POLICY_OWNED
        if foreign and not covers(existing[name], target.grant_scope):
            raise ConnectorError(
                ErrorCode.CONFLICT,
                f"{principal} already has {name} on {target.cluster} with another scope, set outside the connector; "
                "the connector does not change associations it does not own. Remove it or grant within its scope.",
                retryable=False,
            )
    missing_tags = {gkey: gvalue} if tags.get(gkey) != gvalue else {}
    missing_tags |= {
        POLICY_PREFIX + n: POLICY_OWNED
        for n in target.policy_names
        if n not in existing and tags.get(POLICY_PREFIX + n) != POLICY_OWNED
    }
    if len(tags.keys() | missing_tags.keys()) > MAX_TAGS:
        live = sum(1 for k in tags if k.startswith(GRANT_PREFIX))
        raise ConnectorError(
            ErrorCode.PRECONDITION_FAILED,
            f"the access entry for {principal} on {target.cluster} would need {len(tags.keys() | missing_tags.keys())} "
            f"tags; AWS allows {MAX_TAGS} per resource, and it already has {len(tags)} ({live} live grants of the "
            "connector). Let earlier grants to this principal expire or be revoked, or grant to another role.",
            retryable=False,
        )
    if missing_tags:
        calls("tag_resource", resourceArn=entry["accessEntryArn"], tags=missing_tags)
        tags |= missing_tags
    grants = live_grants(tags)
    for policy in target.access_policies:
        name = policy_name(policy)
        if tags.get(POLICY_PREFIX + name) != POLICY_OWNED:
            continue  # a foreign association that already covers this grant
        desired = union_scope(g.scopes[name] for g in grants.values() if name in g.scopes)
        if desired is not False and existing.get(name, False) != desired:
            calls(
                "associate_access_policy",
                clusterName=target.cluster,
                principalArn=principal,
                policyArn=policy,
                accessScope=access_scope(desired),
            )
    return {
        "cluster": target.cluster,
        "account_id": target.account_id,
        "region": target.region,
        "principal": principal,
        "access_entry_arn": entry.get("accessEntryArn", ""),
        "entry_created": created,
        "policies": list(target.access_policies),
        "scope": access_scope(target.grant_scope),
        "dry_run": dry_run,
        "calls": calls.calls,
    }


def revoke(client: Any, *, grant_id: str, principal: str, target: EksTarget, dry_run: bool) -> dict[str, Any]:
    validate_principal(principal)
    calls = CallLog(client, dry_run)
    base = {"cluster": target.cluster, "account_id": target.account_id, "region": target.region, "principal": principal}
    try:
        entry = describe_entry(client, target.cluster, principal)
    except ClientError as exc:
        if error_code(exc) in ("ResourceNotFoundException", "InvalidRequestException"):
            entry = None
        else:
            raise
    if entry is None:
        return base | {"already_revoked": True, "entry_deleted": False, "dry_run": dry_run, "calls": []}
    tags = dict(entry.get("tags") or {})
    gkey = grant_tag_key(grant_id)
    mine = (
        decode_grant(tags[gkey])
        if gkey in tags
        else GrantRecord(None, dict.fromkeys(target.policy_names, target.grant_scope))
    )
    remaining = live_grants(tags, exclude=gkey)
    existing = associations(client, target.cluster, principal)
    policy_arns = {policy_name(p): p for p in target.access_policies}
    for name in sorted(mine.scopes):
        if tags.get(POLICY_PREFIX + name) != POLICY_OWNED:
            continue  # never touch an association the connector did not create
        arn = policy_arns.get(name, f"arn:aws:eks::aws:cluster-access-policy/{name}")
        desired = union_scope(g.scopes[name] for g in remaining.values() if name in g.scopes)
        if desired is False:
            if name in existing:
                calls(
                    "disassociate_access_policy",
                    ok_codes=("ResourceNotFoundException",),
                    clusterName=target.cluster,
                    principalArn=principal,
                    policyArn=arn,
                )
            calls("untag_resource", resourceArn=entry["accessEntryArn"], tagKeys=[POLICY_PREFIX + name])
        elif existing.get(name, False) != desired:
            calls(
                "associate_access_policy",
                clusterName=target.cluster,
                principalArn=principal,
                policyArn=arn,
                accessScope=access_scope(desired),
            )
    if gkey in tags:
        calls("untag_resource", resourceArn=entry["accessEntryArn"], tagKeys=[gkey])
    delete = tags.get(MANAGED_BY_KEY) == MANAGED_BY_VALUE and not remaining
    if delete:
        calls(
            "delete_access_entry",
            ok_codes=("ResourceNotFoundException",),
            clusterName=target.cluster,
            principalArn=principal,
        )
    return base | {
        "already_revoked": gkey not in tags,
        "entry_deleted": delete,
        "remaining_grants": len(remaining),
        "dry_run": dry_run,
        "calls": calls.calls,
    }
