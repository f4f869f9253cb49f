"""Resource Explorer: is the organisation's aggregator index and organisation-wide view usable, and the
resources of one type in one region through Search, split to stay under its 1,000-result cap.

Probe (from the management account, or the delegated administrator's member role): ListIndexes(AGGREGATOR)
finds the aggregator region; GetIndex there must be ACTIVE; among ListViews, a view whose Scope is this
organisation's ARN, with no filter (a filtered view hides resources) and the `tags` property included (the
inventory carries tags), the region's default view preferred; ListSupportedResourceTypes says what it indexes.
Anything missing is a problem with its fix (the product docs' pitfalls: the management account outside the
Quick Setup targets, an index made LOCAL instead of AGGREGATOR, no organisation view), and discovery uses the
service APIs instead.

Coverage: ListIndexesForMembers says which (account, region) has an index; one without (the docs' SCP that
denied Quick Setup's CloudFormation there, or outside its targets) is listed through the service APIs.

Search: `resourcetype:<t> region:<a>,<b>,...` first (one query for every region); when Count.Complete is false
(more than 1,000 matches) it is split by account (`accountid:a,b,...`, at most ACCOUNTS_PER_QUERY so the query
stays under 1,011 characters), then by region, then the accounts are halved, down to one account in one
region, which falls back to the service APIs there if still past the cap. Only accounts the sync covers (active, not excluded) are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from connector.aws.errors import error_code

# The inventory's resource types that Resource Explorer can list, by its resource type names.
EXPLORER_TYPES = {"s3_bucket": "s3:bucket", "sns_topic": "sns:topic", "sqs_queue": "sqs:queue"}
ACCOUNTS_PER_QUERY = 60  # 60 x 13 characters + the filters < 1,011 (QueryString, API reference)
PAGE = 1000  # Search MaxResults 1-1000
RESULT_CAP = 1000


@dataclass(frozen=True)
class ExplorerSetup:
    account_id: str
    region: str  # the aggregator index's region
    view_arn: str
    supported: frozenset[str]


@dataclass
class Probe:
    setup: ExplorerSetup | None
    problems: list[str] = field(default_factory=list)  # each says what is wrong and what to fix
    calls: int = 0


def _first_error(exc: BaseException) -> str:
    return error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__


def probe(client_in: Callable[[str], Any], account_id: str, home_region: str, organization_id: str) -> Probe:
    """Whether Resource Explorer in `account_id` can serve this organisation's discovery (reads only)."""
    result = Probe(None)
    where = f"account {account_id}"
    try:
        home = client_in(home_region)
        result.calls += 1
        aggregators = [
            i for page in home.get_paginator("list_indexes").paginate(Type="AGGREGATOR") for i in page["Indexes"]
        ]
        if not aggregators:
            result.calls += 1
            local = [i["Region"] for page in home.get_paginator("list_indexes").paginate() for i in page["Indexes"]]
            if local:
                result.problems.append(
                    f"{where} has Resource Explorer indexes in {', '.join(sorted(local)[:8])} but none is the "
                    "aggregator: in the aggregator region's Settings change the index type to Aggregator (or "
                    "recreate it as an Aggregator), then create the organisation-wide view there"
                )
            else:
                result.problems.append(
                    f"{where} has no Resource Explorer index: the management account was probably not among the "
                    "Quick Setup targets (choose Entire Organization), or an SCP denied CloudFormation in the "
                    "aggregator region; create an aggregator index there and an organisation-wide view"
                )
            return result
        region = str(aggregators[0]["Region"])
        client = client_in(region)
        result.calls += 1
        index = client.get_index()
        if index.get("State") != "ACTIVE":
            result.problems.append(
                f"the aggregator index in {region} ({where}) is {index.get('State')}, not ACTIVE: wait for it, or "
                "recreate it if it stays so"
            )
            return result
        result.calls += 1
        default = client.get_default_view().get("ViewArn", "")
        org_scope = f":organization/{organization_id}"
        candidates: list[str] = []
        reasons: list[str] = []
        result.calls += 1
        for page in client.get_paginator("list_views").paginate():
            for arn in page.get("Views", []):
                result.calls += 1
                view = client.get_view(ViewArn=arn)["View"]
                if not str(view.get("Scope", "")).endswith(org_scope):
                    continue
                if (view.get("Filters") or {}).get("FilterString"):
                    reasons.append(f"view {arn} has a filter, which hides resources")
                    continue
                if not any(p.get("Name") == "tags" for p in view.get("IncludedProperties", [])):
                    reasons.append(f"view {arn} does not include the tags property")
                    continue
                candidates.append(arn)
        if not candidates:
            detail = ("; ".join(reasons) + ". ") if reasons else ""
            result.problems.append(
                f"no usable organisation-wide view in {region} ({where}). {detail}Create a view there with the "
                "organisation as its scope, no filter, and the tags property included"
            )
            return result
        view_arn = default if default in candidates else candidates[0]
        result.calls += 1
        supported = frozenset(
            str(t["ResourceType"])
            for page in client.get_paginator("list_supported_resource_types").paginate()
            for t in page.get("ResourceTypes", [])
        )
    except (ClientError, BotoCoreError) as exc:
        code = _first_error(exc)
        text = str(exc)
        hint = (
            "a service control policy denies Resource Explorer to the connector's role: allow "
            "resource-explorer-2 reads for it"
            if "service control policy" in text
            else "the connector's role lacks Resource Explorer read permissions (resource-explorer-2:ListIndexes, "
            "GetIndex, ListViews, GetView, GetDefaultView, Search, ListSupportedResourceTypes): update the template"
            if code in ("AccessDeniedException", "UnauthorizedException")
            else "the next sync tries again"
        )
        result.problems.append(f"Resource Explorer could not be read in {where} ({code}): {hint}")
        return result
    result.setup = ExplorerSetup(account_id, region, view_arn, supported)
    return result


@dataclass
class SearchStats:
    queries: int = 0
    pages: int = 0
    splits: int = 0
    incomplete: int = 0
    resources: int = 0


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    for prop in resource.get("Properties", []):
        if prop.get("Name") == "tags":
            data = prop.get("Data") or []
            return {str(t["Key"]): str(t.get("Value", "")) for t in data if isinstance(t, dict)}
    return {}


@dataclass(frozen=True)
class Found:
    arn: str
    account_id: str
    region: str
    tags: dict[str, str]


def search_type(
    client: Any,
    view_arn: str,
    resource_type: str,
    targets: Mapping[str, frozenset[str] | None],
    stats: SearchStats,
    check: Callable[[], None],
) -> tuple[list[Found], list[tuple[str, str | None]]]:
    """Every `resource_type` resource of each account in `targets`, in that account's regions (None: every
    region), and the (account, region) pairs that could not be listed completely (for the service APIs).

    Queries are as few as Search's 5/s quota wants: one for everything (`region:a,b,...` ORs the regions),
    then chunks of ACCOUNTS_PER_QUERY accounts, then one region at a time, then halves of the accounts."""
    found: list[Found] = []
    fallback: list[tuple[str, str | None]] = []

    def regions_of(chunk: Sequence[str]) -> frozenset[str] | None:
        wanted = [targets[a] for a in chunk]
        return None if any(r is None for r in wanted) else frozenset().union(*[r for r in wanted if r is not None])

    def run(chunk: Sequence[str], named: bool, regions: frozenset[str] | None) -> None:
        check()
        query = f"resourcetype:{resource_type}"
        if regions is not None:
            query += " region:" + ",".join(sorted(regions))
        if named:
            query += " accountid:" + ",".join(chunk)
        stats.queries += 1
        members = set(chunk)
        batch: list[Found] = []
        pages = client.get_paginator("search").paginate(
            QueryString=query, ViewArn=view_arn, PaginationConfig={"PageSize": PAGE}
        )
        for n, page in enumerate(pages):
            stats.pages += 1
            if n == 0 and not page.get("Count", {}).get("Complete", True):
                stats.incomplete += 1
                split(chunk, named, regions)
                return
            for r in page.get("Resources", []):
                owner, region = str(r.get("OwningAccountId", "")), str(r.get("Region", ""))
                own = targets.get(owner)
                if owner in members and (own is None or region in own):
                    batch.append(Found(str(r["Arn"]), owner, region, _tags(r)))
        found.extend(batch)
        stats.resources += len(batch)

    def split(chunk: Sequence[str], named: bool, regions: frozenset[str] | None) -> None:
        stats.splits += 1
        if not named:
            for i in range(0, len(chunk), ACCOUNTS_PER_QUERY):
                part = chunk[i : i + ACCOUNTS_PER_QUERY]
                run(part, True, regions_of(part))
        elif regions is not None and len(regions) > 1:
            for region in sorted(regions):
                part = [a for a in chunk if (targets[a] is None or region in (targets[a] or ()))]
                run(part, True, frozenset((region,)))
        elif len(chunk) > 1:
            half = len(chunk) // 2
            for part in (chunk[:half], chunk[half:]):
                run(part, True, regions if regions is not None and len(regions) == 1 else regions_of(part))
        else:
            fallback.append((chunk[0], next(iter(regions)) if regions else None))

    ordered = sorted(targets)
    if ordered:  # a few accounts (a split sync's child, a small organisation): name them from the start
        run(ordered, len(ordered) <= ACCOUNTS_PER_QUERY, regions_of(ordered))
    return found, fallback


MEMBERS_PER_CALL = 10  # ListIndexesForMembers: AccountIdList 1-10, MaxResults 1-10


def indexed_regions(client: Any, accounts: Sequence[str], check: Callable[[], None]) -> dict[str, set[str]]:
    """Where each account has an index (ListIndexesForMembers, management account or delegated administrator
    only): an (account, region) without one is absent from every view, so discovery lists it through the
    service APIs."""
    out: dict[str, set[str]] = {a: set() for a in accounts}
    ordered = sorted(accounts)
    for i in range(0, len(ordered), MEMBERS_PER_CALL):
        check()
        pages = client.get_paginator("list_indexes_for_members").paginate(
            AccountIdList=ordered[i : i + MEMBERS_PER_CALL], PaginationConfig={"PageSize": MEMBERS_PER_CALL}
        )
        for page in pages:
            for index in page.get("Indexes", []):
                out.setdefault(str(index["AccountId"]), set()).add(str(index["Region"]))
    return out


def grouped(found: list[Found]) -> Iterator[tuple[str, list[Found]]]:
    by_account: dict[str, list[Found]] = {}
    for f in found:
        by_account.setdefault(f.account_id, []).append(f)
    yield from sorted(by_account.items())
