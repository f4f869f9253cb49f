"""The organisation sync: walk the organisation, then what lives in its accounts, with bounded parallelism.

Sync walks the org tree from the management account, then works through (account, region) pairs with
bounded parallelism; a failure in one pair becomes an "error" inventory item with a hint at the fix, and only
a failure of the management role fails the job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from connector import telemetry
from connector.aws.errors import error_code
from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations.aws_organization import identity_center_inventory
from connector.integrations.aws_organization import scope as scope_rules
from connector.integrations.aws_organization.database_discovery import DATABASE_RESOURCE_TYPES
from connector.integrations.aws_organization.database_scope import ContentsOf, DatabaseScope
from connector.integrations.aws_organization.ec2_inventory import instance_items
from connector.integrations.aws_organization.eks_inventory import cluster_items
from connector.integrations.aws_organization.iam_inventory import role_items
from connector.integrations.aws_organization.integration import AwsOrganizationIntegration
from connector.integrations.aws_organization.org_tree import Account, OrgUnit
from connector.integrations.aws_organization.settings import RESOURCE_TYPES
from connector.integrations.aws_organization.storage_sync import StorageDiscovery
from connector.integrations.base import ContextThreadPool, InventoryItem, JobContext, SyncRequest
from connector.integrations.capabilities import DriftReporter, DriftScope
from connector.logging import get_logger

log = get_logger("connector.integrations.aws_organization")


@dataclass(frozen=True)
class ScopeTask:
    """One unit of sync work: a stage in one account and region ("global" for IAM)."""

    account_id: str
    region: str
    stage: str
    work: Callable[[str, str], Iterator[InventoryItem]]


def scope_error_hint(
    exc: BaseException, account_id: str, region: str, member_role: str, management_account: str = ""
) -> tuple[str, str]:
    """(code, hint) for a failure in one (account, region): the usual causes from the product docs."""
    code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    text = str(exc)
    if isinstance(exc, ClientError) and exc.operation_name == "AssumeRole" and account_id == management_account:
        return code, (
            f"the connector could not assume {member_role} in the management account {account_id}: StackSets do not "
            "deploy to the management account, so deploy cloudformation/member-account-role.yaml there as a plain "
            "stack, or add the account to excluded_account_ids"
        )
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


class OrgSync:
    """The Syncer of an aws_organization integration."""

    def __init__(self, integration: AwsOrganizationIntegration) -> None:
        self.integration = integration
        self.config = integration.config
        self.aws = integration.aws
        # What is inside a managed database (the engine layer's inventory); None: discovery stops after the tag
        # and secret checks.
        self.database_contents: ContentsOf | None = None

    def member(self, account_id: str) -> str:
        return self.integration.member(account_id)

    # -- sync --------------------------------------------------------------------------------------------
    def sync(self, request: SyncRequest, ctx: JobContext) -> dict[str, Any]:
        types = set(request.resource_types or self.config.resource_types)
        unknown = types - set(RESOURCE_TYPES)
        if unknown:
            raise InvalidJob(f"sync.resource_types {sorted(unknown)} unknown; choose from {list(RESOURCE_TYPES)}")
        mgmt = self.integration.management_checked()
        org = self.aws.client(mgmt, "organizations", self.config.region)
        counts: dict[str, int] = {}
        counts_lock = threading.Lock()

        def emit(item: InventoryItem) -> None:
            with counts_lock:
                counts[item.type] = counts.get(item.type, 0) + 1
            ctx.emit(item)

        try:
            described = org.describe_organization()["Organization"]
        except ClientError as exc:
            if error_code(exc) == "AWSOrganizationsNotInUseException":
                raise ConnectorError(
                    ErrorCode.PRECONDITION_FAILED,
                    "the management role's account is not in an AWS Organization; check the role ARN",
                    retryable=False,
                ) from None
            raise
        accounts: list[Account] = []
        storage = StorageDiscovery(self, types, mgmt, str(described.get("MasterAccountId", "")), described["Id"])
        if not request.discovery_only:
            storage.probe(ctx.check_cancelled)
        ic_runner = ContextThreadPool(max_workers=1, thread_name_prefix="sync-sso")  # the job id and span follow
        ic_started: Future[identity_center_inventory.AssignmentPrefetch | None] | None = None
        if "identity_center" in types:
            # The directory (instance, permission sets, users, groups) is organisation-wide: it belongs to a
            # full or discovery sync, not to each account-scoped job of a split. Read on its own thread at
            # Identity Center's pace (~90 calls at 20/s) while the walk and the EKS scopes go on.
            ic_started = ic_runner.submit(
                self._identity_center,
                mgmt,
                emit,
                directory=not request.account_ids,
                per_account=not request.discovery_only,
                accounts=request.account_ids or None,
                check=ctx.check_cancelled,
            )

        def scope_tasks() -> Iterator[list[ScopeTask]]:
            """Each account's tasks as soon as the walk finds it, so the per-account work runs while the walk
            goes on (on a large organisation the walk alone is hundreds of Organizations calls)."""
            for account in self._sync_org(org, described, request, ctx, emit, with_items="organization" in types):
                accounts.append(account)
                if not scope_rules.visited(account) or request.discovery_only:
                    continue
                batch: list[ScopeTask] = []
                if "eks_cluster" in types:
                    if self.config.regions == "enabled":  # its enabled regions, then EKS in each
                        batch.append(ScopeTask(account.id, "enabled", "eks", self._eks_enabled_regions_task))
                    else:
                        batch += [ScopeTask(account.id, r, "eks", self._eks_task) for r in self._regions()]
                databases = frozenset(types & set(DATABASE_RESOURCE_TYPES))
                if databases:
                    batch += self._database_tasks(account.id, databases)
                if "iam_role" in types:
                    batch.append(ScopeTask(account.id, "global", "iam", self._iam_task))
                if "ec2_instance" in types:  # opt-in, bounded like EKS: one task per (account, region)
                    if self.config.regions == "enabled":
                        batch.append(ScopeTask(account.id, "enabled", "ec2", self._ec2_enabled_regions_task))
                    else:
                        batch += [ScopeTask(account.id, r, "ec2", self._ec2_task) for r in self._regions()]
                if "drift" in types:  # opt-in: the kinds' records against what exists, changing nothing
                    batch.append(ScopeTask(account.id, "global", "drift", self._drift_task))
                batch += [ScopeTask(*task) for task in storage.account_tasks(account.id)]
                if batch:
                    yield batch
            active_ids = [a.id for a in accounts if a.active]
            for tasks in storage.after_walk(active_ids, emit, ctx.check_cancelled):
                yield [ScopeTask(*task) for task in tasks]

        try:
            errors, scopes = self._fan_out(scope_tasks(), ctx, emit)
            assignments = ic_started.result() if ic_started is not None else None
            if assignments is not None:  # fetched meanwhile, at Identity Center's pace; kept for accounts walked
                ic_errors, ic_scopes = self._emit_assignments(assignments, accounts, emit)
                errors, scopes = errors + ic_errors, scopes + ic_scopes
        finally:
            ic_runner.shutdown(wait=True)
            if ic_started is not None and ic_started.exception() is None:
                prefetch = ic_started.result()
                if prefetch is not None:
                    prefetch.close()
        active = [a.id for a in accounts if a.active]
        result: dict[str, Any] = {
            "discovery_only": request.discovery_only,
            "accounts_total": len(accounts),
            "accounts_active": len(active),
            "accounts_skipped": [{"id": a.id, "state": a.state} for a in accounts if not a.active][:100],
            "scopes": scopes,
            "scope_errors": errors,
            "items": dict(sorted(counts.items())),
        }
        if storage.summary():
            result["resource_explorer"] = storage.summary()
        if self.integration.duration_note:
            result["notes"] = [self.integration.duration_note]
        return result

    def _regions(self) -> tuple[str, ...]:
        regions = self.config.regions
        assert regions != "enabled"  # resolved per account by _eks_enabled_regions_task
        return regions or (self.config.region,)

    def _sync_org(
        self,
        org: Any,
        described: dict[str, Any],
        request: SyncRequest,
        ctx: JobContext,
        emit: Callable[[InventoryItem], None],
        with_items: bool,
    ) -> Iterator[Account]:
        """The organisation's accounts (emitting roots, OUs and accounts as items), in walk order, lazily."""
        self.integration.management_account_id = str(described.get("MasterAccountId", ""))
        walk = scope_rules.org_walk(org, self.config, check=ctx.check_cancelled)
        wanted = set(request.account_ids)
        if with_items and not wanted:
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
        scope = self.config.organizational_unit_id
        if wanted:  # an account-scoped (split) job: resolve the named accounts, do not walk the tree
            for account in walk.resolve(sorted(wanted), scope):
                if with_items:
                    emit(self._account_item(account))
                yield account
            return
        starts, roots = scope_rules.walk_starts(walk, self.config)
        if with_items:
            for root in roots:
                emit(
                    InventoryItem(
                        type="aws.root",
                        id=root["Id"],
                        name=root.get("Name", "Root"),
                        attributes={"arn": root.get("Arn", ""), "policy_types": root.get("PolicyTypes", [])},
                    )
                )
        for start_id, start_path in starts:
            for node in walk.walk(start_id, start_path):
                if isinstance(node, OrgUnit):
                    if with_items:
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
                if with_items:
                    emit(self._account_item(node))
                yield node

    @staticmethod
    def _account_item(node: Account) -> InventoryItem:
        return InventoryItem(
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

    def _eks_task(self, account_id: str, region: str) -> Iterator[InventoryItem]:
        eks = self.aws.client(self.member(account_id), "eks", region)
        yield from cluster_items(eks, account_id, region, lambda: None)

    def _eks_enabled_regions_task(self, account_id: str, _: str) -> Iterator[InventoryItem]:
        """Every region enabled in the account (DescribeRegions without AllRegions lists only those); a
        failure in one region becomes that region's error item and the others go on."""
        session = self.member(account_id)
        ec2 = self.aws.client(session, "ec2", self.config.region)
        regions = sorted(r["RegionName"] for r in ec2.describe_regions(AllRegions=False).get("Regions", []))
        for region in regions:
            try:
                yield from cluster_items(self.aws.client(session, "eks", region), account_id, region, lambda: None)
            except (ClientError, BotoCoreError) as exc:
                yield self._error_item(exc, account_id, region, "eks")

    def _database_tasks(self, account_id: str, kinds: frozenset[str]) -> list[ScopeTask]:
        """RDS / Aurora / Redshift in each region, one scope task per (account, region), like EKS."""

        def work(account: str, region: str) -> Iterator[InventoryItem]:
            session = self.member(account)
            scope = DatabaseScope(
                self.integration.services.connector_id,
                lambda service, r: self.aws.client(session, service, r),
                self.integration.services.database_endpoints.resolve,
                kinds,
                self.database_contents,
            )
            if region != "enabled":
                yield from scope.items(account, region)
                return
            ec2 = self.aws.client(session, "ec2", self.config.region)
            for name in sorted(r["RegionName"] for r in ec2.describe_regions(AllRegions=False).get("Regions", [])):
                try:
                    yield from scope.items(account, name)
                except (ClientError, BotoCoreError) as exc:
                    yield self._error_item(exc, account, name, "databases")

        if self.config.regions == "enabled":
            return [ScopeTask(account_id, "enabled", "databases", work)]
        return [ScopeTask(account_id, r, "databases", work) for r in self._regions()]

    def _ec2_task(self, account_id: str, region: str) -> Iterator[InventoryItem]:
        session = self.member(account_id)
        yield from instance_items(
            self.aws.client(session, "ec2", region),
            self.aws.client(session, "ssm", region),
            self.aws.client(session, "iam"),
            account_id,
            region,
            self.integration.partition,
        )

    def _ec2_enabled_regions_task(self, account_id: str, _: str) -> Iterator[InventoryItem]:
        for region in self._enabled_regions(account_id):
            try:
                yield from self._ec2_task(account_id, region)
            except (ClientError, BotoCoreError) as exc:
                yield self._error_item(exc, account_id, region, "ec2")

    def _enabled_regions(self, account_id: str) -> list[str]:
        ec2 = self.aws.client(self.member(account_id), "ec2", self.config.region)
        return sorted(r["RegionName"] for r in ec2.describe_regions(AllRegions=False).get("Regions", []))

    def _drift_task(self, account_id: str, _: str) -> Iterator[InventoryItem]:
        """Each kind's drift report for the account (a kind that fails is that kind's error item). The member
        role is assumed first: if that fails, it is the account's one error item, not one per kind."""
        self.member(account_id)
        regions = tuple(self._enabled_regions(account_id)) if self.config.regions == "enabled" else self._regions()
        scope = DriftScope(account_id, regions, int(time.time()))
        for part in self.integration.kind_parts():
            if isinstance(part, DriftReporter):
                try:
                    yield from part.drift(scope)
                except (ClientError, BotoCoreError, ConnectorError) as exc:
                    yield self._error_item(exc, account_id, "global", f"drift {type(part).__name__}")

    def _iam_task(self, account_id: str, region: str) -> Iterator[InventoryItem]:
        yield from role_items(self.aws.client(self.member(account_id), "iam"), account_id)

    def _identity_center(
        self,
        mgmt: str,
        emit: Callable[[InventoryItem], None],
        *,
        directory: bool,
        per_account: bool,
        accounts: Iterable[str] | None,
        check: Callable[[], None],
    ) -> identity_center_inventory.AssignmentPrefetch | None:
        """Emits the directory (when asked) and starts fetching the assignments of the accounts (None: all) where a
        permission set is provisioned; None when there is no Identity Center instance, no per-account work, or it
        could not be read (recorded)."""
        region = self.config.sso_region or self.config.region
        sso = identity_center_inventory.paced(self.aws.client(mgmt, "sso-admin", region))
        try:
            ic = identity_center_inventory.discover(sso)
            if ic is None:
                return None
            if directory:
                for item in identity_center_inventory.directory_items(
                    sso, self.aws.client(mgmt, "identitystore", region), ic
                ):
                    emit(item)
            elif per_account:
                identity_center_inventory.load_permission_sets(sso, ic)
            if per_account:
                identity_center_inventory.load_provisioning(sso, ic)
        except (ClientError, BotoCoreError) as exc:
            self._record_error(emit, exc, "management", region, "identity_center")
            return None
        if not per_account:
            return None

        return identity_center_inventory.AssignmentPrefetch(sso, ic, accounts, check, region)

    def _emit_assignments(
        self,
        prefetch: identity_center_inventory.AssignmentPrefetch,
        accounts: list[Account],
        emit: Callable[[InventoryItem], None],
    ) -> tuple[int, int]:
        """The fetched assignments of the active accounts the walk kept (excluded ones are dropped unread):
        (scope errors, scopes)."""
        errors = scopes = 0
        for account in accounts:
            if not account.active or not prefetch.has(account.id):
                continue
            scopes += 1
            try:
                for item in prefetch.items(account.id):
                    emit(item)
            except (ClientError, BotoCoreError) as exc:
                self._record_error(emit, exc, account.id, prefetch.region, "identity_center")
                errors += 1
        return errors, scopes

    def _fan_out(
        self, batches: Iterable[list[ScopeTask]], ctx: JobContext, emit: Callable[[InventoryItem], None]
    ) -> tuple[int, int]:
        """Run every scope task with bounded parallelism, taking each account's batch of tasks as it comes (the
        org walk makes them); record failures per scope and keep going. Returns (scope errors, scopes).
        Progress counts accounts (ctx.progress) and scope tasks (ctx.scope_progress); each total is 0 (not known
        yet) until the walk has found them all."""
        lock = threading.Lock()
        remaining: dict[str, int] = {}  # account -> its tasks not yet finished
        counted: set[str] = set()  # accounts counted done (once, even if a follow-up batch comes later)
        state = {"errors": 0, "accounts_done": 0, "scopes": 0, "scopes_done": 0, "walked": 0}

        def run(task: ScopeTask) -> None:
            scope = {"aws.account.id": task.account_id, "cloud.region": task.region, "sync.stage": task.stage}
            try:
                with telemetry.span("sync.scope", **scope) as current:
                    items = 0
                    try:
                        for item in task.work(task.account_id, task.region):
                            ctx.check_cancelled()
                            emit(item)
                            items += 1
                    except (ClientError, BotoCoreError) as exc:
                        telemetry.set_attributes(current, **{"error.code": error_code(exc) or type(exc).__name__})
                        raise
                    finally:
                        telemetry.set_attributes(current, **{"sync.items": items})
            except (ClientError, BotoCoreError) as exc:
                self._record_error(emit, exc, task.account_id, task.region, task.stage)
                with lock:
                    state["errors"] += 1
            finally:
                with lock:
                    state["scopes_done"] += 1
                    ctx.scope_progress(state["scopes_done"], state["scopes"] if state["walked"] else 0)
                    remaining[task.account_id] -= 1
                    if remaining[task.account_id] == 0 and task.account_id not in counted:
                        counted.add(task.account_id)
                        state["accounts_done"] += 1
                        ctx.progress(state["accounts_done"], len(remaining) if state["walked"] else 0)

        # Backpressure on the walk: at most 2 x max_parallelism tasks queued or running. A semaphore released as
        # each task ends, not concurrent.futures.wait(FIRST_COMPLETED) over the pending set: each wait locks every
        # pending future twice (128 at the setting's maximum) and ran once per finished task (~5 % of the
        # agent's CPU in a sync, py-spy).
        slots = threading.Semaphore(self.config.max_parallelism * 2)
        pending: set[Future[None]] = set()
        failed: list[Future[None]] = []  # tasks that raised what a scope does not record (cancel, a bug)

        def finished(future: Future[None]) -> None:
            with lock:
                pending.discard(future)
                if not future.cancelled() and future.exception() is not None:
                    failed.append(future)
            slots.release()

        # Each task runs in a copy of the job's context: its log fields (job_id) and its span reach the scope.
        with ContextThreadPool(max_workers=self.config.max_parallelism, thread_name_prefix="sync") as pool:
            try:
                for batch in batches:
                    with lock:  # counted before any of them runs: the account is done when all of them are
                        # (a later batch of the same account, e.g. after the walk, adds to what remains)
                        remaining[batch[0].account_id] = remaining.get(batch[0].account_id, 0) + len(batch)
                        state["scopes"] += len(batch)
                    for task in batch:
                        slots.acquire()
                        if failed:
                            failed[0].result()
                        future = pool.submit(run, task)
                        with lock:
                            pending.add(future)
                        future.add_done_callback(finished)
                with lock:
                    state["walked"] = 1
                    if remaining:
                        ctx.scope_progress(state["scopes_done"], state["scopes"])
                        ctx.progress(state["accounts_done"], len(remaining))
                with lock:  # every task is submitted: what failed first, then what still runs
                    rest = [*failed, *pending]
                for f in rest:
                    f.result()
            except BaseException:
                with lock:
                    cancel = list(pending)
                for f in cancel:
                    f.cancel()
                raise
        return state["errors"], state["scopes"]

    def _record_error(
        self, emit: Callable[[InventoryItem], None], exc: BaseException, account_id: str, region: str, stage: str
    ) -> None:
        emit(self._error_item(exc, account_id, region, stage))

    def _error_item(self, exc: BaseException, account_id: str, region: str, stage: str) -> InventoryItem:
        code, hint = scope_error_hint(
            exc, account_id, region, self.config.member_role_name, self.integration.management_account_id
        )
        log.warning("sync_scope_failed", account_id=account_id, region=region, stage=stage, error_code=code)
        return InventoryItem(
            type="error",
            id=f"{account_id}/{region}/{stage}",
            account_id=account_id,
            region=region,
            attributes={"stage": stage, "code": code, "message": str(exc)[:500], "hint": hint},
        )
