"""The EKS access-entry kind: Provisioner and ExpiryScanner, under the aws_organization integration.

Effect: the access policies by name and the level they amount to (an access policy the connector does not
know counts as admin), the cluster as addressed in the member account and region, cluster-wide or the
namespaces, and the Kubernetes identity the entry maps to. Groups and a username of the customer's choosing
are RBAC subjects whose bindings the connector cannot read from the EKS API: they are `unresolved`, and the
guardrails count them as admin unless the customer's policy names them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from connector.errors import ConnectorError, InvalidJob
from connector.integrations import ledger
from connector.integrations.aws_organization import audit_trail
from connector.integrations.aws_organization.integration import AwsOrganizationIntegration
from connector.integrations.base import GrantRequest, InventoryItem, JobContext, RevokeRequest
from connector.integrations.capabilities import AuditSubject, AuditSummary, DriftScope, ExpiredGrant, ExpiryScan
from connector.integrations.effect import ClusterRef, Effect, Lazy, Level, highest
from connector.integrations.eks_access import drift, entries
from connector.integrations.eks_access.target import (
    DEFAULT_USERNAME,
    POLICY_NAME,
    EksTarget,
    parse_target,
    validate_principal,
)
from connector.logging import get_logger

log = get_logger("connector.integrations.eks_access")
RESOURCE_TYPE = "eks_cluster"

# What each AWS-managed access policy amounts to (seed 003; ListAccessPolicies is authoritative for names).
POLICY_LEVELS = {
    "AmazonEKSViewPolicy": Level.READ,
    "AmazonEKSAdminViewPolicy": Level.READ,  # view everything, secrets included, change nothing
    "AmazonEKSEditPolicy": Level.WRITE,
    "AmazonEKSAdminPolicy": Level.ADMIN,  # namespace admin: can grant itself more with RBAC
    "AmazonEKSClusterAdminPolicy": Level.ADMIN,
}
MASTERS = "system:masters"  # bypasses RBAC entirely


def policy_levels(names: Iterable[str]) -> tuple[Level, list[str]]:
    levels, reasons = [], []
    for name in names:
        level = POLICY_LEVELS.get(name)
        if level is None:
            level = Level.ADMIN
            reasons.append(f"access policy {name} is not one the connector knows: counted as admin")
        elif level is Level.ADMIN:
            reasons.append(f"{name} is cluster-admin level")
        levels.append(level)
    return highest(levels), reasons


class EksAccess:
    def __init__(self, integration: AwsOrganizationIntegration) -> None:
        self.integration = integration

    def _client(self, target: EksTarget) -> Any:
        return self.integration.client(target.account_id, "eks", target.region)

    def _target(self, raw: Mapping[str, Any], principal: str) -> EksTarget:
        """The job's target, checked against the organisation: the member role that makes the calls is in the
        organisation's partition, so a cluster in another partition's region cannot be reached with it."""
        target = parse_target(raw)
        if target.partition != self.integration.partition:
            raise InvalidJob(
                f"target.region {target.region} is in partition {target.partition}, but this organisation's roles "
                f"are in {self.integration.partition}; use an integration of that partition"
            )
        validate_principal(principal, target.partition)
        return target

    def _check_swept(self, target: EksTarget) -> None:
        """A grant goes only where the expiry loop's full scan looks (after a restart it knows nothing else):
        the integration's accounts and regions."""
        config = self.integration.config
        if target.account_id in config.excluded_account_ids:
            raise InvalidJob(f"target.account_id {target.account_id} is excluded from this integration")
        if config.regions != "enabled" and target.region not in (config.regions or (config.region,)):
            raise InvalidJob(
                f"target.region {target.region} is not one of this integration's regions "
                f"({', '.join(config.regions or (config.region,))}), where expired grants are looked for; add it "
                "to the integration's regions (or set regions: enabled)"
            )

    # -- Provisioner -------------------------------------------------------------------------------------
    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect:
        target = self._target(request.target, request.principal)
        self._check_swept(target)
        # The record must fit in one tag: refused here, before the guardrails or any AWS call.
        entries.encode_grant(request.expires_at, target.policy_names, target.grant_scope)
        level, reasons = policy_levels(target.policy_names)
        if MASTERS in target.kubernetes_groups:
            level = Level.ADMIN
            reasons.append(f"Kubernetes group {MASTERS} bypasses RBAC")
        unresolved = [("kubernetes_groups", g) for g in target.kubernetes_groups if g != MASTERS]
        if target.username != DEFAULT_USERNAME:
            unresolved.append(("kubernetes_usernames", target.username))
        account = target.account_id
        return Effect(
            kind=RESOURCE_TYPE,
            principal=request.principal,
            level=level,
            expires_at=request.expires_at,
            reasons=tuple(reasons),
            account_id=account,
            ou_path=Lazy(lambda: self.integration.ou_path(account)),
            region=target.region,
            cluster=ClusterRef(target.cluster, account, target.region),
            scope="cluster" if target.scope == "cluster" else "namespaces",
            namespaces=target.namespaces,
            access_policies=target.policy_names,
            kubernetes_groups=target.kubernetes_groups,
            kubernetes_usernames=(target.username,),
            unresolved=tuple(unresolved),
        )

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]:
        target = parse_target(request.target)
        self.integration.note_place("eks", target.account_id, target.region, target.cluster)
        return entries.grant(
            self._client(target),
            grant_id=request.grant_id,
            principal=request.principal,
            target=target,
            expires_at=request.expires_at,
            dry_run=request.dry_run,
        )

    # -- Auditable (enable_audit) ----------------------------------------------------------------------------
    def audit_subject(self, request: GrantRequest, effect: Effect) -> AuditSubject | None:
        """The access entry's activity in the cluster's audit log, by its username and the principal."""
        if not self.integration.config.enable_audit or request.dry_run or effect.cluster is None:
            return None
        return AuditSubject(
            source="eks_audit_log",
            account_id=effect.account_id,
            principal=effect.principal,
            regions=(effect.region,),
            cluster=effect.cluster.name,
            username=effect.kubernetes_usernames[0] if effect.kubernetes_usernames else DEFAULT_USERNAME,
        )

    def audit(self, subject: AuditSubject, start: datetime, end: datetime) -> AuditSummary:
        logs = self.integration.client(subject.account_id, "logs", subject.regions[0])
        return audit_trail.eks_audit_summary(logs, subject.cluster, subject.principal, subject.username, start, end)

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        target = self._target(request.target, request.principal)
        return entries.revoke(
            self._client(target),
            grant_id=request.grant_id,
            principal=request.principal,
            target=target,
            dry_run=request.dry_run,
        )

    # -- ExpiryScanner -----------------------------------------------------------------------------------
    def expired(self, scan: ExpiryScan) -> Iterator[ExpiredGrant]:
        """The clusters this process granted on, every sweep; on a full scan every cluster of every active
        account in the integration's regions (with `regions: enabled`, each account's enabled regions). A
        failure in one place is logged and the others go on."""
        integration = self.integration
        known: dict[tuple[str, str], set[str]] = {}
        for account, region, cluster in integration.places("eks"):
            known.setdefault((account, region), set()).add(cluster)
        accounts = set(integration.active_accounts()) if scan.full else set()
        scopes = set(known)
        for account in sorted(accounts):
            scan.check()
            try:
                scopes |= {(account, region) for region in self._regions(account)}
            except (ClientError, BotoCoreError, ConnectorError) as exc:
                scan.problem(f"eks {account}/enabled regions", str(exc)[:300])
        for account, region in sorted(scopes):
            scan.check()
            clusters = None if account in accounts else known.get((account, region))
            try:
                found = list(self._expired_in(account, region, clusters, scan.now))
            except (ClientError, BotoCoreError, ConnectorError) as exc:
                scan.problem(f"eks {account}/{region}", str(exc)[:300])
                continue
            yield from found

    def _regions(self, account: str) -> tuple[str, ...]:
        config = self.integration.config
        if config.regions != "enabled":
            return config.regions or (config.region,)
        ec2 = self.integration.client(account, "ec2", config.region)
        return tuple(sorted(r["RegionName"] for r in ec2.describe_regions(AllRegions=False).get("Regions", [])))

    def _expired_in(
        self, account: str, region: str, clusters: Iterable[str] | None, now: int
    ) -> Iterator[ExpiredGrant]:
        eks = self.integration.client(account, "eks", region)
        if clusters is None:
            clusters = [n for page in eks.get_paginator("list_clusters").paginate() for n in page.get("clusters", [])]
        for cluster in sorted(clusters):
            try:
                principals = [
                    p
                    for page in eks.get_paginator("list_access_entries").paginate(clusterName=cluster)
                    for p in page.get("accessEntries", [])
                ]
            except ClientError as exc:  # CONFIG_MAP clusters have no access entries; deleted clusters none at all
                log.debug("expiry_cluster_skipped", cluster=cluster, error=str(exc)[:200])
                continue
            for principal in principals:
                entry = entries.describe_entry(eks, cluster, principal)
                for key, record in entries.live_grants((entry or {}).get("tags") or {}).items():
                    if not record.expired(now):
                        continue
                    yield ExpiredGrant(
                        place=f"{account}/{region}/{cluster}/{principal}",
                        grant_key=key,
                        expires_epoch=record.expires_epoch,
                        problem=record.problem,
                        request=RevokeRequest(
                            grant_id=ledger.key_suffix(key),
                            principal=principal,
                            target={
                                "resource_type": RESOURCE_TYPE,
                                "account_id": account,
                                "region": region,
                                "cluster": cluster,
                                # revoke recomputes from the record; these only make the target well-formed
                                "access_policies": _well_formed(entries.scopes_of(record)),
                                "scope": "cluster",
                            },
                        ),
                    )

    # -- DriftReporter -----------------------------------------------------------------------------------
    def drift(self, scope: DriftScope) -> Iterator[InventoryItem]:
        """Records against associations on every access entry in the account's regions (reads only)."""
        for region in scope.regions:
            yield from drift.drift_in(self.integration.client(scope.account_id, "eks", region), scope, region)


def _well_formed(names: Iterable[str]) -> list[str]:
    """Policy names for a revoke's target (the revoke itself works from the record on the entry)."""
    return [n for n in sorted(names) if POLICY_NAME.match(n)][:10] or ["AmazonEKSViewPolicy"]
