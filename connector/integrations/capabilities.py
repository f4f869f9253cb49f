"""The small interfaces every integration type and target kind implements, checked at registration.

An integration type (`Integration` subclass: aws_organization, kubernetes, eks_aws_auth, lambda_custom, noop)
holds one integration's validated settings and its shared handles (credentials, a cluster connection). What
it can do is offered by separate capability objects, one package per target kind, made from the integration
(baton-sdk's connectorbuilder is the model):

  Syncer         sync(request, ctx) -> result         emits inventory items through ctx
  Provisioner    describe(request, ctx) -> Effect     what the grant would really give (reads only)
                 grant(request, effect, ctx) -> result
                 revoke(request, ctx) -> result       idempotent; already gone is success
  ExpiryScanner  expired(scan) -> ExpiredGrant...     the expired (or undecodable) records in its own targets
  DriftReporter  drift(scope) -> InventoryItem...     where its records and what exists disagree (reads only)
  Auditable      audit_subject(request, effect)       whose activity to collect for a grant (None: audit off)
                 audit(subject, start, end) -> AuditSummary   what that principal did, bounded, no raw logs

A kind that changes anything must also be an ExpiryScanner (`IntegrationSpec`/`KindSpec` check it), so no
grant can outlive its expiry because its kind forgot to look. Registration is keyed by integration type and
target resource type (connector.jobs.registry); adding a kind is one package and one registry line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from connector.integrations.base import (
    GrantRequest,
    InventoryItem,
    JobContext,
    RevokeRequest,
    Services,
    SyncRequest,
)
from connector.integrations.effect import Effect


@runtime_checkable
class Syncer(Protocol):
    def sync(self, request: SyncRequest, ctx: JobContext) -> dict[str, Any]: ...


@runtime_checkable
class Provisioner(Protocol):
    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect: ...

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]: ...

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ExpiryScan:
    """One sweep's question to a scanner: which of your records are expired at `now`? `full` asks it to look
    everywhere (a periodic full scan), not only where this process granted."""

    now: int  # epoch seconds
    full: bool
    check: Callable[[], None] = lambda: None  # raises when the sweep must stop (deadline, shutdown)
    # A part of the scan failed (one account or region) and the rest went on: say where and why. The expiry
    # loop warns when a place starts failing and when it recovers, not on every sweep.
    problem: Callable[[str, str], None] = lambda where, error: None


@dataclass(frozen=True)
class ExpiredGrant:
    """An expired (or undecodable) grant record found in a target, and the revoke that removes it."""

    place: str  # where the record lives, human-readable; part of the event id
    grant_key: str  # the record's key there (stable per grant)
    expires_epoch: int | None  # None: the record could not be decoded
    request: RevokeRequest | None  # the same revoke a job would make; None: the record names nothing to revoke
    problem: str = ""  # why the record could not be decoded, when it could not


@runtime_checkable
class ExpiryScanner(Protocol):
    def expired(self, scan: ExpiryScan) -> Iterator[ExpiredGrant]: ...


@dataclass(frozen=True)
class DriftScope:
    """One account's part of a drift report: its regions (resolved by the sync) and the time it is judged at."""

    account_id: str
    regions: tuple[str, ...]
    now: int  # epoch seconds


@runtime_checkable
class DriftReporter(Protocol):
    """A kind that can compare its own records (the ledger) with what exists, changing nothing."""

    def drift(self, scope: DriftScope) -> Iterator[InventoryItem]: ...


# What a drift item says happened (attribute `problem`):
RECORD_WITHOUT_EFFECT = "record_without_effect"  # the ledger says granted; the access is not there
EFFECT_PAST_EXPIRY = "effect_past_expiry"  # the record has expired and the access is still there
EFFECT_WITHOUT_RECORD = "effect_without_record"  # access under the connector's name that no record accounts for
FOREIGN_ACCESS = "foreign_access"  # someone else added access to a thing the connector manages


def drift_item(
    kind: str,
    problem: str,
    where: str,
    *,
    account_id: str,
    region: str = "",
    grant_key: str = "",
    expires_epoch: int | None = None,
    details: str,
    what_to_do: str,
) -> InventoryItem:
    """One inventory item of type `drift`: what disagrees, where, and what a person should do about it."""
    attributes: dict[str, Any] = {
        "kind": kind,
        "problem": problem,
        "where": where,
        "details": details[:500],
        "what_to_do": what_to_do,
    }
    if grant_key:
        attributes["grant_key"] = grant_key
    if expires_epoch is not None:
        attributes["expires_epoch"] = expires_epoch
    return InventoryItem(
        type="drift",
        id=f"{kind}:{problem}:{where}:{grant_key}"[:1000],
        name=f"{problem} {where}"[:256],
        account_id=account_id,
        region=region,
        attributes=attributes,
    )


@dataclass(frozen=True)
class AuditSubject:
    """Whose activity to collect for one grant, and where: worked out from the Effect when the grant is made and
    kept (JSON) until the audit runs after the revoke. `source` names the log: cloudtrail (AWS grants),
    eks_audit_log (EKS access entries), ssm_sessions (EC2 through Session Manager)."""

    source: str
    account_id: str
    principal: str  # the IAM role / principal ARN that received the access
    regions: tuple[str, ...] = ()
    services: tuple[str, ...] = ()  # CloudTrail event sources to read (s3, sns, ...)
    cluster: str = ""  # EKS
    username: str = ""  # EKS: the access entry's Kubernetes username (template)
    resources: tuple[str, ...] = ()  # e.g. SSM target instance ids

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditSubject:
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.__dataclass_fields__
        }
        return cls(**fields)


@dataclass(frozen=True)
class AuditSummary:
    """A bounded summary of what a principal did while a grant was live: counts, never the raw log lines."""

    events: int
    by_action: dict[str, int]  # e.g. "sqs:GetQueueAttributes" or "list pods": count (top 25)
    errors: int  # calls refused (AccessDenied, 403, ...)
    first: str = ""  # ISO times of the first and last event
    last: str = ""
    resources: tuple[str, ...] = ()  # up to 25 ARNs / namespaces touched
    truncated: bool = False  # the reading stopped at its bound: more happened than is counted
    notes: tuple[str, ...] = ()  # what the source cannot show (e.g. CloudTrail's event history has no data events)


@runtime_checkable
class Auditable(Protocol):
    def audit_subject(self, request: GrantRequest, effect: Effect) -> AuditSubject | None: ...

    def audit(self, subject: AuditSubject, start: datetime, end: datetime) -> AuditSummary: ...


class Integration:
    """One integration: its id, validated settings and shared handles. Subclasses set `type_id`, parse their
    settings in `__init__` (raise InvalidSettings naming the setting, so a bad setting is a non-retryable
    result before any call is made) and may set `default_resource_type` for targets that name none."""

    type_id: ClassVar[str]
    default_resource_type: ClassVar[str | None] = None

    def __init__(self, integration_id: str, settings: Mapping[str, Any], services: Services) -> None:
        self.integration_id = integration_id
        self.settings = settings
        self.services = services
        self.parts: dict[str, Any] = {}  # capability objects made from this integration, by resource type
        # The capability objects of every kind of this integration's type (set by the registry): how a Syncer
        # reaches the kinds' DriftReporters without importing them.
        self.kind_parts: Callable[[], list[Any]] = list


@dataclass(frozen=True)
class IntegrationSpec:
    """An integration type: its class, and the Syncer made from an instance (None: it does not sync)."""

    cls: type[Integration]
    syncer: Callable[[Any], Syncer] | None = None

    @property
    def type_id(self) -> str:
        return self.cls.type_id


@dataclass(frozen=True)
class KindSpec:
    """A target kind: the integration type it runs under, the target `resource_type` that selects it, and the
    factory that makes its Provisioner (which is also its ExpiryScanner) from an integration instance.
    `changes_nothing` exempts a diagnostic kind (noop) from having an ExpiryScanner."""

    integration_type: str
    resource_type: str
    factory: Callable[[Any], Provisioner]
    changes_nothing: bool = False
