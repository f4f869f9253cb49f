"""AWS Resource Explorer (resource-explorer-2) for the sandbox: moto has no backend for it.

rest-json, every operation `POST /<Operation>`, shapes and errors as botocore's model has them. Indexes and
views are set up by the seed (or a test) through `ResourceExplorer.setup_organization`, the way Quick Setup
makes them: a LOCAL index in each chosen (account, region), one AGGREGATOR index in the aggregator account's
aggregator region, and an organisation-wide view there. An (account, region) left out (an SCP denied
CloudFormation there, as seed 001's troubleshooting describes) has no index, and its resources are absent
from every view. Resources are read live from moto's backends (S3 buckets, SNS topics, SQS queues, EKS
clusters) for the (account, region) pairs a view covers.

Search follows "Search query syntax reference": whitespace-separated terms; filters (`name:value`) are ANDed,
keywords ORed; comma-separated values are ORed; a leading `-` negates; `*` is allowed only at the end of a
value. Filters served: accountid, id, region, resourcetype, service, tag:key=value, tag.key, tag.value,
tag:none, tag:all. Tag filters need a view that includes the `tags` property (else ValidationException). At
most 1,000 results per query: past that, Count is {TotalResources: 1000, Complete: false} and paging stops at
1,000. ListResources takes the same filters (no keywords) and, having no Count to say so, is capped the same
way (conservative: the connector never relies on it for completeness).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.sandbox import protocol
from connector.sandbox.identity import PARTITION

SERVICE = "resource-explorer-2"
RESULT_CAP = 1000
DEFAULT_PAGE = 50
# What the sandbox indexes (a small part of the real list; ListSupportedResourceTypes answers with it).
SUPPORTED = (("s3", "s3:bucket"), ("sns", "sns:topic"), ("sqs", "sqs:queue"), ("eks", "eks:cluster"))
FILTERS = ("accountid", "id", "region", "resourcetype", "service", "tag", "tag.key", "tag.value")


class ReError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Index:
    account: str
    region: str
    type: str  # LOCAL | AGGREGATOR
    state: str = "ACTIVE"

    @property
    def arn(self) -> str:
        digest = hashlib.sha256(f"{self.account}/{self.region}".encode()).hexdigest()[:32]
        return f"arn:{PARTITION}:resource-explorer-2:{self.region}:{self.account}:index/{digest}"


@dataclass
class View:
    account: str
    region: str
    name: str
    scope: str  # an account ARN or the organisation's ARN
    include_tags: bool = True
    filter_string: str = ""

    @property
    def arn(self) -> str:
        digest = hashlib.sha256(f"{self.account}/{self.region}/{self.name}".encode()).hexdigest()[:32]
        return f"arn:{PARTITION}:resource-explorer-2:{self.region}:{self.account}:view/{self.name}/{digest}"


@dataclass(frozen=True)
class Resource:
    arn: str
    account: str
    region: str
    service: str
    type: str
    tags: tuple[tuple[str, str], ...]

    def to_wire(self, include_tags: bool, now: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Arn": self.arn,
            "OwningAccountId": self.account,
            "Region": self.region,
            "ResourceType": self.type,
            "Service": self.service,
            "LastReportedAt": now,
            "Properties": [],
        }
        if include_tags:
            data = [{"Key": k, "Value": v} for k, v in self.tags]
            out["Properties"] = [{"Name": "tags", "LastReportedAt": now, "Data": data}]
        return out


# -- the query language -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    name: str  # a filter name, or "" for a keyword
    values: tuple[str, ...]
    negated: bool = False


def parse_query(text: str, *, keywords: bool = True) -> list[Term]:
    terms = []
    for raw in text.split():
        negated = raw.startswith("-")
        token = raw[1:] if negated else raw
        name, sep, rest = token.partition(":")
        if sep and name.lower() in FILTERS:
            name = name.lower()
            if name == "tag" and rest.lower() in ("none", "all"):
                terms.append(Term("tag:" + rest.lower(), (), negated))
                continue
            values = tuple(v for v in rest.split(",") if v)
            if not values:
                raise ReError("ValidationException", f"The filter {name}: has no value.")
            for value in values:
                if "*" in value[:-1]:
                    raise ReError(
                        "ValidationException", f"A wildcard (*) is allowed only at the end of a value: {value}"
                    )
                if name == "tag" and "=" not in value:
                    raise ReError("ValidationException", f"The tag filter needs key=value: tag:{value}")
            terms.append(Term(name, values, negated))
        elif sep and name.lower().startswith(("tag", "resourcetype.")) and name.lower() not in FILTERS:
            raise ReError("ValidationException", f"The filter {name}: is not supported in this sandbox.")
        else:
            if not keywords:
                raise ReError("ValidationException", f"ListResources takes filters only, not the keyword {token!r}.")
            terms.append(Term("", (token,), negated))
    return terms


def _like(pattern: str, value: str) -> bool:
    pattern, value = pattern.lower(), value.lower()
    return value.startswith(pattern[:-1]) if pattern.endswith("*") else value == pattern


def _term_matches(term: Term, r: Resource) -> bool:
    tags = dict(r.tags)
    if term.name == "tag:none":
        return not tags
    if term.name == "tag:all":
        return True
    if term.name == "":
        word = term.values[0].lower().rstrip("*")
        return word in r.arn.lower() or any(word in v.lower() for v in tags.values())
    fields = {
        "accountid": [r.account],
        "id": [r.arn.rsplit("/", 1)[-1].rsplit(":", 1)[-1]],
        "region": [r.region],
        "resourcetype": [r.type],
        "service": [r.service],
        "tag.key": list(tags),
        "tag.value": list(tags.values()),
    }
    if term.name == "tag":
        return any(
            k.lower() == key.lower() and _like(value, v)
            for spec in term.values
            for key, _, value in [spec.partition("=")]
            for k, v in tags.items()
        )
    return any(_like(value, candidate) for value in term.values for candidate in fields[term.name])


def matches(terms: list[Term], r: Resource) -> bool:
    filters = [t for t in terms if t.name]
    keywords = [t for t in terms if not t.name]
    for term in filters:
        if _term_matches(term, r) == term.negated:
            return False
    positive = [t for t in keywords if not t.negated]
    if any(_term_matches(t, r) for t in keywords if t.negated):
        return False
    return not positive or any(_term_matches(t, r) for t in positive)


def _allowed(terms: list[Term], name: str, value: str) -> bool:
    """Whether a positive filter on `name` rules out `value` before any resource is read (cheap pruning)."""
    for term in terms:
        if term.name == name and not term.negated and not any(_like(v, value) for v in term.values):
            return False
    return True


# -- resources, read live from moto ---------------------------------------------------------------------------
def _resources(account: str, region: str, types: set[str]) -> Iterator[Resource]:
    if "s3:bucket" in types:
        from moto.s3.models import s3_backends

        s3: Any = dict.get(dict.get(s3_backends, account) or {}, PARTITION)
        for bucket in list(getattr(s3, "buckets", {}).values()):
            if bucket.region_name == region:
                tags = s3.tagger.list_tags_for_resource(bucket.arn).get("Tags", [])
                yield Resource(
                    bucket.arn, account, region, "s3", "s3:bucket", tuple((t["Key"], t["Value"]) for t in tags)
                )
    if "sns:topic" in types:
        from moto.sns.models import sns_backends

        sns: Any = dict.get(dict.get(sns_backends, account) or {}, region)
        for topic in list(getattr(sns, "topics", {}).values()):
            yield Resource(topic.arn, account, region, "sns", "sns:topic", tuple(sorted(topic._tags.items())))
    if "sqs:queue" in types:
        from moto.sqs.models import sqs_backends

        sqs: Any = dict.get(dict.get(sqs_backends, account) or {}, region)
        for queue in list(getattr(sqs, "queues", {}).values()):
            yield Resource(queue.queue_arn, account, region, "sqs", "sqs:queue", tuple(sorted(queue.tags.items())))
    if "eks:cluster" in types:
        from moto.eks.models import eks_backends

        eks: Any = dict.get(dict.get(eks_backends, account) or {}, region)
        for cluster in list(getattr(eks, "clusters", {}).values()):
            yield Resource(
                str(cluster.arn), account, region, "eks", "eks:cluster", tuple(sorted((cluster.tags or {}).items()))
            )


@dataclass
class ResourceExplorer:
    """Indexes and views of every account; `org_of(account)` -> the organisation ARN it belongs to, or ""."""

    org_of: Callable[[str], str] = lambda account: ""
    members_of: Callable[[str], list[str]] = lambda org_arn: []
    indexes: dict[tuple[str, str], Index] = field(default_factory=dict)
    views: dict[str, View] = field(default_factory=dict)
    default_views: dict[tuple[str, str], str] = field(default_factory=dict)
    delegated_admins: set[str] = field(default_factory=set)  # accounts registered for resource-explorer-2
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self._lock:
            self.indexes.clear()
            self.views.clear()
            self.default_views.clear()
            self.delegated_admins.clear()

    def setup_organization(
        self,
        aggregator_account: str,
        aggregator_region: str,
        accounts: list[str],
        regions: list[str],
        *,
        without_index: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
        aggregator_type: str = "AGGREGATOR",
        org_view: bool = True,
        include_tags: bool = True,
    ) -> str | None:
        """Quick Setup's result: LOCAL indexes in each (account, region) but those in `without_index`, the
        aggregator in (aggregator_account, aggregator_region) (`aggregator_type="LOCAL"` is the docs' pitfall
        "the index was manually created as Local"), and an organisation-wide default view there. Returns the
        view's ARN (None when `org_view` is False)."""
        with self._lock:
            for account in accounts:
                for region in regions:
                    if (account, region) not in without_index:
                        self.indexes[(account, region)] = Index(account, region, "LOCAL")
            self.indexes[(aggregator_account, aggregator_region)] = Index(
                aggregator_account, aggregator_region, aggregator_type
            )
            if not org_view:
                return None
            scope = self.org_of(aggregator_account) or f"arn:{PARTITION}:iam::{aggregator_account}:root"
            view = View(aggregator_account, aggregator_region, "organization-view", scope, include_tags)
            self.views[view.arn] = view
            self.default_views[(aggregator_account, aggregator_region)] = view.arn
            return view.arn

    def add_view(self, view: View, *, default: bool = False) -> str:
        with self._lock:
            self.views[view.arn] = view
            if default:
                self.default_views[(view.account, view.region)] = view.arn
        return view.arn

    # -- request handling ----------------------------------------------------------------------------------
    def handle(
        self, account: str, region: str, operation: str, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            params = json.loads(body or b"{}")
            if not isinstance(params, dict):
                raise ReError("ValidationException", "The request body must be a JSON object.")
            self._validate(operation, params)
            handler = getattr(self, "_op_" + operation, None)
            if handler is None:
                raise ReError("ValidationException", f"The sandbox does not serve {operation}.")
            answer = handler(account, region, params)
        except ReError as exc:
            status = {"ResourceNotFoundException": 404, "UnauthorizedException": 401, "AccessDeniedException": 403}
            return protocol.error_response(SERVICE, exc.code, exc.message, status.get(exc.code, 400))
        except ValueError:
            return protocol.error_response(SERVICE, "ValidationException", "The request body is not JSON.", 400)
        headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", "sandbox")]
        return 200, headers, json.dumps(answer).encode()

    @staticmethod
    def _validate(operation: str, params: dict[str, Any]) -> None:
        """The model's length and range constraints (botocore checks only some of them client-side)."""
        model = protocol.service_model(SERVICE)
        assert model is not None
        try:
            shape = model.operation_model(operation).input_shape
        except Exception:
            raise ReError("ValidationException", f"Unknown operation {operation}.") from None
        if shape is None:
            return
        for name, member in shape.members.items():
            value = params.get(name)
            if value is None:
                continue
            lo, hi = member.metadata.get("min"), member.metadata.get("max")
            size = value if member.type_name in ("integer", "long") else len(value) if hasattr(value, "__len__") else 0
            if (lo is not None and size < lo) or (hi is not None and size > hi):
                raise ReError(
                    "ValidationException",
                    f"1 validation error detected: Value at '{name}' failed to satisfy constraint: Member must "
                    f"have {'length' if member.type_name == 'string' else 'value'} between {lo} and {hi}",
                )

    def _index(self, account: str, region: str) -> Index:
        index = self.indexes.get((account, region))
        if index is None:
            raise ReError(
                "ResourceNotFoundException",
                f"Resource Explorer has no index in {region} for account {account}. Create one, or turn on "
                "Resource Explorer for the Region.",
            )
        return index

    def _op_GetIndex(self, account: str, region: str, _: dict[str, Any]) -> dict[str, Any]:
        index = self._index(account, region)
        return {"Arn": index.arn, "Type": index.type, "State": index.state, "Tags": {}}

    def _op_ListIndexes(self, account: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        wanted_type, regions = params.get("Type"), params.get("Regions") or []
        found = [
            {"Region": i.region, "Arn": i.arn, "Type": i.type}
            for (acct, r), i in sorted(self.indexes.items())
            if acct == account and (not wanted_type or i.type == wanted_type) and (not regions or r in regions)
        ]
        return self._page(found, params, "Indexes", 100)

    def _op_ListIndexesForMembers(self, account: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        org = self.org_of(account)
        management = org.split(":")[4] if org else ""
        if account != management and account not in self.delegated_admins:
            raise ReError(
                "AccessDeniedException",
                "Only the management account or a delegated administrator with service access enabled can list "
                "members' indexes.",
            )
        members = set(self.members_of(org))
        wanted = [str(a) for a in params.get("AccountIdList") or []]
        found = [
            {"AccountId": acct, "Region": r, "Arn": i.arn, "Type": i.type}
            for (acct, r), i in sorted(self.indexes.items())
            if acct in wanted and acct in members
        ]
        return self._page(found, params, "Indexes", 10)

    def _op_ListViews(self, account: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        arns = sorted(v.arn for v in self.views.values() if v.account == account and v.region == region)
        return self._page(arns, params, "Views", 50)

    def _op_GetView(self, account: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view(account, region, str(params.get("ViewArn", "")))
        return {
            "View": {
                "ViewArn": view.arn,
                "ViewName": view.name,
                "Owner": view.account,
                "LastUpdatedAt": datetime.now(UTC).isoformat(),
                "Scope": view.scope,
                "IncludedProperties": [{"Name": "tags"}] if view.include_tags else [],
                "Filters": {"FilterString": view.filter_string},
            },
            "Tags": {},
        }

    def _op_GetDefaultView(self, account: str, region: str, _: dict[str, Any]) -> dict[str, Any]:
        arn = self.default_views.get((account, region))
        return {"ViewArn": arn} if arn else {}

    def _op_ListSupportedResourceTypes(self, account: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        types = [{"Service": s, "ResourceType": t} for s, t in SUPPORTED]
        return self._page(types, params, "ResourceTypes", 1000)

    def _op_Search(self, account: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view_for(account, region, params.get("ViewArn"))
        terms = parse_query(str(params.get("QueryString", "")))
        found = self._matching(view, terms)
        page = self._page(found[:RESULT_CAP], params, "Resources", 1000, view.include_tags)
        page["ViewArn"] = view.arn
        page["Count"] = {"TotalResources": min(len(found), RESULT_CAP), "Complete": len(found) <= RESULT_CAP}
        return page

    def _op_ListResources(self, account: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view_for(account, region, params.get("ViewArn"))
        filters = params.get("Filters") or {}
        terms = parse_query(str(filters.get("FilterString", "")), keywords=False)
        page = self._page(self._matching(view, terms)[:RESULT_CAP], params, "Resources", 1000, view.include_tags)
        page["ViewArn"] = view.arn
        return page

    def _view(self, account: str, region: str, arn: str) -> View:
        view = self.views.get(arn)
        if view is None or view.region != region:
            raise ReError("ResourceNotFoundException", f"The view {arn} does not exist in {region}.")
        if view.account != account:
            raise ReError("UnauthorizedException", f"The view {arn} is not shared with account {account}.")
        return view

    def _view_for(self, account: str, region: str, arn: Any) -> View:
        self._index(account, region)
        if not arn:
            arn = self.default_views.get((account, region))
            if arn is None:
                raise ReError("ResourceNotFoundException", f"There is no default view in {region}: name a ViewArn.")
        return self._view(account, region, str(arn))

    def _covered(self, view: View) -> list[tuple[str, str]]:
        """(account, region) pairs whose resources the view shows: an organisation view in an aggregator
        region shows every indexed pair of the organisation's accounts; otherwise the view's own account, in
        every indexed region (aggregator) or its own region only (local)."""
        own = self.indexes.get((view.account, view.region))
        if own is None:
            return []
        if ":organizations::" in view.scope and own.type == "AGGREGATOR":
            members = set(self.members_of(view.scope))
            return sorted(key for key in self.indexes if key[0] in members)
        if own.type == "AGGREGATOR":
            return sorted(key for key in self.indexes if key[0] == view.account)
        return [(view.account, view.region)]

    def _matching(self, view: View, terms: list[Term]) -> list[Resource]:
        if not view.include_tags and any(t.name.startswith("tag") for t in terms):
            raise ReError("ValidationException", "Tag filters need a view that includes the tags property.")
        terms = terms + (parse_query(view.filter_string) if view.filter_string else [])
        types = {t for _, t in SUPPORTED if _allowed(terms, "resourcetype", t)}
        found = []
        for account, region in self._covered(view):
            if not (_allowed(terms, "accountid", account) and _allowed(terms, "region", region)):
                continue
            found += [r for r in _resources(account, region, types) if matches(terms, r)]
        return sorted(found, key=lambda r: r.arn)

    @staticmethod
    def _page(
        items: list[Any], params: dict[str, Any], key: str, limit: int, include_tags: bool = True
    ) -> dict[str, Any]:
        size = int(params.get("MaxResults") or min(limit, DEFAULT_PAGE))
        start = 0
        token = params.get("NextToken")
        if token:
            try:
                start = int(base64.urlsafe_b64decode(str(token).encode()).decode())
            except ValueError:
                raise ReError("ValidationException", "The NextToken is not valid.") from None
        chunk = items[start : start + size]
        now = datetime.now(UTC).isoformat()
        out: dict[str, Any] = {key: [i.to_wire(include_tags, now) if isinstance(i, Resource) else i for i in chunk]}
        if start + size < len(items):
            out["NextToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return out


def org_arn_of(account: str) -> str:
    """The ARN of the organisation `account` belongs to in moto's Organizations backend, or ""."""
    from moto.organizations.models import organizations_backends

    for per_account in list(dict.values(organizations_backends)):
        backend: Any = dict.get(per_account, PARTITION)
        org = getattr(backend, "org", None)
        if org is not None and any(a.id == account for a in getattr(backend, "accounts", [])):
            return str(org.arn)
        if org is not None and getattr(org, "master_account_id", "") == account:
            return str(org.arn)
    return ""


def org_members(org_arn: str) -> list[str]:
    from moto.organizations.models import organizations_backends

    for per_account in list(dict.values(organizations_backends)):
        backend: Any = dict.get(per_account, PARTITION)
        org = getattr(backend, "org", None)
        if org is not None and str(org.arn) == org_arn:
            return [str(org.master_account_id)] + [str(a.id) for a in backend.accounts]
    return []
