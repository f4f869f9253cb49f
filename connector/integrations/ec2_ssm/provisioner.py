"""The EC2-through-SSM kind: Provisioner, ExpiryScanner, DriftReporter and Auditable, under the aws_organization
integration.

Effect: the role that receives the access (an ARN in the account's partition), the account and its OU path,
the region, every instance as an ARN (each one read back with DescribeInstances: it must exist and not be
terminated) and every session document's ARN, at level write (a shell, SSH or port forwarding on a host).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from connector.aws.errors import error_code
from connector.aws.iam_roles import ROLE_ARN, assumed_role_prefix
from connector.aws.partitions import iam_role_arn, partition_of
from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations import ledger
from connector.integrations.aws_organization import audit_trail
from connector.integrations.aws_organization.integration import AwsOrganizationIntegration
from connector.integrations.base import GrantRequest, InventoryItem, JobContext, RevokeRequest
from connector.integrations.capabilities import (
    EFFECT_PAST_EXPIRY,
    EFFECT_WITHOUT_RECORD,
    FOREIGN_ACCESS,
    RECORD_WITHOUT_EFFECT,
    AuditSubject,
    AuditSummary,
    DriftScope,
    ExpiredGrant,
    ExpiryScan,
    drift_item,
)
from connector.integrations.ec2_ssm import policy as ssm_policy
from connector.integrations.ec2_ssm import roles
from connector.integrations.ec2_ssm.target import (
    RESOURCE_TYPE,
    Ec2SsmTarget,
    check_documents,
    check_instances,
    parse_target,
)
from connector.integrations.effect import Effect, Lazy, Level

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


def _states(ec2: Any, instances: Iterable[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=list(instances)):
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                found[str(instance["InstanceId"])] = str(instance.get("State", {}).get("Name", ""))
    return found


class Ec2SsmAccess:
    def __init__(self, integration: AwsOrganizationIntegration) -> None:
        self.integration = integration

    def _check(self, target: Ec2SsmTarget) -> None:
        if target.account_id in self.integration.config.excluded_account_ids:  # the full expiry scan skips it
            raise InvalidJob(f"target.account_id {target.account_id} is excluded from this integration")
        if partition_of(target.region) != self.integration.partition:
            raise InvalidJob(f"target.region {target.region} is not in the organisation's partition")
        target.role_name  # noqa: B018 - validates a role ARN against account_id

    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect:
        target = parse_target(request.target)
        check_instances(target)  # before any AWS call, even AssumeRole
        check_documents(target, self.integration.config.ssm_session_documents)
        self._check(target)
        account, region, partition = target.account_id, target.region, self.integration.partition
        self._resolve_instances(target)
        resources = [ssm_policy.instance_arn(partition, region, account, i) for i in target.instances]
        resources += [ssm_policy.document_arn(partition, region, account, d) for d in target.documents]
        return Effect(
            kind=RESOURCE_TYPE,
            principal=iam_role_arn(partition, account, target.role_name),
            level=Level.WRITE,
            expires_at=request.expires_at,
            reasons=("interactive Session Manager access to the instances: " + ", ".join(target.documents),),
            account_id=account,
            ou_path=Lazy(lambda: self.integration.ou_path(account)),
            region=region,
            resources=tuple(resources),
            extra={"documents": ",".join(target.documents), "instances": str(len(target.instances))},
        )

    def _resolve_instances(self, target: Ec2SsmTarget) -> None:
        """Every granted instance exists in that account and region and is not terminated (reads only)."""
        ec2 = self.integration.client(target.account_id, "ec2", target.region)
        try:
            found = _states(ec2, target.instances)
        except ClientError as exc:
            if error_code(exc) not in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
                raise
            # One unknown id fails the whole call: look at each to name exactly the missing ones.
            found = {}
            for instance_id in target.instances:
                try:
                    found |= _states(ec2, [instance_id])
                except ClientError as one:
                    if error_code(one) not in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
                        raise
        missing = [i for i in target.instances if found.get(i, "terminated") in ("terminated", "shutting-down")]
        if missing:
            raise ConnectorError(
                ErrorCode.NOT_FOUND,
                f"EC2 instances {missing[:10]} do not exist (or are terminated) in account {target.account_id} "
                f"region {target.region}",
                retryable=False,
            )

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]:
        target = parse_target(request.target)
        self.integration.note_place("ssm", target.account_id, target.role_name)
        return roles.grant(
            self.integration.client(target.account_id, "iam"),
            grant_id=request.grant_id,
            target=target,
            partition=self.integration.partition,
            expires_at=request.expires_at,
            dry_run=request.dry_run,
        )

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        target = parse_target(request.target)
        target.role_name  # noqa: B018 - validates a role ARN against account_id before any call
        # No exclusion check: a grant made before its account was excluded must still be revocable.
        return roles.revoke(
            self.integration.client(target.account_id, "iam"),
            self.integration.client(target.account_id, "ssm", target.region),
            grant_id=request.grant_id,
            target=target,
            partition=self.integration.partition,
            dry_run=request.dry_run,
        )

    # -- Auditable (enable_audit) ----------------------------------------------------------------------------
    def audit_subject(self, request: GrantRequest, effect: Effect) -> AuditSubject | None:
        """The granted role's Session Manager sessions on the granted instances, in the grant's region: all
        taken from the Effect, so what was judged is what is audited."""
        if not self.integration.config.enable_audit or request.dry_run:
            return None
        instances = tuple(arn.split(":instance/", 1)[1] for arn in effect.resources if ":instance/" in arn)
        return AuditSubject(
            source="ssm_sessions",
            account_id=effect.account_id,
            principal=effect.principal,
            regions=(effect.region,),
            resources=instances,
        )

    def audit(self, subject: AuditSubject, start: datetime, end: datetime) -> AuditSummary:
        role = ROLE_ARN.match(subject.principal)
        if role is None or role.group(2) != subject.account_id or len(subject.regions) != 1:
            raise ConnectorError(
                ErrorCode.INTERNAL,
                f"audit subject of {subject.principal[:200]} is not one role in one region",
                retryable=False,
            )
        ssm = self.integration.client(subject.account_id, "ssm", subject.regions[0])
        owner = assumed_role_prefix(role.group(1), subject.account_id, role.group(3))
        return audit_trail.ssm_sessions_summary(ssm, owner, subject.resources, start, end)

    # -- expiry ------------------------------------------------------------------------------------------
    def expired(self, scan: ExpiryScan) -> Iterator[ExpiredGrant]:
        """The roles this process granted on, every sweep; on a full scan every role of every active account."""
        return self.integration.expired_on_roles(scan, "ssm", self._expired_in)

    def _region_of(self, record: ledger.Record) -> str:
        region = str(record.fields.get("region", ""))
        return region if _REGION.match(region) else self.integration.config.region

    def _expired_in(self, account: str, known: Iterable[str] | None, now: int) -> Iterator[ExpiredGrant]:
        iam = self.integration.client(account, "iam")
        names = roles.all_role_names(iam) if known is None else sorted(known)
        for role, key, record in roles.records(iam, names):
            if not record.expired(now):
                continue
            yield ExpiredGrant(
                place=f"{account}/{role}",
                grant_key=key,
                expires_epoch=record.expires_epoch,
                problem=record.problem,
                request=RevokeRequest(
                    grant_id=ssm_policy.grant_id_of(key),
                    principal=role,
                    target={
                        "resource_type": RESOURCE_TYPE,
                        "account_id": account,
                        "region": self._region_of(record),
                        "role": role,
                    },
                ),
            )

    # -- drift -------------------------------------------------------------------------------------------
    def drift(self, scope: DriftScope) -> Iterator[InventoryItem]:
        """Records without their policy, policies past their record's expiry, policies of ours without a record,
        and statements in them the connector did not write. Reads only."""
        account = scope.account_id
        iam = self.integration.client(account, "iam")
        for role in roles.all_role_names(iam):
            recorded = {key: record for _, key, record in roles.records(iam, [role])}
            policies = set(roles.connector_policies(iam, role))
            where = f"{account}/{role}"
            accounted: set[str] = set()
            for key, record in recorded.items():
                name = ssm_policy.policy_name_for(ssm_policy.grant_id_of(key))
                accounted.add(name)
                region = self._region_of(record)
                if name not in policies:
                    yield drift_item(
                        RESOURCE_TYPE, RECORD_WITHOUT_EFFECT, where, account_id=account, region=region,
                        grant_key=key, expires_epoch=record.expires_epoch,
                        details=f"the record says role {role} may open sessions (policy {name}), but the policy is missing",
                        what_to_do="revoke the grant so its record goes too, or grant it again if it should still hold",
                    )  # fmt: skip
                elif record.expired(scope.now):
                    yield drift_item(
                        RESOURCE_TYPE, EFFECT_PAST_EXPIRY, where, account_id=account, region=region,
                        grant_key=key, expires_epoch=record.expires_epoch,
                        details=f"policy {name} is still on role {role} after its record expired"
                        + (f" ({record.problem})" if record.problem else ""),
                        what_to_do="check that the connector's expiry sweep runs for this integration "
                        "(connector_expiry_integration_failing), or revoke the grant",
                    )  # fmt: skip
            for name in sorted(policies):
                document = roles.read_policy(iam, role, name)
                if name not in accounted:
                    yield drift_item(
                        RESOURCE_TYPE, EFFECT_WITHOUT_RECORD, f"{where}/{name}", account_id=account,
                        details=f"inline policy {name} on role {role} carries the connector's name but no record",
                        what_to_do="delete the policy if nobody needs it; the connector will not expire it",
                    )  # fmt: skip
                foreign = ssm_policy.foreign_statements(document or {})
                if foreign:
                    yield drift_item(
                        RESOURCE_TYPE, FOREIGN_ACCESS, f"{where}/{name}", account_id=account,
                        details=f"statements {foreign[:10]} in connector-made policy {name} were not written by "
                        "the connector",
                        what_to_do="move access that should last into a policy of your own: the connector "
                        "deletes this policy when the grant ends",
                    )  # fmt: skip
