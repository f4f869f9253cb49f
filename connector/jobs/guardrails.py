"""The customer's guardrail policy: the connector enforces it on every grant, whatever the control plane asks.

A YAML (or JSON) file owned by the customer, path from CONNECTOR_GUARDRAILS_FILE (the Helm chart mounts it
from a ConfigMap, CloudFormation writes it from a parameter). Validated at start-up: a bad file stops the
connector with a message naming the key. Without a file the DEFAULT policy applies (below); a file replaces
it. Every list is an allow-list of glob patterns; a list that is absent does not restrict. A refusal is a
non-retryable GUARDRAIL_DENIED result naming the rule.

    version: 1
    max_duration: 8h                 # every grant must expire within this (grants without expiry refused)
    accounts: ["111122223333"]       # target AWS accounts
    organizational_units: ["ou-ab12-*"]   # target account must sit under one of these OUs
    clusters: ["prod-*", "*/eu-west-1/*"] # cluster name, or account/region/cluster (in-cluster, or a host URL)
    access_policies: ["AmazonEKSViewPolicy", "AmazonEKSEditPolicy"]
    namespaces: ["team-*"]
    permission_sets: ["ReadOnly*"]
    kubernetes_roles: ["view", "edit"]
    kubernetes_groups: ["dev-*"]     # groups a grant may put someone in
    kubernetes_usernames: ["apono:*"]    # usernames a grant may map someone to
    resources: ["arn:aws:s3:::team-a-*"] # ARNs / ids a grant may name
    allow_cluster_admin: false       # cluster-admin level access is refused unless this is true

The policy judges the grant's Effect (connector.integrations.effect) — what the kind resolved the grant would
really give — never the job's raw target, and nothing in a job can loosen it: there is no job field, setting
or target key that the policy reads. On top of any policy, Kubernetes' reserved identities are always
refused: `system:` groups other than system:masters (which is cluster-admin level) and usernames under the
prefixes EKS reserves for itself.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connector.errors import GuardrailDenied
from connector.integrations.effect import Effect, Level

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MASTERS = "system:masters"
# Usernames EKS keeps for itself (access entries refuse them); mapping a person to one impersonates a component.
RESERVED_USERNAME_PREFIXES = ("system:", "eks:", "aws:", "amazon:", "iam:")
CLOCK_SKEW = timedelta(seconds=60)


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
    kubernetes_groups: tuple[str, ...] | None = None
    kubernetes_usernames: tuple[str, ...] | None = None
    resources: tuple[str, ...] | None = None
    allow_cluster_admin: bool = False
    source: str = Field(default="file", exclude=True)  # "default" when no file was given

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

    # -- the check ---------------------------------------------------------------------------------------
    def check(self, effect: Effect, now: datetime, *, changes_nothing: bool = False) -> None:
        """Refuse (GuardrailDenied naming the rule) a grant whose Effect the policy does not allow.
        `changes_nothing` is the kind's registration (a diagnostic kind that touches nothing has nothing to
        expire), never the Effect's level: a kind that under-reports a level cannot skip max_duration."""
        if not changes_nothing:
            self._check_duration(effect, now)
        self._reserved(effect)
        accounts = [a for a in {effect.account_id, effect.cluster.account_id if effect.cluster else ""} if a]
        self._allowed("accounts", accounts)
        if self.organizational_units is not None and effect.account_id:
            if effect.ou_path is None:
                raise GuardrailDenied(
                    "organizational_units",
                    f"this kind cannot tell which OUs account {effect.account_id} is under; with an "
                    "organizational_units rule its grants are refused",
                )
            if not any(_match(ou, self.organizational_units) for ou in effect.ou_path.get()):
                raise GuardrailDenied(
                    "organizational_units", f"account {effect.account_id} is not under an allowed organizational unit"
                )
        if effect.cluster is not None and self.clusters is not None:
            cluster = effect.cluster
            if not (_match(cluster.name, self.clusters) or _match(cluster.full, self.clusters)):
                raise GuardrailDenied("clusters", f"cluster {cluster.full} is not in the allowed clusters")
        if effect.scope == "cluster" and self.namespaces is not None:
            raise GuardrailDenied("namespaces", "cluster-wide scope is refused while namespaces are restricted")
        self._allowed("namespaces", effect.namespaces)
        self._allowed("access_policies", effect.access_policies)
        self._allowed("permission_sets", effect.permission_sets)
        self._allowed("kubernetes_roles", effect.kubernetes_roles)
        self._allowed("kubernetes_groups", effect.kubernetes_groups)
        self._allowed("kubernetes_usernames", effect.kubernetes_usernames)
        self._allowed("resources", effect.resources)
        self._admin(effect)

    def _check_duration(self, effect: Effect, now: datetime) -> None:
        limit = self.max_timedelta
        if limit is None:
            return
        if effect.expires_at is None:
            raise GuardrailDenied(
                "max_duration", f"grants must expire within {self.max_duration}; this one has no expiry"
            )
        if effect.expires_at - now > limit + CLOCK_SKEW:
            raise GuardrailDenied("max_duration", f"grant lasts longer than the allowed {self.max_duration}")

    @staticmethod
    def _reserved(effect: Effect) -> None:
        for group in effect.kubernetes_groups:
            if group.startswith("system:") and group != MASTERS:
                raise GuardrailDenied(
                    "reserved", f"Kubernetes group {group[:80]!r} is reserved for the cluster's own components"
                )
        for username in effect.kubernetes_usernames:
            if username.startswith(RESERVED_USERNAME_PREFIXES):
                raise GuardrailDenied(
                    "reserved",
                    f"username {username[:80]!r} is under a prefix Kubernetes and EKS reserve for themselves",
                )

    def _admin(self, effect: Effect) -> None:
        if self.allow_cluster_admin:
            return
        if effect.level is Level.ADMIN:
            why = "; ".join(effect.reasons) or f"this {effect.kind} grant is cluster-admin level"
            raise GuardrailDenied("allow_cluster_admin", f"{why}; set allow_cluster_admin: true to permit it")
        for rule, name in effect.unresolved:
            patterns: tuple[str, ...] | None = getattr(self, rule)
            if patterns is None or not _match(name, patterns):
                raise GuardrailDenied(
                    "allow_cluster_admin",
                    f"{name[:80]!r} ({rule}) gives what the connector cannot see from where it grants, so it counts "
                    f"as cluster-admin level; name it in {rule} to allow it, or set allow_cluster_admin: true",
                )

    def _allowed(self, rule: str, values: Iterable[str]) -> None:
        patterns: tuple[str, ...] | None = getattr(self, rule)
        if patterns is None:
            return
        for value in values:
            if not _match(value, patterns):
                raise GuardrailDenied(rule, f"{value[:200]!r} is not allowed (allowed: {', '.join(patterns)})")


def _match(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


# Without a file: cluster-admin level refused, every grant must expire, and within 12 hours.
DEFAULT = Guardrails(max_duration="12h", allow_cluster_admin=False, source="default")


def load_guardrails(path: Path | None) -> Guardrails:
    """The customer's policy from `path`, or the default policy when there is none."""
    if path is None:
        return DEFAULT
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise GuardrailError(f"CONNECTOR_GUARDRAILS_FILE {path}: cannot read it: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise GuardrailError(f"CONNECTOR_GUARDRAILS_FILE {path}: must be a mapping of rules")
    if "source" in data:
        raise GuardrailError(f"CONNECTOR_GUARDRAILS_FILE {path}: source: unknown rule")
    try:
        return Guardrails.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ())) or 'file'}: "
            + ("unknown rule" if e.get("type") == "extra_forbidden" else str(e.get("msg")))
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise GuardrailError(f"CONNECTOR_GUARDRAILS_FILE {path}: " + "; ".join(problems)) from None
