"""The Kubernetes RBAC kind: a RoleBinding per namespace, or a ClusterRoleBinding, under the kubernetes
integration. Provisioner and ExpiryScanner.

Everything a grant creates is named and labelled from the grant id (connector.k8s.names), so a repeated grant
finds its own bindings, a foreign object with the same name is never overwritten (CONFLICT), and a revoke
deletes exactly the grant's bindings. Each binding carries the grant's ledger record as an annotation
(`access-connector/grant`); a re-delivery with the same expiry changes nothing, one with another expiry (or
onto a binding without a readable record) replaces the binding, so the record always says what the grant is.
A binding of ours without a readable record counts as expired (fail closed).

Effect: the cluster the integration's connection reaches, cluster-wide or the namespaces, the role bound and
the level its rules amount to (read from the cluster: connector.integrations.kubernetes.rbac_effect), and
the subject as a Kubernetes user or group.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from connector.errors import ConnectorError, ErrorCode
from connector.integrations import ledger
from connector.integrations.base import GrantRequest, JobContext, RevokeRequest
from connector.integrations.capabilities import ExpiredGrant, ExpiryScan
from connector.integrations.effect import Effect, Level, highest
from connector.integrations.kubernetes import KubernetesIntegration, rbac_effect
from connector.integrations.kubernetes_rbac import bindings
from connector.integrations.kubernetes_rbac.target import (
    GRANT_RECORD_ANNOTATION,
    RESOURCE_TYPE,
    BindingTarget,
    PlannedBinding,
    object_path,
    owned_by,
    plan_bindings,
)
from connector.k8s import names
from connector.logging import get_logger

log = get_logger("connector.integrations.kubernetes_rbac")
MANAGED_SELECTOR = f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE}"


def binding_record(annotations: dict[str, str]) -> ledger.Record:
    """A binding's ledger record; bindings made before the record existed carry only the readable expiry."""
    if GRANT_RECORD_ANNOTATION in annotations:
        return ledger.decode(annotations[GRANT_RECORD_ANNOTATION])
    legacy = annotations.get(names.EXPIRES_AT_ANNOTATION)
    if legacy is None:
        return ledger.Record(None, {}, "the binding carries no grant record")
    try:
        return ledger.Record(int(datetime.fromisoformat(legacy).timestamp()))
    except (ValueError, OverflowError):
        return ledger.Record(None, {}, "the binding's expiry cannot be read")


class RbacBindings:
    def __init__(self, integration: KubernetesIntegration) -> None:
        self.integration = integration
        self.connection = integration.connection

    # -- Provisioner -------------------------------------------------------------------------------------
    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect:
        target = BindingTarget.parse(request.target, request.principal)
        allowed = self.integration.allowed_roles
        if allowed is not None and target.role not in allowed:
            raise ConnectorError(
                ErrorCode.GUARDRAIL_DENIED,
                f"role {target.role!r} is not in this integration's allowed_roles",
                retryable=False,
            )
        reader = rbac_effect.RuleReader(self.connection.api())
        if target.role_kind == "ClusterRole":
            found = {"": reader.cluster_role(target.role)}
        else:
            found = {ns: reader.role(ns, target.role) for ns in target.namespaces}
        missing = [ns for ns, rules in found.items() if rules is None]
        if missing:
            # RBAC accepts a binding to a missing role and it then grants nothing, until a role of that name
            # appears: say so instead of binding it.
            where = "" if target.role_kind == "ClusterRole" else f" in namespaces {missing}"
            raise ConnectorError(
                ErrorCode.NOT_FOUND, f"{target.role_kind} {target.role!r} does not exist{where}", retryable=False
            )
        rules = [rule for found_rules in found.values() for rule in found_rules or []]
        level, reasons = rbac_effect.rules_level(rules, f"{target.role_kind} {target.role}")
        # A binding is access even to a role without rules: it gives whatever the role is later given.
        level = highest([level, Level.READ])
        cluster = self.connection.cluster_ref()
        subject = (request.principal,)
        return Effect(
            kind=RESOURCE_TYPE,
            principal=request.principal,
            level=level,
            expires_at=request.expires_at,
            reasons=tuple(reasons),
            account_id=cluster.account_id,
            region=cluster.region,
            cluster=cluster,
            scope="cluster" if target.scope == "cluster" else "namespaces",
            namespaces=target.namespaces,
            kubernetes_roles=(target.role,),
            kubernetes_groups=subject if target.subject_kind == "Group" else (),
            kubernetes_usernames=subject if target.subject_kind == "User" else (),
        )

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]:
        target = BindingTarget.parse(request.target, request.principal)
        planned = plan_bindings(request, target)
        if request.dry_run:
            return {
                "grant_id": request.grant_id,
                "dry_run": True,
                "calls": [{"method": "POST", "path": p.path, "body": p.body} for p in planned],
            }
        api = self.connection.api()
        done: list[dict[str, Any]] = []
        created: list[PlannedBinding] = []
        try:
            for binding in planned:
                ctx.check_cancelled()
                outcome = bindings.ensure(api, request.grant_id, binding)
                if outcome["created"]:
                    created.append(binding)
                done.append(outcome)
        except Exception:
            # Never leave part of a failed grant behind: remove what this attempt created, then report.
            bindings.rollback(api, request.grant_id, created)
            raise
        log.info("k8s_grant_applied", grant_id=request.grant_id, bindings=[d["name"] for d in done])
        return {"grant_id": request.grant_id, "bindings": done}

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        api = self.connection.api()
        found = bindings.of_grant(api, request.grant_id)
        if request.dry_run:
            return {
                "grant_id": request.grant_id,
                "dry_run": True,
                "calls": [
                    {"method": "DELETE", "path": object_path(kind, ns, name), "preconditions": {"uid": uid}}
                    for kind, ns, name, uid in found
                ],
            }
        deleted = []
        for kind, ns, name, uid in found:
            ctx.check_cancelled()
            if bindings.delete(api, kind, ns, name, uid):
                deleted.append({"kind": kind, "namespace": ns, "name": name})
        log.info("k8s_grant_revoked", grant_id=request.grant_id, deleted=len(deleted))
        return {"grant_id": request.grant_id, "deleted": deleted, "already_revoked": not deleted}

    # -- ExpiryScanner -----------------------------------------------------------------------------------
    def expired(self, scan: ExpiryScan) -> Iterator[ExpiredGrant]:
        """Every binding the connector manages in the cluster (two label-selected lists), every sweep."""
        api = self.connection.api()
        seen: set[str] = set()
        for kind, data in bindings.managed(api, MANAGED_SELECTOR):
            scan.check()
            meta = data.get("metadata") or {}
            annotations = dict(meta.get("annotations") or {})
            grant_id = annotations.get(names.GRANT_ID_ANNOTATION, "")
            record = binding_record(annotations)
            if grant_id in seen or not record.expired(scan.now):
                continue
            place = f"{kind}/{meta.get('namespace', '') + '/' if meta.get('namespace') else ''}{meta.get('name', '')}"
            if not grant_id:
                yield ExpiredGrant(place, "", None, None, "the binding names no grant id; delete it by hand")
                continue
            if meta.get("name") != names.binding_name(grant_id) or not owned_by(data, grant_id):
                # a revoke of that grant would not touch it (it deletes only what the grant made)
                why = f"the binding carries the connector's label but is not the one grant {grant_id[:80]!r} made"
                yield ExpiredGrant(place, ledger.grant_key(grant_id), None, None, f"{why}; delete it by hand")
                continue
            seen.add(grant_id)  # one revoke removes every binding of the grant
            subjects = data.get("subjects") or [{}]
            yield ExpiredGrant(
                place=place,
                grant_key=ledger.grant_key(grant_id),
                expires_epoch=record.expires_epoch,
                problem=record.problem,
                request=RevokeRequest(
                    grant_id=grant_id,
                    principal=str(subjects[0].get("name", "")),
                    target={"resource_type": RESOURCE_TYPE},
                ),
            )
