"""The IAM resource-access kind: Provisioner and ExpiryScanner, under the aws_organization integration.

Effect: the role that receives the access (as an ARN in the account's partition), the account and its OU
path, every resource ARN as given (wildcards included) and the access level (read or write; never admin: the
action lists are fixed, commented, and hold no IAM action).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from connector.aws.partitions import iam_role_arn
from connector.errors import InvalidJob
from connector.integrations import ledger
from connector.integrations.aws_organization import audit_trail
from connector.integrations.aws_organization.integration import AwsOrganizationIntegration
from connector.integrations.base import GrantRequest, InventoryItem, JobContext, RevokeRequest
from connector.integrations.capabilities import AuditSubject, AuditSummary, DriftScope, ExpiredGrant, ExpiryScan
from connector.integrations.effect import Effect, Lazy, Level
from connector.integrations.iam_access import drift, roles, tag_selection
from connector.integrations.iam_access.target import check_partition, check_resource_count, parse_target
from connector.logging import get_logger

log = get_logger("connector.integrations.iam_access")
RESOURCE_TYPE = "iam_resource_access"


class IamAccess:
    def __init__(self, integration: AwsOrganizationIntegration) -> None:
        self.integration = integration

    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect:
        target = parse_target(request.target)
        check_resource_count(target)  # before any AWS call, even AssumeRole
        check_partition(target, self.integration.partition)
        account = target.account_id
        if account in self.integration.config.excluded_account_ids:  # the expiry loop's full scan skips it
            raise InvalidJob(f"target.account_id {account} is excluded from this integration")
        extra: dict[str, str] = {"access_level": target.access_level}
        if target.resource_tags:  # resolved now: the Effect (and so the guardrails and the grant) name ARNs
            config = self.integration.config
            regions = config.regions if isinstance(config.regions, tuple) and config.regions else (config.region,)
            member = self.integration.member(account)
            resolved = tag_selection.resolve(
                lambda region: self.integration.aws.client(member, "resourcegroupstaggingapi", region), target, regions
            )
            target = target.model_copy(update={"resources": tuple(dict.fromkeys(target.resources + resolved))})
            check_resource_count(target)
            check_partition(target, self.integration.partition)
            extra["resource_tags"] = tag_selection.describe_tags(target)
        return Effect(
            kind=RESOURCE_TYPE,
            principal=iam_role_arn(self.integration.partition, account, target.role_name),
            level=Level.WRITE if target.access_level == "write" else Level.READ,
            expires_at=request.expires_at,
            account_id=account,
            ou_path=Lazy(lambda: self.integration.ou_path(account)),
            resources=target.resources,
            extra=extra,
        )

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]:
        # Exactly the resources the guardrails judged (tags were resolved to these ARNs by describe).
        target = parse_target(request.target).model_copy(update={"resources": effect.resources})
        member = self.integration.member(target.account_id)
        aws = self.integration.aws
        self.integration.note_place("iam", target.account_id, target.role_name)
        return roles.grant(
            aws.client(member, "iam"),
            aws.client(member, "s3", self.integration.config.region),
            lambda region: aws.client(member, "kms", region),
            grant_id=request.grant_id,
            target=target,
            expires_at=request.expires_at,
            dry_run=request.dry_run,
        )

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        target = parse_target(request.target)
        target.role_name  # noqa: B018 - validates a role ARN against account_id before any call
        return roles.revoke(
            self.integration.client(target.account_id, "iam"),
            grant_id=request.grant_id,
            target=target,
            dry_run=request.dry_run,
        )

    # -- Auditable (enable_audit) ----------------------------------------------------------------------------
    def audit_subject(self, request: GrantRequest, effect: Effect) -> AuditSubject | None:
        """The granted role's CloudTrail activity on the granted services, in the resources' regions."""
        if not self.integration.config.enable_audit or request.dry_run:
            return None
        services: set[str] = set()
        regions: set[str] = set()
        for arn in effect.resources:
            parts = arn.split(":")
            services.add(parts[2])
            if parts[3]:
                regions.add(parts[3])
        config = self.integration.config
        if not regions or "s3" in services:  # S3 ARNs name no region: the integration's regions
            regions |= set(config.regions if isinstance(config.regions, tuple) and config.regions else (config.region,))
        if "s3" in services:
            services.add("kms")  # the bucket's key, which the grant adds
        return AuditSubject(
            source="cloudtrail",
            account_id=effect.account_id,
            principal=effect.principal,
            regions=tuple(sorted(regions)),
            services=tuple(sorted(services)),
        )

    def audit(self, subject: AuditSubject, start: datetime, end: datetime) -> AuditSummary:
        member = self.integration.member(subject.account_id)
        return audit_trail.cloudtrail_summary(
            lambda region: self.integration.aws.client(member, "cloudtrail", region),
            subject.principal,
            subject.regions,
            subject.services,
            start,
            end,
        )

    def expired(self, scan: ExpiryScan) -> Iterator[ExpiredGrant]:
        """The roles this process granted on, every sweep; on a full scan every role of every active account."""
        return self.integration.expired_on_roles(scan, "iam", self._expired_in)

    def _expired_in(self, account: str, known: Iterable[str] | None, now: int) -> Iterator[ExpiredGrant]:
        iam = self.integration.client(account, "iam")
        names = roles.all_role_names(iam) if known is None else sorted(known)
        for role, key, record in roles.expired_role_records(iam, names, now):
            yield ExpiredGrant(
                place=f"{account}/{role}",
                grant_key=key,
                expires_epoch=record.expires_epoch,
                problem=record.problem,
                request=RevokeRequest(
                    grant_id=ledger.key_suffix(key),
                    principal=role,
                    target={"resource_type": RESOURCE_TYPE, "account_id": account, "role": role},
                ),
            )

    def drift(self, scope: DriftScope) -> Iterator[InventoryItem]:
        """Each role's records against the inline policies they name (reads only)."""
        yield from drift.drift_in(self.integration.client(scope.account_id, "iam"), scope)
