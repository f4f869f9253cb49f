"""The Effect: what a grant would really give, worked out before anything is changed.

Every Provisioner describes a grant as one Effect (`Provisioner.describe`), and the guardrails judge only the
Effect, never the raw target: a field a job could fill differently (a decoy `cluster`, a permission set given
by ARN instead of by name, a ClusterRole with `*` on `*` under a harmless name) cannot change the verdict,
because the Effect holds what the connector resolved — the cluster the grant really lands on, the permission
set's name and policies, the role's rules — and a new kind cannot forget a field the guardrails look at.

Levels, lowest to highest: none (touches nothing), read, write, admin (cluster-admin / administrator level:
full control of its scope, or the power to give oneself more), and custom (the customer's own Lambda function
decides; the connector cannot see inside it). Unknown or undecodable things count as admin (fail closed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal


class Level(StrEnum):
    NONE = "none"
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    CUSTOM = "custom"


_RANK = {Level.NONE: 0, Level.READ: 1, Level.WRITE: 2, Level.CUSTOM: 2, Level.ADMIN: 3}


def highest(levels: Iterable[Level]) -> Level:
    return max(levels, key=_RANK.__getitem__, default=Level.NONE)


@dataclass(frozen=True)
class ClusterRef:
    """A Kubernetes cluster as the grant will really reach it. `name` is the EKS cluster name, or `in-cluster`
    (the cluster the connector runs in), or the API server URL of an explicit host connection."""

    name: str
    account_id: str = ""
    region: str = ""

    @property
    def full(self) -> str:
        return f"{self.account_id}/{self.region}/{self.name}"


IN_CLUSTER = "in-cluster"
Scope = Literal["none", "cluster", "namespaces"]


class Lazy:
    """A value the guardrails may need but that costs AWS calls (an account's OU path): resolved on first
    use only, once, so a policy without an OU rule does not pay for it."""

    def __init__(self, resolve: Callable[[], tuple[str, ...]]) -> None:
        self._resolve = resolve
        self._value: tuple[str, ...] | None = None
        self._lock = threading.Lock()

    def get(self) -> tuple[str, ...]:
        with self._lock:
            if self._value is None:
                self._value = tuple(self._resolve())
            return self._value


@dataclass(frozen=True)
class Effect:
    """One grant's real effect. Empty fields do not apply to this kind."""

    kind: str  # the target resource type, e.g. eks_cluster
    principal: str  # who receives the access, as the target system names them
    level: Level
    expires_at: datetime | None
    reasons: tuple[str, ...] = ()  # why this level (shown when a guardrail refuses it)
    account_id: str = ""  # the AWS account the access lands in
    ou_path: Lazy | None = None  # OU ids above that account, when the kind can tell
    region: str = ""
    cluster: ClusterRef | None = None
    scope: Scope = "none"  # Kubernetes reach: cluster-wide, or only `namespaces`
    namespaces: tuple[str, ...] = ()
    access_policies: tuple[str, ...] = ()  # EKS access policy names
    permission_sets: tuple[str, ...] = ()  # Identity Center permission sets, by their resolved name
    kubernetes_roles: tuple[str, ...] = ()  # RBAC roles bound (by name)
    kubernetes_groups: tuple[str, ...] = ()  # groups the principal joins
    kubernetes_usernames: tuple[str, ...] = ()  # usernames the principal acts as
    # What the connector cannot see into from where it grants, as (guardrail rule, name): groups or a username
    # whose RBAC bindings it cannot read (an access entry is made through the EKS API, not the cluster's), a
    # permission set whose customer-managed policies live in each account. Each counts as admin unless the
    # customer's policy names it in that rule's allow-list.
    unresolved: tuple[tuple[str, str], ...] = ()
    resources: tuple[str, ...] = ()  # ARNs or ids, wildcards as given
    permission: str = ""  # a Lambda custom permission id
    extra: dict[str, str] = field(default_factory=dict)  # kind-specific facts for the audit line

    def summary(self) -> dict[str, object]:
        """The Effect as the audit line and dry runs show it (no secrets live here)."""
        out: dict[str, object] = {"kind": self.kind, "level": str(self.level), "principal": self.principal}
        for name in ("account_id", "region", "access_policies", "permission_sets", "kubernetes_roles"):
            if value := getattr(self, name):
                out[name] = list(value) if isinstance(value, tuple) else value
        for name in ("kubernetes_groups", "kubernetes_usernames", "namespaces"):
            if value := getattr(self, name):
                out[name] = list(value)
        if self.unresolved:
            out["unresolved"] = [f"{rule}:{name}" for rule, name in self.unresolved]
        if self.cluster is not None:
            out["cluster"] = self.cluster.full
        if self.scope != "none":
            out["scope"] = self.scope
        if self.resources:
            out["resources"] = len(self.resources)
        if self.permission:
            out["permission"] = self.permission
        if self.reasons:
            out["reasons"] = list(self.reasons)
        if self.expires_at is not None:
            out["expires_at"] = self.expires_at.isoformat()
        return out
