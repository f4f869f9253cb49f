"""The AWS Organization integration: sync the organisation and what lives in its accounts, and run
just-in-time grants in member accounts.

Credentials: connector identity -> management-account role (ExternalId, session duration clamped to the
one-hour role-chaining cap) -> member-account role per account. Sync walks the org tree from the management
account, then works through (account, region) pairs with bounded parallelism; a failure in one pair becomes
an "error" inventory item with a hint at the fix, and only a failure of the management role fails the job.
Grants route by target.resource_type to one module per target kind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from connector.aws.errors import classify_aws_error, error_code
from connector.aws.sessions import AwsSessions, clamp_session_duration
from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations import eks_access
from connector.integrations.base import (
    GrantRequest,
    Integration,
    InventoryItem,
    JobContext,
    RevokeRequest,
    Services,
    SyncRequest,
)
from connector.integrations.eks_inventory import cluster_items
from connector.integrations.org_settings import OrgSettings, parse_settings
from connector.integrations.org_tree import Account, OrgUnit, OrgWalk
from connector.logging import get_logger

log = get_logger("connector.integrations.aws_organization")

ScopeWork = Callable[[str, str, str], Iterator[InventoryItem]]  # (member session, account, region)


def scope_error_hint(exc: BaseException, account_id: str, region: str, member_role: str) -> tuple[str, str]:
    """(code, hint) for a failure in one (account, region): the usual causes from the product docs."""
    code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    text = str(exc)
    if isinstance(exc, ClientError) and exc.operation_name == "AssumeRole":
        return code, (
            f"the connector could not assume {member_role} in account {account_id}: deploy the member-account role "
            "(cloudformation/member-account-role.yaml, e.g. as a StackSet) with that name, trusting the management role"
        )
    if "service control policy" in text:
        return code, (
            f"a service control policy denies this call in {region} for account {account_id}: allow it for the "
            "connector's member role, or remove the region from the integration's regions"
        )
    if code in ("UnrecognizedClientException", "InvalidClientTokenId", "AuthFailure"):
        return (
            code,
            f"region {region} is probably not enabled in account {account_id}: enable it or drop it from regions",
        )
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        return code, f"the member role in {account_id} lacks a permission this sync needs: compare it with the template"
    return code, "transient or unexpected failure; the next sync retries it"


class AwsOrganizationIntegration(Integration):
    type_id = "aws_organization"

    def __init__(self, integration_id: str, settings: Mapping[str, Any], services: Services) -> None:
        super().__init__(integration_id, settings, services)
        self.config: OrgSettings = parse_settings(settings)
        if services.aws is None:
            services.aws = AwsSessions(services.connector_id)
        self.aws: AwsSessions = services.aws
        self.duration_seconds, self.duration_note = clamp_session_duration(self.config.session_duration_hours)

    # -- credentials -------------------------------------------------------------------------------------
    def management(self) -> str:
        role = self.config.management_account_role_arn
        if role is None:
            return self.aws.identity()  # the connector runs in the management account itself
        return self.aws.assume(
            role,
            external_id=self.config.external_id or self.services.connector_id,
            duration_seconds=self.duration_seconds,
        )

    def member(self, account_id: str) -> str:
        partition = (self.config.management_account_role_arn or "arn:aws:").split(":")[1]
        arn = f"arn:{partition}:iam::{account_id}:role/{self.config.member_role_name}"
        key = self.aws.assume(arn, via=self.management(), duration_seconds=min(self.duration_seconds, 3600))
        self.aws.credentials_of(key)  # surface AssumeRole failures here, attributed to this account
        return key

    def _management_checked(self) -> str:
        try:
            key = self.management()
            self.aws.credentials_of(key)
            return key
        except (ClientError, BotoCoreError) as exc:
            mapped = classify_aws_error(exc) or ConnectorError(ErrorCode.UNAVAILABLE, str(exc))
            raise ConnectorError(
                mapped.code,
                f"cannot assume the management account role {self.config.management_account_role_arn}: {mapped.message} "
                "Check that its trust policy admits the connector role with sts:ExternalId equal to the connector id "
                "(cloudformation/management-account-role.yaml).",
                retryable=mapped.retryable,
            ) from None

    # -- sync --------------------------------------------------------------------------------------------
    def sync(self, request: SyncRequest, ctx: JobContext) -> dict[str, Any]:
        types = set(request.resource_types or self.config.resource_types)
        mgmt = self._management_checked()
        org = self.aws.client(mgmt, "organizations", self.config.region)
        counts: dict[str, int] = {}

        def emit(item: InventoryItem) -> None:
            counts[item.type] = counts.get(item.type, 0) + 1
            ctx.emit(item)

        try:
            accounts = self._sync_org(org, request, ctx, emit, with_items="organization" in types)
        except ClientError as exc:
            if error_code(exc) == "AWSOrganizationsNotInUseException":
                raise ConnectorError(
                    ErrorCode.PRECONDITION_FAILED,
                    "the management role's account is not in an AWS Organization; check the role ARN",
                    retryable=False,
                ) from None
            raise
        active = [a for a in accounts if a.active]
        work: list[tuple[str, ScopeWork]] = []
        if "eks_cluster" in types:
            work.append(("eks", self._eks_work))
        pairs = [(a.id, r) for a in active for r in self._regions()] if work else []
        errors = self._fan_out(pairs, work, ctx, emit)
        result: dict[str, Any] = {
            "accounts_total": len(accounts),
            "accounts_active": len(active),
            "accounts_skipped": [{"id": a.id, "state": a.state} for a in accounts if not a.active][:100],
            "scopes": len(pairs),
            "scope_errors": errors,
            "items": counts,
        }
        if self.duration_note:
            result["notes"] = [self.duration_note]
        return result

    def _regions(self) -> tuple[str, ...]:
        regions = self.config.regions
        if regions == "enabled":
            raise InvalidJob("regions 'enabled' is resolved per account; not supported by this connector version yet")
        return regions or (self.config.region,)

    def _sync_org(
        self, org: Any, request: SyncRequest, ctx: JobContext, emit: Callable[[InventoryItem], None], with_items: bool
    ) -> list[Account]:
        described = org.describe_organization()["Organization"]
        walk = OrgWalk(
            org,
            excluded_ous=frozenset(self.config.excluded_ou_ids),
            excluded_accounts=frozenset(self.config.excluded_account_ids),
            check=ctx.check_cancelled,
        )
        if with_items:
            emit(
                InventoryItem(
                    type="aws.organization",
                    id=described["Arn"],
                    name=described["Id"],
                    account_id=described.get("MasterAccountId", ""),
                    attributes={
                        "management_account_id": described.get("MasterAccountId", ""),
                        "feature_set": described.get("FeatureSet", ""),
                    },
                )
            )
        wanted = set(request.account_ids)
        accounts: list[Account] = []
        starts = (
            [(self.config.organizational_unit_id, walk.path_of(self.config.organizational_unit_id))]
            if self.config.organizational_unit_id and not self.config.organizational_unit_id.startswith("r-")
            else [(root["Id"], "Root") for root in walk.roots()]
        )
        for start_id, start_path in starts:
            for node in walk.walk(start_id, start_path):
                if isinstance(node, OrgUnit):
                    if with_items and not wanted:
                        emit(
                            InventoryItem(
                                type="aws.ou",
                                id=node.id,
                                name=node.name,
                                parent_id=node.parent_id,
                                attributes={"path": node.path, "arn": node.arn, "tags": node.tags},
                            )
                        )
                    continue
                if wanted and node.id not in wanted:
                    continue
                accounts.append(node)
                if with_items:
                    emit(
                        InventoryItem(
                            type="aws.account",
                            id=node.id,
                            name=node.name,
                            account_id=node.id,
                            parent_id=node.parent_id,
                            attributes={
                                "email": node.email,
                                "state": node.state,
                                "path": node.path,
                                "arn": node.arn,
                                "joined": node.joined,
                                "tags": node.tags,
                            },
                        )
                    )
        return accounts

    def _eks_work(self, session: str, account_id: str, region: str) -> Iterator[InventoryItem]:
        eks = self.aws.client(session, "eks", region)
        yield from cluster_items(eks, account_id, region, lambda: None)

    def _fan_out(
        self,
        pairs: list[tuple[str, str]],
        work: list[tuple[str, ScopeWork]],
        ctx: JobContext,
        emit: Callable[[InventoryItem], None],
    ) -> int:
        """Run every (account, region) with bounded parallelism; record failures per scope, keep going."""
        if not pairs:
            return 0
        lock = threading.Lock()
        done = 0
        errors = 0
        accounts_total = len({a for a, _ in pairs})

        def run(account_id: str, region: str) -> None:
            nonlocal errors
            try:
                session = self.member(account_id)
                for name, fn in work:
                    try:
                        for item in fn(session, account_id, region):
                            ctx.check_cancelled()
                            emit(item)
                    except (ClientError, BotoCoreError) as exc:
                        self._record_error(emit, exc, account_id, region, name)
                        with lock:
                            errors += 1
            except (ClientError, BotoCoreError) as exc:
                self._record_error(emit, exc, account_id, region, "assume_role")
                with lock:
                    errors += 1

        with ThreadPoolExecutor(max_workers=self.config.max_parallelism, thread_name_prefix="sync") as pool:
            pending: set[Future[None]] = set()
            it = iter(pairs)
            for account_id, region in it:
                pending.add(pool.submit(run, account_id, region))
                if len(pending) >= self.config.max_parallelism * 2:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        f.result()
                        done += 1
                    ctx.progress(done * accounts_total // len(pairs), accounts_total)
                    ctx.check_cancelled()
            for f in pending:
                f.result()
        ctx.progress(accounts_total, accounts_total)
        return errors

    def _record_error(
        self, emit: Callable[[InventoryItem], None], exc: BaseException, account_id: str, region: str, stage: str
    ) -> None:
        code, hint = scope_error_hint(exc, account_id, region, self.config.member_role_name)
        log.warning("sync_scope_failed", account_id=account_id, region=region, stage=stage, error_code=code)
        emit(
            InventoryItem(
                type="error",
                id=f"{account_id}/{region}/{stage}",
                account_id=account_id,
                region=region,
                attributes={"stage": stage, "code": code, "message": str(exc)[:500], "hint": hint},
            )
        )

    # -- grant / revoke ----------------------------------------------------------------------------------
    def _eks_client(self, target: eks_access.EksTarget) -> Any:
        return self.aws.client(self.member(target.account_id), "eks", target.region)

    def _resource_type(self, target: Mapping[str, Any]) -> str:
        kind = target.get("resource_type")
        if kind != "eks_cluster":
            raise InvalidJob(f"target.resource_type {str(kind)[:64]!r} is not supported; supported: eks_cluster")
        return str(kind)

    def grant(self, request: GrantRequest, ctx: JobContext) -> dict[str, Any]:
        self._resource_type(request.target)
        target = eks_access.parse_target(request.target)
        eks_access.validate_principal(request.principal)
        return eks_access.grant(
            self._eks_client(target),
            grant_id=request.grant_id,
            principal=request.principal,
            target=target,
            expires_at=request.expires_at,
            dry_run=request.dry_run,
        )

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        self._resource_type(request.target)
        target = eks_access.parse_target(request.target)
        eks_access.validate_principal(request.principal)
        return eks_access.revoke(
            self._eks_client(target),
            grant_id=request.grant_id,
            principal=request.principal,
            target=target,
            dry_run=request.dry_run,
        )
