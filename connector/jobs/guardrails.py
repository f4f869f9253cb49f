"""The customer's guardrail policy: the connector enforces it on every grant, whatever the control plane asks.

A YAML (or JSON) file owned by the customer, path from CONNECTOR_GUARDRAILS_FILE (the Helm chart mounts it
from a ConfigMap, CloudFormation writes it from a parameter). Validated at start-up: a bad file stops the
connector with a message naming the key. Every list is an allow-list of glob patterns; a list that is
absent does not restrict. A refusal is a non-retryable GUARDRAIL_DENIED result naming the rule.

    version: 1
    max_duration: 8h                 # every grant must expire within this (grants without expiry refused)
    accounts: ["111122223333"]       # target AWS accounts
    organizational_units: ["ou-ab12-*"]   # target account must sit under one of these OUs
    clusters: ["prod-*", "*/eu-west-1/*"] # cluster name, or account/region/cluster
    access_policies: ["AmazonEKSViewPolicy", "AmazonEKSEditPolicy"]
    namespaces: ["team-*"]
    permission_sets: ["ReadOnly*"]
    kubernetes_roles: ["view", "edit"]
    allow_cluster_admin: false       # cluster-admin level access is refused unless this is true
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connector.errors import GuardrailDenied

CLUSTER_ADMIN = {
    "access_policies": {"AmazonEKSClusterAdminPolicy", "AmazonEKSAdminPolicy"},
    "kubernetes_roles": {"cluster-admin", "admin"},
    "permission_sets": {"AdministratorAccess"},
}
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class GuardrailError(Exception):
    """The guardrail file is invalid (raised at start-up)."""


class Guardrails(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=1, ge=1, le=1)
    max_duration: str | None = None
    accounts: tuple[str, ...] | None = None
    organizational_units: tuple[str, ...] | None = None
    clusters: tuple[str, ...] | None = None
    access_policies: tuple[str, ...] | None = None
    namespaces: tuple[str, ...] | None = None
    permission_sets: tuple[str, ...] | None = None
    kubernetes_roles: tuple[str, ...] | None = None
    allow_cluster_admin: bool = False

    @field_validator("max_duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and not _DURATION.match(value):
            raise ValueError("must be a duration such as 30m, 8h or 7d")
        return value

    @property
    def max_timedelta(self) -> timedelta | None:
        if self.max_duration is None:
            return None
        m = _DURATION.match(self.max_duration)
        assert m is not None
        return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])

    # -- checks ------------------------------------------------------------------------------------------
    def check_grant(
        self,
        target: Mapping[str, Any],
        expires_at: datetime | None,
        now: datetime,
        account_ous: Callable[[str], Iterable[str]] | None = None,
    ) -> None:
        limit = self.max_timedelta
        if limit is not None:
            if expires_at is None:
                raise GuardrailDenied(
                    "max_duration", f"grants must expire within {self.max_duration}; this one has no expiry"
                )
            if expires_at - now > limit + timedelta(seconds=60):
                raise GuardrailDenied("max_duration", f"grant lasts longer than the allowed {self.max_duration}")
        account = str(target.get("account_id", ""))
        if account:
            self._allowed("accounts", [account])
            if self.organizational_units is not None:
                ous = list(account_ous(account)) if account_ous else []
                if not any(_match(ou, self.organizational_units) for ou in ous):
                    raise GuardrailDenied(
                        "organizational_units", f"account {account} is not under an allowed organizational unit"
                    )
        if cluster := target.get("cluster"):
            full = f"{account}/{target.get('region', '')}/{cluster}"
            if self.clusters is not None and not (_match(str(cluster), self.clusters) or _match(full, self.clusters)):
                raise GuardrailDenied("clusters", f"cluster {full} is not in the allowed clusters")
        policies = [str(p).rsplit("/", 1)[-1] for p in target.get("access_policies", []) or []]
        self._allowed("access_policies", policies)
        self._allowed("namespaces", [str(n) for n in target.get("namespaces", []) or []])
        if ps := target.get("permission_set"):
            self._allowed("permission_sets", [str(ps).rsplit("/", 1)[-1]])
        # "role" is a Kubernetes role, except on IAM resource-access targets where it names the IAM role.
        k8s_role = target.get("role") if target.get("resource_type") != "iam_resource_access" else None
        if k8s_role:
            self._allowed("kubernetes_roles", [str(k8s_role)])
        if not self.allow_cluster_admin:
            for key, names in (
                ("access_policies", policies),
                ("kubernetes_roles", [str(k8s_role)] if k8s_role else []),
                (
                    "permission_sets",
                    [str(target["permission_set"]).rsplit("/", 1)[-1]] if target.get("permission_set") else [],
                ),
            ):
                admin = sorted(set(names) & CLUSTER_ADMIN[key])
                if admin:
                    raise GuardrailDenied(
                        "allow_cluster_admin",
                        f"{', '.join(admin)} is cluster-admin level access; set allow_cluster_admin: true to permit it",
                    )
        if target.get("scope") == "cluster" and self.namespaces is not None:
            raise GuardrailDenied("namespaces", "cluster-wide scope is refused while namespaces are restricted")

    def _allowed(self, rule: str, values: Iterable[str]) -> None:
        patterns: tuple[str, ...] | None = getattr(self, rule)
        if patterns is None:
            return
        for value in values:
            if not _match(value, patterns):
                raise GuardrailDenied(rule, f"{value[:200]!r} is not allowed (allowed: {', '.join(patterns)})")


def _match(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def load_guardrails(path: Path | None) -> Guardrails | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise GuardrailError(f"CONNECTOR_GUARDRAILS_FILE {path}: cannot read it: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise GuardrailError(f"CONNECTOR_GUARDRAILS_FILE {path}: must be a mapping of rules")
    try:
        return Guardrails.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ())) or 'file'}: "
            + ("unknown rule" if e.get("type") == "extra_forbidden" else str(e.get("msg")))
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise GuardrailError(f"CONNECTOR_GUARDRAILS_FILE {path}: " + "; ".join(problems)) from None
