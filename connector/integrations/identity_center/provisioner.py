"""The Identity Center assignment kind: Provisioner and ExpiryScanner, under the aws_organization integration.

Effect: the account (and its OU path), the permission set by its resolved name (a job may give the ARN), and
the level of what the set holds (connector.integrations.identity_center.permission_sets).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from connector.aws.errors import error_code
from connector.errors import ConnectorError
from connector.integrations import ledger
from connector.integrations.aws_organization.integration import AwsOrganizationIntegration
from connector.integrations.base import GrantRequest, InventoryItem, JobContext, RevokeRequest
from connector.integrations.capabilities import DriftScope, ExpiredGrant, ExpiryScan
from connector.integrations.effect import Effect, Lazy
from connector.integrations.identity_center import assignments, drift, permission_sets
from connector.logging import get_logger

log = get_logger("connector.integrations.identity_center")
RESOURCE_TYPE = "identity_center_assignment"
T = TypeVar("T")


class IdentityCenterAccess:
    def __init__(self, integration: AwsOrganizationIntegration) -> None:
        self.integration = integration
        self._names: dict[str, str] = {}  # permission set name -> ARN, resolved once per integration
        self._drift_records = drift.RecordsCache()

    def _fresh(self, target: assignments.IdentityCenterTarget, call: Callable[[], T]) -> T:
        """`call`, once more after forgetting the cached ARN of the target's set name when the set was not
        found: a set deleted and made again under its name is resolved (and judged) afresh, not missed for ever."""
        try:
            return call()
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException" or self._names.pop(target.permission_set, None) is None:
                raise
            return call()

    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect:
        target = assignments.parse_target(request.target)
        assignments.validate_principal(request.principal)
        sso = self.integration.sso_client()

        def judge() -> tuple[assignments.Resolved, permission_sets.PermissionSetEffect]:
            where = assignments.resolve(sso, target, self._names)
            return where, permission_sets.describe(sso, where.instance, where.ps_arn)

        where, ps = self._fresh(target, judge)
        account = target.account_id
        return Effect(
            kind=RESOURCE_TYPE,
            principal=request.principal,
            level=ps.level,
            expires_at=request.expires_at,
            reasons=ps.reasons,
            account_id=account,
            ou_path=Lazy(lambda: self.integration.ou_path(account)),
            permission_sets=(ps.name,),
            unresolved=(("permission_sets", ps.name),) if ps.unresolved else (),
            extra={"principal_type": target.principal_type, "permission_set_arn": where.ps_arn},
        )

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]:
        target = assignments.parse_target(request.target)
        # Exactly the set that was judged, by its ARN: a name resolved again could meanwhile name another set.
        judged = target.model_copy(
            update={"permission_set": effect.extra.get("permission_set_arn") or target.permission_set}
        )
        self.integration.note_place("ic", self.integration.sso_region())
        result = assignments.grant(
            self.integration.sso_client(),
            grant_id=request.grant_id,
            principal=request.principal,
            target=judged,
            expires_at=request.expires_at,
            dry_run=request.dry_run,
            remaining=ctx.remaining,
            check=ctx.check_cancelled,
            cache=self._names,
        )
        return result | self._sign_in(effect)

    def _sign_in(self, effect: Effect) -> dict[str, Any]:
        """Where the requester signs in to use the assignment: the AWS access portal (setting sso_portal_url,
        validated as an https URL with nothing but a host and a path). The product documents give no deep-link
        shape, so the link is the portal itself; the account and permission set say what to pick there."""
        portal = self.integration.config.sso_portal_url
        if portal is None:
            return {}
        return {
            "sign_in_url": portal,
            "sign_in": f"open {portal}, then account {effect.account_id} and {effect.permission_sets[0]}",
        }

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        target = assignments.parse_target(request.target)
        return self._fresh(
            target,
            lambda: assignments.revoke(
                self.integration.sso_client(),
                grant_id=request.grant_id,
                principal=request.principal,
                target=target,
                dry_run=request.dry_run,
                remaining=ctx.remaining,
                check=ctx.check_cancelled,
                cache=self._names,
            ),
        )

    def expired(self, scan: ExpiryScan) -> Iterator[ExpiredGrant]:
        """Every permission set's records, every sweep (one ListTagsForResource per set). Whatever the
        integration syncs: a grant does not need `identity_center` in its resource_types, so neither may its
        expiry. An organisation without Identity Center costs one ListInstances per sweep."""
        config = self.integration.config
        uses = (
            "identity_center" in config.resource_types or config.sso_region is not None or self.integration.places("ic")
        )
        iid = self.integration.integration_id
        try:
            found = list(assignments.expired_records(self.integration.sso_client(), scan.now))
        except ConnectorError as exc:  # Identity Center not enabled: nothing to sweep
            (log.info if uses else log.debug)("expiry_identity_center_skipped", integration_id=iid, reason=exc.message)
            return
        except (ClientError, BotoCoreError) as exc:  # e.g. a management role without sso permissions
            if uses:
                scan.problem("identity center", str(exc)[:300])
            else:
                log.debug("expiry_identity_center_failed", integration_id=iid, error=str(exc)[:300])
            return
        for ps_arn, key, record in found:
            if isinstance(record, str):  # names no assignment: it can only be reported
                yield ExpiredGrant(place=ps_arn, grant_key=key, expires_epoch=None, request=None, problem=record)
                continue
            yield ExpiredGrant(
                place=f"{ps_arn}/{record.account_id}",
                grant_key=key,
                expires_epoch=record.expires_epoch,
                problem=record.problem,
                request=RevokeRequest(
                    grant_id=ledger.key_suffix(key),
                    principal=record.principal_id,
                    target={
                        "resource_type": RESOURCE_TYPE,
                        "account_id": record.account_id,
                        "permission_set": ps_arn,
                        "principal_type": record.principal_type,
                    },
                ),
            )

    def drift(self, scope: DriftScope) -> Iterator[InventoryItem]:
        """The account's assignments against the records on the permission sets (reads only)."""
        yield from drift.drift_in(self.integration.sso_client(), self._drift_records, scope)
