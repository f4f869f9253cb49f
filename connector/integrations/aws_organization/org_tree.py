"""Walk an AWS Organization: roots, OUs at any depth, accounts per parent, with tags.

Every List* call uses a boto3 paginator with PageSize 20 (the Organizations maximum; moto accepts more,
so the cap is ours to keep). Paginators loop past empty pages until NextToken is null and raise on a
repeated token. Excluded OUs drop their whole subtree; excluded accounts are skipped.

Tags take one ListTagsForResource per account and OU: on a 1,000-account organisation that is 1,000 of the
walk's ~1,070 calls. The pages must follow one another (NextToken), the tags need not: each page's tag calls
run `tag_workers` at a time (4: Organizations throttles per account at a few calls per second, and botocore
retries the odd TooManyRequestsException), in page order.

An account-scoped (split) job resolves its named accounts instead of walking: DescribeAccount, ListParents up
to the root, DescribeOrganizationalUnit per OU on the way (remembered), tags: ~5 chained calls per account, so
`resolve_workers` (8) accounts are resolved at once, yielded in the order asked. Serially, a 500-account child
spent ~100 s at 40 ms per call before its first scope; 8 at a time, ~13 s while its scopes already run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import PaginationError

from connector.errors import ConnectorError, ErrorCode
from connector.integrations.base import ContextThreadPool

PAGE = {"PageSize": 20}


@dataclass(frozen=True)
class OrgUnit:
    id: str
    name: str
    parent_id: str
    path: str  # "Root/Workloads/Prod"
    arn: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    email: str
    state: str  # State, falling back to Status (being retired in 2026)
    parent_id: str
    path: str
    arn: str = ""
    joined: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state == "ACTIVE"


def _pages(client: Any, operation: str, paged: bool = True, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Pages of an Organizations List* call; `paged=False` for calls without MaxResults (ListTagsForResource)."""
    config = {"PaginationConfig": PAGE} if paged else {}
    try:
        yield from client.get_paginator(operation).paginate(**kwargs, **config)
    except PaginationError as exc:
        if "same next token" not in str(exc):
            raise
        raise ConnectorError(
            ErrorCode.UNAVAILABLE, f"organizations {operation} returned the same NextToken twice; retry the sync later"
        ) from None


def tags_of(client: Any, resource_id: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for page in _pages(client, "list_tags_for_resource", paged=False, ResourceId=resource_id):
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
    return tags


def ancestors(client: Any, child_id: str) -> list[str]:
    """Parent ids from the direct parent up to the root (Organizations nests at most five OUs)."""
    chain: list[str] = []
    current = child_id
    for _ in range(8):
        parents = client.list_parents(ChildId=current).get("Parents", [])
        if not parents:
            break
        current = parents[0]["Id"]
        chain.append(current)
        if parents[0].get("Type") == "ROOT":
            break
    return chain


def account_state(raw: dict[str, Any]) -> str:
    return str(raw.get("State") or raw.get("Status") or "UNKNOWN")


@dataclass
class OrgWalk:
    """Depth-first walk from a start parent (the root, or the integration's OU scope)."""

    client: Any
    excluded_ous: frozenset[str] = frozenset()
    excluded_accounts: frozenset[str] = frozenset()
    with_tags: bool = True
    check: Callable[[], None] = lambda: None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    tag_workers: int = 4
    resolve_workers: int = 8

    def _tags(self, pool: ContextThreadPool | None, ids: list[str]) -> list[dict[str, str]]:
        """Tags of `ids`, in order; concurrently when there is a pool and more than one id."""
        if not self.with_tags:
            return [{} for _ in ids]
        if pool is None or len(ids) < 2:
            return [tags_of(self.client, i) for i in ids]
        return list(pool.map(lambda resource_id: tags_of(self.client, resource_id), ids))

    _ou_names: dict[str, str] = field(default_factory=dict)
    _ou_lock: threading.Lock = field(default_factory=threading.Lock)

    def roots(self) -> list[dict[str, Any]]:
        return [root for page in _pages(self.client, "list_roots") for root in page.get("Roots", [])]

    def walk(self, start_id: str, start_path: str) -> Iterator[OrgUnit | Account]:
        if self.with_tags and self.tag_workers > 1:
            with ContextThreadPool(max_workers=self.tag_workers, thread_name_prefix="org-tags") as pool:
                yield from self._walk(start_id, start_path, pool)
        else:
            yield from self._walk(start_id, start_path, None)

    def _walk(self, start_id: str, start_path: str, pool: ContextThreadPool | None) -> Iterator[OrgUnit | Account]:
        stack = [(start_id, start_path)]
        while stack:
            self.check()
            parent_id, path = stack.pop()
            for page in _pages(self.client, "list_accounts_for_parent", ParentId=parent_id):
                accounts = []
                for raw in page.get("Accounts", []):
                    if raw["Id"] in self.excluded_accounts:
                        self.skipped.append((raw["Id"], "excluded_account_ids"))
                        continue
                    accounts.append(raw)
                for raw, tags in zip(accounts, self._tags(pool, [raw["Id"] for raw in accounts]), strict=True):
                    yield Account(
                        id=raw["Id"],
                        name=raw.get("Name", ""),
                        email=raw.get("Email", ""),
                        state=account_state(raw),
                        parent_id=parent_id,
                        path=path,
                        arn=raw.get("Arn", ""),
                        joined=str(raw.get("JoinedTimestamp", "")),
                        tags=tags,
                    )
            children = []
            for page in _pages(self.client, "list_organizational_units_for_parent", ParentId=parent_id):
                units = []
                for raw in page.get("OrganizationalUnits", []):
                    if raw["Id"] in self.excluded_ous:
                        self.skipped.append((raw["Id"], "excluded_ou_ids"))
                        continue
                    units.append(raw)
                for raw, tags in zip(units, self._tags(pool, [raw["Id"] for raw in units]), strict=True):
                    ou = OrgUnit(
                        id=raw["Id"],
                        name=raw.get("Name", ""),
                        parent_id=parent_id,
                        path=f"{path}/{raw.get('Name', raw['Id'])}",
                        arn=raw.get("Arn", ""),
                        tags=tags,
                    )
                    children.append(ou)
                    yield ou
            stack.extend((ou.id, ou.path) for ou in reversed(children))

    def resolve(self, account_ids: list[str], scope_id: str | None) -> Iterator[Account]:
        """The named accounts without walking the tree: DescribeAccount, their ancestors (ListParents) for the
        path and the exclusion / scope rules, and tags. What an account-scoped (split) sync job needs:
        `resolve_workers` accounts at a time, yielded in the order of `account_ids`."""
        if self.resolve_workers < 2 or len(account_ids) < 2:
            for account_id in account_ids:
                found = self._resolve_one(account_id, scope_id)
                if found is not None:
                    yield found
            return
        with ContextThreadPool(max_workers=self.resolve_workers, thread_name_prefix="org-resolve") as pool:
            futures = [pool.submit(self._resolve_one, account_id, scope_id) for account_id in account_ids]
            try:
                for future in futures:
                    found = future.result()
                    if found is not None:
                        yield found
            finally:  # a failure or a consumer that stops: nothing more is asked
                for future in futures:
                    future.cancel()

    def _resolve_one(self, account_id: str, scope_id: str | None) -> Account | None:
        self.check()
        if account_id in self.excluded_accounts:
            self.skipped.append((account_id, "excluded_account_ids"))
            return None
        raw = self.client.describe_account(AccountId=account_id)["Account"]
        ancestors = self._ancestors(account_id)
        excluded = next((ou for ou in ancestors if ou in self.excluded_ous), None)
        if excluded is not None:
            self.skipped.append((account_id, "excluded_ou_ids"))
            return None
        if scope_id and not scope_id.startswith("r-") and scope_id not in ancestors:
            self.skipped.append((account_id, "outside organizational_unit_id"))
            return None
        return Account(
            id=account_id,
            name=raw.get("Name", ""),
            email=raw.get("Email", ""),
            state=account_state(raw),
            parent_id=ancestors[0] if ancestors else "",
            path=self._path(ancestors),
            arn=raw.get("Arn", ""),
            joined=str(raw.get("JoinedTimestamp", "")),
            tags=tags_of(self.client, account_id) if self.with_tags else {},
        )

    def _ancestors(self, child_id: str) -> list[str]:
        return ancestors(self.client, child_id)

    def _ou_name(self, ou_id: str) -> str:
        name = self._ou_names.get(ou_id)
        if name is None:
            with self._ou_lock:  # concurrent resolves: each OU described once (a handful of OUs, rarely contended)
                name = self._ou_names.get(ou_id)
                if name is None:
                    ou = self.client.describe_organizational_unit(OrganizationalUnitId=ou_id)["OrganizationalUnit"]
                    name = self._ou_names[ou_id] = ou.get("Name", ou_id)
        return name

    def path_of(self, ou_id: str) -> str:
        """Root/.../Name path of an OU used as the scope (ListParents up to the root)."""
        return self._path([ou_id, *self._ancestors(ou_id)])

    def _path(self, chain: list[str]) -> str:
        """Root/.../Name from a chain of parent ids, nearest first (as _ancestors gives it)."""
        return "/".join(["Root", *reversed([self._ou_name(ou) for ou in chain if ou.startswith("ou-")])])
