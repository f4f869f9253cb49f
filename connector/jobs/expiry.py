"""Revoke expired grants locally, with or without the control plane.

Every grant records its expiry in the target itself, so the record survives restarts and is shared by all
replicas:
  EKS              tag `access-connector/grant/<key>` = "exp=<epoch> <Policy>=<scope> ..." on the access entry
  IAM              tag `access-connector/grant/<key>` = "exp=<epoch> policy=<inline policy>" on the role
  Identity Center  tag `access-connector/grant/<key>` = "exp=<epoch> acct=<id> USER|GROUP=<id> own=<0|1>" on
                   the permission set (assignments cannot carry tags; 50 tags per permission set)

API (synchronous; the agent runs it in its worker pool, e.g. every 60 s, and also while it cannot reach the
control plane):

    sweeper = ExpirySweeper(dispatcher.registry, dispatcher.services, state_file=Path(...))  # file optional
    sweeper.observe(integration_id, integration_type, settings)   # for every job's integration
    sweeper.track(integration_instance)                           # optional: reuse a live instance
    events = sweeper.sweep()            # -> list[ExpiryEvent]; to_proto_fields() for ReportEvents

What a sweep scans, per aws_organization integration (bounded and cheap):
  - Identity Center: every permission set's tags (one ListTagsForResource per permission set), each sweep.
  - EKS and IAM: the clusters and roles this process granted on (noted by the integration before its first
    call, in the shared Services, so build the sweeper on the dispatcher's Services) on every sweep; everything (accounts x regions x clusters x access entries, accounts x roles) on
    the first sweep after start-up and then every `full_scan_interval` (default 1 h), which catches grants
    made by another replica or before a restart. Scan failures in one place are logged and skipped.
Every expired record is revoked through the integration's own `revoke` (the same idempotent path a revoke
job takes) and audited. Events: id stable per (integration, place, grant, expiry) and outcome, type
"grant.expired_revoked". After a successful revoke the record is gone, so the next sweep neither finds it
nor calls anything mutating; a failed revoke keeps its record and is retried on every sweep, but its
failure event is produced once per process. The agent resends events until ReportEvents accepts them (the
control plane deduplicates by id).

`observe` keeps integration settings (never secrets) in memory and, when `state_file` is set, on disk, so a
sweeper started while the control plane is down still knows what to sweep.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from connector.aws.errors import classify_aws_error
from connector.errors import ConnectorError, ErrorCode
from connector.integrations import eks_access, iam_access, identity_center_access
from connector.integrations.aws_organization import AwsOrganizationIntegration
from connector.integrations.base import Integration, JobContext, RevokeRequest, Services
from connector.jobs import audit
from connector.jobs.registry import Registry
from connector.logging import get_logger
from connector.v1 import connector_pb2

log = get_logger("connector.jobs.expiry")
EVENT_TYPE = "grant.expired_revoked"
DEFAULT_FULL_SCAN_INTERVAL = 3600.0
REVOKE_TIMEOUT = 300.0  # each revoke gets this long, like a job's deadline


@dataclass(frozen=True)
class ExpiryEvent:
    """One revoke of an expired grant, for ReportEvents (ConnectorEvent)."""

    id: str
    time: datetime
    integration_id: str
    grant_id: str  # the grant key's suffix: the grant id itself unless it had to be hashed into a tag key
    outcome: Literal["succeeded", "failed"]
    details: dict[str, Any] = field(default_factory=dict)
    error_code: str = ""
    error_message: str = ""
    retryable: bool = False
    type: str = EVENT_TYPE

    def to_proto(self) -> connector_pb2.ConnectorEvent:
        """The ConnectorEvent to send in ReportEventsRequest.events."""
        event = connector_pb2.ConnectorEvent(
            id=self.id,
            type=self.type,
            integration_id=self.integration_id,
            grant_id=self.grant_id,
            outcome=connector_pb2.OUTCOME_SUCCEEDED if self.outcome == "succeeded" else connector_pb2.OUTCOME_FAILED,
        )
        event.time.FromDatetime(self.time.astimezone(UTC).replace(tzinfo=None))
        event.details.update(json.loads(json.dumps(self.details, default=str)))
        if self.outcome == "failed":
            event.error.CopyFrom(
                connector_pb2.JobError(code=self.error_code, message=self.error_message, retryable=self.retryable)
            )
        return event


@dataclass(frozen=True)
class Expired:
    """An expired grant found in a target, and how to revoke it."""

    kind: str  # eks | iam | identity_center
    place: str  # human-readable location, part of the event id
    grant_key: str
    expires_epoch: int
    principal: str
    target: dict[str, Any]

    @property
    def grant_id(self) -> str:
        # grant_tag_key(suffix) == grant_key, so revoking with the suffix addresses exactly this record.
        return self.grant_key.removeprefix(eks_access.GRANT_PREFIX)


def event_id(integration_id: str, expired: Expired, outcome: str) -> str:
    digest = hashlib.sha256(
        f"{integration_id}|{expired.kind}|{expired.place}|{expired.grant_key}|{expired.expires_epoch}".encode()
    ).hexdigest()[:32]
    return f"expiry-{digest}" + ("" if outcome == "succeeded" else "-failed")


class ExpirySweeper:
    def __init__(
        self,
        registry: Registry,
        services: Services,
        *,
        state_file: Path | None = None,
        full_scan_interval: float = DEFAULT_FULL_SCAN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.services = services
        self.state_file = state_file
        self.full_scan_interval = full_scan_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._integrations: dict[str, Integration] = {}
        self._settings: dict[str, tuple[str, dict[str, Any]]] = {}
        self._last_full: dict[str, float] = {}
        self._failures_reported: set[str] = set()
        if state_file is not None and state_file.exists():
            self._load(state_file)

    # -- what to sweep -----------------------------------------------------------------------------------
    def track(self, integration: Integration) -> None:
        """Sweep this (dispatcher-owned) instance: it knows where this process granted."""
        with self._lock:
            self._integrations[integration.integration_id] = integration

    def observe(self, integration_id: str, integration_type: str, settings: Mapping[str, Any]) -> None:
        """Remember an integration seen in a job (settings only; no secrets live there)."""
        data = json.loads(json.dumps(dict(settings), default=str))
        with self._lock:
            if self._settings.get(integration_id) == (integration_type, data):
                return
            self._settings[integration_id] = (integration_type, data)
            current = self._integrations.get(integration_id)
            if current is not None and (current.type_id, dict(current.settings)) != (integration_type, data):
                del self._integrations[integration_id]
        if self.state_file is not None:
            self._save(self.state_file)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            for iid, entry in raw.get("integrations", {}).items():
                self._settings[str(iid)] = (str(entry["type"]), dict(entry["settings"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("expiry_state_unreadable", path=str(path), error=str(exc)[:200])

    def _save(self, path: Path) -> None:
        with self._lock:
            data = {"integrations": {i: {"type": t, "settings": s} for i, (t, s) in self._settings.items()}}
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    def _active(self) -> list[Integration]:
        with self._lock:
            settings = dict(self._settings)
            instances = dict(self._integrations)
        for iid, (type_id, data) in settings.items():
            if iid in instances:
                continue
            cls = self.registry.get(type_id)
            if cls is None:
                continue
            try:
                instances[iid] = cls(iid, data, self.services)
            except ConnectorError as exc:
                log.warning("expiry_integration_invalid", integration_id=iid, error=exc.message[:200])
                continue
            with self._lock:
                self._integrations.setdefault(iid, instances[iid])
        return list(instances.values())

    # -- the sweep ---------------------------------------------------------------------------------------
    def sweep(self, now: datetime | None = None) -> list[ExpiryEvent]:
        """Find and revoke every expired grant; returns the events to report. Never raises."""
        now = now or datetime.now(UTC)
        events: list[ExpiryEvent] = []
        for integration in self._active():
            if not isinstance(integration, AwsOrganizationIntegration):
                continue
            full = self._full_due(integration.integration_id)
            try:
                found = list(self._expired(integration, int(now.timestamp()), full))
            except Exception as exc:  # a failure to scan must not stop the other integrations
                log.warning("expiry_scan_failed", integration_id=integration.integration_id, error=str(exc)[:300])
                continue
            if full:
                with self._lock:
                    self._last_full[integration.integration_id] = self._clock()
            for expired in found:
                event = self._revoke(integration, expired, now)
                if event is not None:
                    events.append(event)
        return events

    def _full_due(self, integration_id: str) -> bool:
        with self._lock:
            last = self._last_full.get(integration_id)
        return last is None or self._clock() - last >= self.full_scan_interval

    def _revoke(self, integration: Integration, expired: Expired, now: datetime) -> ExpiryEvent | None:
        started = time.monotonic()
        ctx = JobContext(
            job_id=f"expiry-{expired.kind}",
            attempt=1,
            connector_id=self.services.connector_id,
            integration_id=integration.integration_id,
            deadline=started + REVOKE_TIMEOUT,
        )
        request = RevokeRequest(grant_id=expired.grant_id, principal=expired.principal, target=expired.target)
        error: ConnectorError | None = None
        result: dict[str, Any] = {}
        try:
            result = integration.revoke(request, ctx)
        except ConnectorError as exc:
            error = exc
        except Exception as exc:
            error = classify_aws_error(exc) or ConnectorError(
                ErrorCode.INTERNAL, f"unexpected {type(exc).__name__}: {str(exc)[:300]}", retryable=False
            )
        outcome: Literal["succeeded", "failed"] = "failed" if error is not None else "succeeded"
        eid = event_id(integration.integration_id, expired, outcome)
        audit.record(
            action="revoke",
            source="expiry",
            grant_id=expired.grant_id,
            job_id=eid,
            attempt=1,
            integration_id=integration.integration_id,
            integration_type=integration.type_id,
            principal=expired.principal,
            target=expired.target,
            dry_run=False,
            outcome=outcome,
            error=error,
            duration_s=time.monotonic() - started,
            result=result,
        )
        if error is not None:
            with self._lock:
                if eid in self._failures_reported:
                    return None
                self._failures_reported.add(eid)
        details = {
            "kind": expired.kind,
            "place": expired.place,
            "principal": expired.principal,
            "expired_at": datetime.fromtimestamp(expired.expires_epoch, UTC).isoformat(),
            "target": expired.target,
            "calls": len(result.get("calls", [])) if isinstance(result.get("calls"), list) else 0,
        }
        return ExpiryEvent(
            id=eid,
            time=now,
            integration_id=integration.integration_id,
            grant_id=expired.grant_id,
            outcome=outcome,
            details=details,
            error_code=str(error.code) if error else "",
            error_message=error.message[:500] if error else "",
            retryable=bool(error and error.retryable),
        )

    # -- scanning ----------------------------------------------------------------------------------------
    def _expired(self, integration: AwsOrganizationIntegration, now: int, full: bool) -> Iterator[Expired]:
        yield from self._identity_center(integration, now)
        places = integration.jit_places()
        accounts = _active_accounts(integration) if full else []
        roles: dict[str, set[str]] = {}
        clusters: dict[tuple[str, str], set[str]] = {}
        for place in places:
            if place[0] == "iam":
                roles.setdefault(place[1], set()).add(place[2])
            elif place[0] == "eks":
                clusters.setdefault((place[1], place[2]), set()).add(place[3])
        for account in sorted(set(accounts) | set(roles)):
            yield from _guarded(_iam_expired, integration, account, None if full else roles.get(account), now)
        regions = integration.config.regions if integration.config.regions != "enabled" else ()
        scopes = {(a, r) for a in accounts for r in (regions or (integration.config.region,))} | set(clusters)
        for account, region in sorted(scopes):
            known = None if full and account in accounts else clusters.get((account, region))
            yield from _guarded(_eks_expired, integration, account, region, known, now)

    def _identity_center(self, integration: AwsOrganizationIntegration, now: int) -> Iterator[Expired]:
        if "identity_center" not in integration.config.resource_types and not integration.config.sso_region:
            return
        try:
            found = identity_center_access.expired_records(integration._sso_client(), now)
        except ConnectorError as exc:  # Identity Center not enabled: nothing to sweep
            log.info("expiry_identity_center_skipped", integration_id=integration.integration_id, reason=exc.message)
            return
        except (ClientError, BotoCoreError) as exc:
            log.warning("expiry_identity_center_failed", integration_id=integration.integration_id, error=str(exc))
            return
        for ps_arn, key, record in found:
            assert record.expires_epoch is not None
            yield Expired(
                kind="identity_center",
                place=f"{ps_arn}/{record.account_id}",
                grant_key=key,
                expires_epoch=record.expires_epoch,
                principal=record.principal_id,
                target={
                    "resource_type": "identity_center_assignment",
                    "account_id": record.account_id,
                    "permission_set": ps_arn,
                    "principal_type": record.principal_type,
                },
            )


def _guarded(scan: Callable[..., list[Expired]], integration: Any, account: str, *args: Any) -> list[Expired]:
    try:
        return list(scan(integration, account, *args))
    except (ClientError, BotoCoreError, ConnectorError) as exc:
        log.warning("expiry_scan_scope_failed", account_id=account, error=str(exc)[:300])
        return []


def _active_accounts(integration: AwsOrganizationIntegration) -> list[str]:
    org = integration.aws.client(integration.management(), "organizations", integration.config.region)
    excluded = set(integration.config.excluded_account_ids)
    out = []
    for page in org.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 20}):
        for account in page.get("Accounts", []):
            state = account.get("State") or account.get("Status")
            if state == "ACTIVE" and account["Id"] not in excluded:
                out.append(str(account["Id"]))
    return out


def _iam_expired(
    integration: AwsOrganizationIntegration, account: str, known: Iterable[str] | None, now: int
) -> list[Expired]:
    """Expired IAM grants on `known` roles, or on every role of the account when `known` is None."""
    iam = integration.aws.client(integration.member(account), "iam")
    roles = iam_access.all_role_names(iam) if known is None else sorted(known)
    return [
        Expired(
            kind="iam",
            place=f"{account}/{role}",
            grant_key=key,
            expires_epoch=record.expires_epoch,
            principal=role,
            target={"resource_type": "iam_resource_access", "account_id": account, "role": role},
        )
        for role, key, record in iam_access.expired_role_records(iam, roles, now)
        if record.expires_epoch is not None
    ]


def _eks_expired(
    integration: AwsOrganizationIntegration, account: str, region: str, known: Iterable[str] | None, now: int
) -> list[Expired]:
    eks = integration.aws.client(integration.member(account), "eks", region)
    if known is None:
        names = [n for page in eks.get_paginator("list_clusters").paginate() for n in page.get("clusters", [])]
    else:
        names = sorted(known)
    out: list[Expired] = []
    for cluster in names:
        try:
            principals = [
                p
                for page in eks.get_paginator("list_access_entries").paginate(clusterName=cluster)
                for p in page.get("accessEntries", [])
            ]
        except ClientError as exc:  # CONFIG_MAP clusters have no access entries; deleted clusters none at all
            log.debug("expiry_cluster_skipped", cluster=cluster, error=str(exc)[:200])
            continue
        for principal in principals:
            entry = eks_access.describe_entry(eks, cluster, principal)
            for key, record in eks_access.live_grants((entry or {}).get("tags") or {}).items():
                if record.expires_epoch is None or record.expires_epoch > now:
                    continue
                out.append(
                    Expired(
                        kind="eks",
                        place=f"{account}/{region}/{cluster}/{principal}",
                        grant_key=key,
                        expires_epoch=record.expires_epoch,
                        principal=principal,
                        target={
                            "resource_type": "eks_cluster",
                            "account_id": account,
                            "region": region,
                            "cluster": cluster,
                            # revoke recomputes from the record; these only make the target well-formed
                            "access_policies": sorted(record.scopes) or ["AmazonEKSViewPolicy"],
                            "scope": "cluster",
                        },
                    )
                )
    return out
