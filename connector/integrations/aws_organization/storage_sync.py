"""The organisation sync's S3 / SNS / SQS part (opt-in resource types s3_bucket, sns_topic, sqs_queue).

Without Resource Explorer, every account gets scope tasks like EKS's: one S3 task (ListBuckets is global)
and one SNS and one SQS task per region (or per enabled region), run in the sync's bounded pool; a failure
becomes that scope's error item.

With a usable Resource Explorer (explorer.py: an aggregator index and an organisation-wide view in the
management account, or in `resource_explorer_account_id`, the delegated administrator), the types it indexes
are not listed per account and region: once the walk has found the accounts, Search lists each type per
region (split by account under the 1,000 cap), topics and queues become items directly, and each account
with buckets gets one task that reads their default encryption (which Resource Explorer does not report).
Any split still incomplete, any Search that fails, and every type it does not index go to the service APIs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from connector.integrations.aws_organization import explorer, storage_inventory
from connector.integrations.base import ContextThreadPool, InventoryItem
from connector.logging import get_logger, redact_text

if TYPE_CHECKING:
    from connector.integrations.aws_organization.sync import OrgSync

log = get_logger("connector.integrations.aws_organization")
STORAGE_TYPES = ("s3_bucket", "sns_topic", "sqs_queue")
Work = Callable[[str, str], Iterator[InventoryItem]]
Task = tuple[str, str, str, Work]  # (account, region, stage, work): sync.py makes ScopeTasks of them
COVERAGE_TTL = 3600.0
STAGES = {"s3_bucket": "s3", "sns_topic": "sns", "sqs_queue": "sqs"}


def _noop() -> None:
    return None


class StorageDiscovery:
    def __init__(self, sync: OrgSync, types: set[str], mgmt: str, management_account_id: str, org_id: str) -> None:
        self.sync = sync
        self.config = sync.config
        self.types = [t for t in STORAGE_TYPES if t in types]
        self.mgmt = mgmt
        self.management_account_id = management_account_id
        self.org_id = org_id
        self.setup: explorer.ExplorerSetup | None = None
        self.by_explorer: list[str] = []
        self.stats = explorer.SearchStats()
        self.fallback_scopes = 0
        self.unindexed_scopes = 0
        self.notes: list[str] = []
        self.probe_problems: list[str] = []
        self._check: Callable[[], None] = _noop
        # Index coverage (ListIndexesForMembers, 10 accounts a call under a 3/s quota) is read while the walk
        # goes on, one call at a time in its own thread, for the accounts the walk has found.
        self._known: dict[str, set[str]] | None = None  # the cached coverage, when fresh
        self._fed: list[str] = []
        self._coverage_parts: list[tuple[list[str], Future[dict[str, set[str]]] | None]] = []
        self._coverage_pool: ContextThreadPool | None = None

    # -- Resource Explorer ---------------------------------------------------------------------------------
    def probe(self, check: Callable[[], None] = _noop) -> None:
        self._check = check
        if not self.types or self.config.resource_explorer == "off":
            return
        account = self.config.resource_explorer_account_id or self.management_account_id
        try:
            session = self.mgmt if account == self.management_account_id else self.sync.member(account)
        except (ClientError, BotoCoreError) as exc:
            self.probe_problems = [
                f"cannot assume the member role in resource_explorer_account_id {account} ({_said(exc)}): deploy the "
                "member-account role there, or unset resource_explorer_account_id"
            ]
            return
        found = explorer.probe(
            lambda region: self.sync.aws.client(session, "resource-explorer-2", region),
            account,
            self.config.region,
            self.org_id,
        )
        self.probe_problems = found.problems
        for problem in found.problems:
            log.info("resource_explorer_not_used", problem=problem[:300])
        if found.setup is None:
            return
        self.setup = found.setup
        self._session = session
        self.by_explorer = [t for t in self.types if explorer.EXPLORER_TYPES[t] in found.setup.supported]
        if self.by_explorer:
            self._known = self._cached()

    def summary(self) -> dict[str, Any]:
        if not self.types:
            return {}
        out: dict[str, Any] = {"used": bool(self.by_explorer), "types": self.by_explorer}
        if self.setup is not None:
            out |= {"account_id": self.setup.account_id, "region": self.setup.region, "view_arn": self.setup.view_arn}
        if self.by_explorer:
            out |= asdict(self.stats) | {
                "fallback_scopes": self.fallback_scopes,
                "unindexed_scopes": self.unindexed_scopes,
            }
        if self.probe_problems:
            out["problems"] = self.probe_problems
        if self.notes:
            out["notes"] = self.notes[:20]
        return out

    # -- per-account tasks -----------------------------------------------------------------------------------
    def account_tasks(self, account_id: str) -> list[Task]:
        if self.by_explorer:
            self._feed_coverage(account_id)
        tasks: list[Task] = []
        for kind in self.types:
            if kind not in self.by_explorer:
                tasks += self._service_tasks(account_id, kind)
        return tasks

    def _service_tasks(self, account_id: str, kind: str, region: str | None = None) -> list[Task]:
        stage = STAGES[kind]
        if kind == "s3_bucket":
            return [(account_id, "global", stage, self._s3)]
        work = self._sns if kind == "sns_topic" else self._sqs
        if region is not None:
            return [(account_id, region, stage, work)]
        if self.config.regions == "enabled":
            return [(account_id, "enabled", stage, self._each_enabled_region(work, stage))]
        return [(account_id, r, stage, work) for r in (self.config.regions or (self.config.region,))]

    def _s3(self, account_id: str, _: str) -> Iterator[InventoryItem]:
        s3 = self.sync.aws.client(self.sync.member(account_id), "s3", self.config.region)
        regions = None if self.config.regions == "enabled" else (self.config.regions or (self.config.region,))
        yield from storage_inventory.s3_items(s3, account_id, regions, _noop)

    def _sns(self, account_id: str, region: str) -> Iterator[InventoryItem]:
        sns = self.sync.aws.client(self.sync.member(account_id), "sns", region)
        yield from storage_inventory.sns_items(sns, account_id, region, _noop)

    def _sqs(self, account_id: str, region: str) -> Iterator[InventoryItem]:
        sqs = self.sync.aws.client(self.sync.member(account_id), "sqs", region)
        yield from storage_inventory.sqs_items(sqs, account_id, region, _noop)

    def _each_enabled_region(self, work: Work, stage: str) -> Work:
        def run(account_id: str, _: str) -> Iterator[InventoryItem]:
            ec2 = self.sync.aws.client(self.sync.member(account_id), "ec2", self.config.region)
            regions = sorted(r["RegionName"] for r in ec2.describe_regions(AllRegions=False).get("Regions", []))
            for region in regions:
                try:
                    yield from work(account_id, region)
                except (ClientError, BotoCoreError) as exc:
                    yield self.sync._error_item(exc, account_id, region, stage)

        return run

    # -- after the walk: Search, then the follow-ups -----------------------------------------------------------
    def after_walk(
        self, accounts: list[str], emit: Callable[[InventoryItem], None], check: Callable[[], None]
    ) -> Iterator[list[Task]]:
        """Runs the searches (on the caller's thread: one query at a time keeps under Search's 5/s quota) and
        yields the follow-up tasks per account: bucket encryption, and service listing where Search could not."""
        if not self.by_explorer or self.setup is None or not accounts:
            return
        client = self.sync.aws.client(self._session, "resource-explorer-2", self.setup.region)
        regions: list[str | None] = (
            [None] if self.config.regions == "enabled" else list(self.config.regions or (self.config.region,))
        )
        coverage = self._coverage(client, accounts, check)
        follow: dict[str, list[Task]] = {}
        # Each account's regions that have an index; the others are listed through the services.
        targets: dict[str, frozenset[str] | None] = {}
        unindexed: list[tuple[str, str | None]] = []
        for account in accounts:
            indexed = coverage.get(account, set())
            if not indexed:
                unindexed.append((account, None))
            elif regions == [None]:
                targets[account] = frozenset(indexed)
            else:
                mine = frozenset(r for r in regions if r in indexed)
                unindexed += [(account, r) for r in regions if r not in indexed]
                if mine:
                    targets[account] = mine
        self.unindexed_scopes = len(unindexed) * len(self.by_explorer)
        for kind in self.by_explorer:
            rtype = explorer.EXPLORER_TYPES[kind]
            try:
                found, fallback = explorer.search_type(client, self.setup.view_arn, rtype, targets, self.stats, check)
            except (ClientError, BotoCoreError) as exc:
                self.notes.append(f"Search for {rtype} failed ({_said(exc)}); listed per account")
                found, fallback = [], [(a, None) for a in targets]
            self.fallback_scopes += len(fallback)
            for account, region in fallback + unindexed:  # region None: all of the account's regions
                follow.setdefault(account, []).extend(self._service_tasks(account, kind, region))
            if kind == "s3_bucket":
                for account, buckets in explorer.grouped(found):
                    follow.setdefault(account, []).append(self._bucket_task(account, buckets))
                continue
            make = storage_inventory.topic_item if kind == "sns_topic" else storage_inventory.queue_item
            for f in found:
                emit(make(f.account_id, f.region, f.arn, f.tags))
        for _, tasks in sorted(follow.items()):
            yield self._dedupe(tasks)

    def _dedupe(self, tasks: list[Task]) -> list[Task]:
        """A ListBuckets fallback covers every region of the account: it replaces the account's other S3
        tasks (and is needed once)."""
        full_s3 = any(t[3] == self._s3 for t in tasks)
        out: list[Task] = []
        for task in tasks:
            if task[2] == "s3" and full_s3 and (task[3] != self._s3 or any(t[3] == self._s3 for t in out)):
                continue
            out.append(task)
        return out

    def _cache(self) -> dict[str, tuple[float, dict[str, set[str]]]]:
        cache: dict[str, tuple[float, dict[str, set[str]]]] = self.sync.integration.services.extra.setdefault(
            "resource_explorer_coverage", {}
        )
        return cache

    def _cached(self) -> dict[str, set[str]] | None:
        """The integration's coverage read within COVERAGE_TTL (indexes change rarely), or None."""
        known = self._cache().get(self.sync.integration.integration_id)
        if known is not None and time.monotonic() - known[0] < COVERAGE_TTL:
            return known[1]
        return None

    def _feed_coverage(self, account_id: str) -> None:
        self._fed.append(account_id)
        if len(self._fed) >= explorer.MEMBERS_PER_CALL:
            self._submit_coverage()

    def _submit_coverage(self) -> None:
        batch, self._fed = self._fed, []
        if not batch or self.setup is None:
            return
        if self._known is not None and all(a in self._known for a in batch):
            self._coverage_parts.append((batch, None))
            return
        if self._coverage_pool is None:
            self._coverage_pool = ContextThreadPool(max_workers=1, thread_name_prefix="re-coverage")
        client = self.sync.aws.client(self._session, "resource-explorer-2", self.setup.region)
        self._coverage_parts.append(
            (batch, self._coverage_pool.submit(explorer.indexed_regions, client, batch, self._check))
        )

    def _coverage(self, client: Any, accounts: list[str], check: Callable[[], None]) -> dict[str, set[str]]:
        """Which regions each account has an index in. A batch that could not be read counts as unindexed (its
        accounts go through the service APIs), with a note."""
        self._submit_coverage()
        fed = {a for batch, _ in self._coverage_parts for a in batch}
        rest = [a for a in accounts if a not in fed]
        for i in range(0, len(rest), explorer.MEMBERS_PER_CALL):  # accounts not fed through account_tasks
            self._fed = rest[i : i + explorer.MEMBERS_PER_CALL]
            self._submit_coverage()
        coverage: dict[str, set[str]] = {}
        complete = True
        try:
            for batch, future in self._coverage_parts:
                check()
                if future is None:
                    assert self._known is not None
                    coverage |= {a: self._known[a] for a in batch}
                    continue
                try:
                    coverage |= future.result()
                except (ClientError, BotoCoreError) as exc:
                    complete = False
                    self.notes.append(
                        f"ListIndexesForMembers failed ({_said(exc)}); {len(batch)} account(s) listed through their services"
                    )
        finally:
            if self._coverage_pool is not None:
                self._coverage_pool.shutdown(wait=False, cancel_futures=True)
        if complete:  # merged: a split sync's children each read their own accounts
            merged = (self._cached() or {}) | coverage
            self._cache()[self.sync.integration.integration_id] = (time.monotonic(), merged)
        return coverage

    def _bucket_task(self, account: str, buckets: list[explorer.Found]) -> Task:
        listed = [(f.arn.rsplit(":", 1)[-1], f.region, f.tags) for f in buckets]

        def work(account_id: str, _: str) -> Iterator[InventoryItem]:
            s3 = self.sync.aws.client(self.sync.member(account_id), "s3", self.config.region)
            yield from storage_inventory.bucket_items(s3, account_id, listed, _noop)

        return (account, "global", "s3", work)


def _said(exc: BaseException) -> str:
    """An AWS error as the result may repeat it: redacted (an error message may quote a token), and short."""
    return redact_text(str(exc))[:600]
