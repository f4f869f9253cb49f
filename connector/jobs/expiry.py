"""The one expiry loop: revoke expired grants of every kind, locally, with or without the control plane.

Every grant's record lives in its target (connector.integrations.ledger), so it survives restarts and every
replica sees it. Each sweep asks every kind of every known integration for its expired records (its
ExpiryScanner) and revokes each through that kind's own `revoke` — the same idempotent path a revoke job takes
— and audits it. A record that cannot be decoded counts as expired (the ledger fails closed); one that does
not even say what to revoke is reported as a failed event, once per process, for a person to look at.

API (synchronous; the agent runs it in its own thread every CONNECTOR_EXPIRY_SWEEP_SECONDS, also while the
control plane is unreachable):

    sweeper = ExpirySweeper(dispatcher.registry, dispatcher.services, state_file=Path(...))  # file optional
    dispatcher.listener = sweeper     # offer(): settings that validated; confirm(): settings that worked
    events = sweeper.sweep()          # -> list[ExpiryEvent]; to_proto() for ReportEvents

Which settings it sweeps with. Integrations and their settings arrive with jobs, so a job can carry a
mistake. The sweeper only ever takes settings that validated (the dispatcher built the integration from
them), and prefers the last settings that WORKED (a job with them succeeded, or a sweep with them scanned
cleanly) over newer ones that have not yet: a job with a wrong role ARN in its settings cannot stop grants
that were due from being revoked. Newer settings are tried when the working ones fail, and win once they
work. With `state_file` both are kept on disk (settings only: they hold no secrets), so a sweeper started
while the control plane is down still knows what to sweep.

An integration whose scan fails is backed off (60 s, doubling, at most an hour) and warned about when that
happens, not on every sweep; `status()` says which integrations are failing.

What a scan covers is each kind's business: EKS and IAM look where this process granted on every sweep and
everywhere on the first sweep after start-up and then every `full_scan_interval` (1 h); Identity Center,
Kubernetes bindings, aws-auth and Lambda records are cheap enough to read whole on every sweep.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from connector.aws.errors import classify_aws_error
from connector.errors import ConnectorError, ErrorCode
from connector.integrations.base import JobContext
from connector.integrations.capabilities import ExpiredGrant, ExpiryScan, Integration
from connector.jobs import audit
from connector.jobs.grant_audit import GrantAudit
from connector.jobs.registry import Registry
from connector.logging import get_logger, redact_text
from connector.v1 import connector_pb2

log = get_logger("connector.jobs.expiry")
EVENT_TYPE = "grant.expired_revoked"
DEFAULT_FULL_SCAN_INTERVAL = 3600.0
BACKOFF_FIRST = 60.0
BACKOFF_MAX = 3600.0
DROP_AFTER = 8  # failed scans (about four hours of backoff) after which unproven settings are forgotten
REVOKE_TIMEOUT = 300.0  # each revoke gets this long, like a job's deadline
SCAN_TIMEOUT = 600.0  # one integration's scan
# Integrations are swept side by side, so one whose scan is slow (an unreachable database host, a region that
# does not answer and botocore's retries) never delays the revokes of the others. A sweep waits at most
# SWEEP_WAIT for them; one still running goes on in the background, is not started again while it runs, and
# its events are reported by a later sweep.
SWEEP_WORKERS = 4
SWEEP_WAIT = 20.0


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


def event_id(integration_id: str, kind: str, found: ExpiredGrant, outcome: str) -> str:
    digest = hashlib.sha256(
        f"{integration_id}|{kind}|{found.place}|{found.grant_key}|{found.expires_epoch}".encode()
    ).hexdigest()[:32]
    return f"expiry-{digest}" + ("" if outcome == "succeeded" else "-failed")


def _fingerprint(integration: Integration) -> tuple[str, str]:
    return integration.type_id, json.dumps(dict(integration.settings), sort_keys=True, default=str)


@dataclass
class _Tracked:
    working: Integration | None = None  # settings that worked
    candidate: Integration | None = None  # newer settings that validated, not yet proven
    failures: int = 0
    retry_at: float = 0.0  # clock value before which this integration is not scanned again
    last_full: float | None = None
    last_error: str = ""
    scope_failures: dict[str, str] = field(default_factory=dict)  # where -> why, from the last scan

    def current(self) -> list[Integration]:
        """What to scan with, in order: the working settings, then the candidate."""
        return [i for i in (self.working, self.candidate) if i is not None]


class ExpirySweeper:
    def __init__(
        self,
        registry: Registry,
        services: Any,
        *,
        state_file: Path | None = None,
        full_scan_interval: float = DEFAULT_FULL_SCAN_INTERVAL,
        backoff_first: float = BACKOFF_FIRST,
        clock: Callable[[], float] = time.monotonic,
        audit_trail: GrantAudit | None = None,
        sweep_wait: float = SWEEP_WAIT,
    ) -> None:
        self.registry = registry
        self.sweep_wait = sweep_wait
        self._pool = ThreadPoolExecutor(max_workers=SWEEP_WORKERS, thread_name_prefix="expiry-sweep")
        self._in_flight: dict[str, Future[list[ExpiryEvent]]] = {}
        self.services = services
        self.state_file = state_file
        self.full_scan_interval = full_scan_interval
        self.backoff_first = backoff_first
        self._clock = clock
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # job threads offer and confirm at once: one writer of the file
        self._tracked: dict[str, _Tracked] = {}
        self._failures_reported: set[str] = set()
        if state_file is not None and state_file.exists():
            self._load(state_file)
        # enable_audit: grant windows, summarised after their revoke (grant_audit.py); beside the state file.
        self.audit_trail = audit_trail or GrantAudit(
            state_file.with_name("audit-windows.json") if state_file is not None else None
        )

    # -- the audit trail's windows (Dispatcher hooks) ---------------------------------------------------------
    def granted(self, integration: Integration, kind: str, provisioner: Any, request: Any, effect: Any) -> None:
        self.audit_trail.granted(integration, kind, provisioner, request, effect)

    def revoked(self, integration_id: str, kind: str, grant_id: str) -> None:
        self.audit_trail.revoked(integration_id, kind, grant_id)

    def _integration_of(self, integration_id: str) -> Integration | None:
        with self._lock:
            tracked = self._tracked.get(integration_id)
            current = tracked.current() if tracked is not None else []
        return current[0] if current else None

    # -- what to sweep (IntegrationListener) -------------------------------------------------------------
    def offer(self, integration: Integration) -> None:
        """Settings that validated, from a verified job: swept with once nothing better is known."""
        if not self.registry.scanners(integration):
            return  # a type that grants nothing durable (noop): nothing to sweep
        with self._lock:
            tracked = self._tracked.setdefault(integration.integration_id, _Tracked())
            if tracked.working is not None and _fingerprint(tracked.working) == _fingerprint(integration):
                tracked.working = integration  # the same settings: the dispatcher's live instance knows more
                return
            tracked.candidate = integration
        self._save()

    def confirm(self, integration: Integration) -> None:
        """A job with these settings succeeded: they are the ones to sweep with from now on."""
        with self._lock:  # every job that succeeds lands here: the instance already working returns at once
            current = self._tracked.get(integration.integration_id)
            if current is not None and current.working is integration:
                return
        if not self.registry.scanners(integration):
            return
        with self._lock:
            tracked = self._tracked.setdefault(integration.integration_id, _Tracked())
            if tracked.working is not None and _fingerprint(tracked.working) == _fingerprint(integration):
                return
            self._promote(tracked, integration)
        self._save()

    def observe(self, integration_id: str, integration_type: str, settings: Mapping[str, Any]) -> None:
        """An integration seen in a job (kept for callers that have no Integration yet): offered if valid."""
        cls = self.registry.get(integration_type)
        if cls is None:
            return
        try:
            self.offer(cls(integration_id, dict(settings), self.services))
        except ConnectorError as exc:
            log.info("expiry_settings_ignored", integration_id=integration_id, error=exc.message[:200])

    @staticmethod
    def _promote(tracked: _Tracked, integration: Integration) -> None:
        tracked.working = integration
        if tracked.candidate is not None and _fingerprint(tracked.candidate) == _fingerprint(integration):
            tracked.candidate = None
        tracked.failures, tracked.retry_at, tracked.last_error = 0, 0.0, ""

    # -- the state file ----------------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            entries = raw.get("integrations", {})
            assert isinstance(entries, dict)
        except (OSError, ValueError, AssertionError, AttributeError) as exc:
            log.warning("expiry_state_unreadable", path=str(path), error=str(exc)[:200])
            return
        for iid, entry in entries.items():
            tracked = _Tracked()
            for role in ("working", "candidate"):
                data = entry.get(role) if isinstance(entry, dict) else None
                if isinstance(data, dict):
                    setattr(tracked, role, self._build(str(iid), data))
            if tracked.current():
                self._tracked[str(iid)] = tracked

    def _build(self, integration_id: str, data: Mapping[str, Any]) -> Integration | None:
        cls = self.registry.get(str(data.get("type", "")))
        settings = data.get("settings")
        if cls is None or not isinstance(settings, dict):
            return None
        try:
            return cls(integration_id, settings, self.services)
        except ConnectorError as exc:  # settings that no longer validate are never swept with
            log.warning("expiry_state_settings_invalid", integration_id=integration_id, error=exc.message[:200])
            return None

    def _save(self) -> None:
        if self.state_file is None:
            return
        with self._save_lock:
            with self._lock:
                data = {
                    iid: {
                        role: {"type": i.type_id, "settings": json.loads(_fingerprint(i)[1])}
                        for role, i in (("working", t.working), ("candidate", t.candidate))
                        if i is not None
                    }
                    for iid, t in self._tracked.items()
                }
            tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
            try:
                # 0600: settings hold no secrets by the protocol, but a customer may still have put one there.
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(json.dumps({"integrations": data}, sort_keys=True))
                os.chmod(tmp, 0o600)  # an existing file keeps its mode through O_CREAT
                os.replace(tmp, self.state_file)
            except OSError as exc:  # a cache for restarts: a full or read-only disk must not fail the job offering
                log.warning("expiry_state_not_saved", path=str(self.state_file), error=str(exc)[:200])

    # -- the sweep ---------------------------------------------------------------------------------------
    def status(self) -> dict[str, dict[str, Any]]:
        """Per integration: whether its last scan worked, and when it is tried again."""
        now = self._clock()
        with self._lock:
            return {
                iid: {
                    "failing": t.failures > 0,
                    "failures": t.failures,
                    "retry_in_seconds": max(0.0, round(t.retry_at - now, 1)),
                    "error": t.last_error,
                    "scopes_failing": sorted(t.scope_failures)[:20],
                }
                for iid, t in self._tracked.items()
            }

    def sweep(self, now: datetime | None = None) -> list[ExpiryEvent]:
        """Find and revoke every expired grant; returns the events to report. Never raises."""
        now = now or datetime.now(UTC)
        with self._lock:
            due = [
                (iid, t)
                for iid, t in sorted(self._tracked.items())
                if self._clock() >= t.retry_at and iid not in self._in_flight
            ]
            for iid, tracked in due:
                self._in_flight[iid] = self._pool.submit(self._sweep_one, iid, tracked, now)
            running = dict(self._in_flight)
        wait(running.values(), timeout=self.sweep_wait)
        events: list[ExpiryEvent] = []
        for iid, future in running.items():
            if not future.done():
                log.info("expiry_sweep_integration_still_running", integration_id=iid)
                continue
            with self._lock:
                self._in_flight.pop(iid, None)
            try:
                events += future.result()
            except Exception:  # a bug in one integration's sweep must not stop the others
                log.exception("expiry_sweep_integration_crashed", integration_id=iid)
        try:
            events += self.audit_trail.collect(self._integration_of, self.registry.provisioner)
        except Exception:  # the audit trail must never stop expiry
            log.exception("grant_audit_crashed")
        return events

    def _sweep_one(self, iid: str, tracked: _Tracked, now: datetime) -> list[ExpiryEvent]:
        full = tracked.last_full is None or self._clock() - tracked.last_full >= self.full_scan_interval
        errors: list[str] = []
        for integration in tracked.current():
            problems: dict[str, str] = {}
            scanned = self._scan(integration, int(now.timestamp()), full, problems)
            if isinstance(scanned, str):
                errors.append(scanned)
                continue
            self._scopes(iid, tracked, problems)
            with self._lock:
                if integration is not tracked.working:
                    self._promote(tracked, integration)  # newer settings that work: they take over
                    promoted = True
                else:
                    promoted = False
                tracked.failures, tracked.retry_at, tracked.last_error = 0, 0.0, ""
                if full:
                    tracked.last_full = self._clock()
            if promoted:
                self._save()
            return [e for kind, found in scanned if (e := self._revoke(integration, kind, found, now)) is not None]
        with self._lock:
            tracked.failures += 1
            delay = min(BACKOFF_MAX, self.backoff_first * 2 ** (tracked.failures - 1))
            tracked.retry_at = self._clock() + delay
            tracked.last_error = errors[-1] if errors else ""
            forget = tracked.working is None and tracked.failures >= DROP_AFTER
            if forget:
                self._tracked.pop(iid, None)
        if forget:
            log.warning(
                "expiry_integration_forgotten", integration_id=iid, failures=tracked.failures, error=tracked.last_error
            )
            self._save()
            return []
        log.warning(
            "expiry_integration_failing",
            integration_id=iid,
            failures=tracked.failures,
            retry_in_seconds=delay,
            error=tracked.last_error,
        )
        return []

    def _scopes(self, iid: str, tracked: _Tracked, problems: dict[str, str]) -> None:
        """Warn when a place starts failing and when it recovers: not on every sweep."""
        with self._lock:
            before, tracked.scope_failures = tracked.scope_failures, dict(problems)
        for where in sorted(problems.keys() - before.keys()):
            log.warning("expiry_scope_failing", integration_id=iid, where=where, error=problems[where])
        for where in sorted(before.keys() - problems.keys()):
            log.info("expiry_scope_recovered", integration_id=iid, where=where)

    def _scan(
        self, integration: Integration, now: int, full: bool, problems: dict[str, str]
    ) -> list[tuple[str, ExpiredGrant]] | str:
        """Every kind's expired records, or why the integration could not be scanned at all."""
        deadline = time.monotonic() + SCAN_TIMEOUT

        def check() -> None:
            if time.monotonic() > deadline:
                raise ConnectorError(ErrorCode.TIMEOUT, "the expiry scan took too long")

        found: list[tuple[str, ExpiredGrant]] = []
        try:
            for kind, scanner in self.registry.scanners(integration):
                scan = ExpiryScan(now, full, check, problems.__setitem__)
                found += [(kind, g) for g in scanner.expired(scan)]
        except Exception as exc:
            mapped = exc if isinstance(exc, ConnectorError) else classify_aws_error(exc)
            return (
                mapped.message[:300] if mapped is not None else f"{type(exc).__name__}: {redact_text(str(exc))[:300]}"
            )
        return found

    def _revoke(self, integration: Integration, kind: str, found: ExpiredGrant, now: datetime) -> ExpiryEvent | None:
        started = time.monotonic()
        request = found.request
        error: ConnectorError | None = None
        result: dict[str, Any] = {}
        if request is None:
            error = ConnectorError(
                ErrorCode.PRECONDITION_FAILED,
                f"an expired or unreadable grant record at {found.place} does not say what to revoke "
                f"({found.problem or 'no detail'}); remove that access and its record by hand",
                retryable=False,
            )
        else:
            ctx = JobContext(
                job_id=f"expiry-{kind}",
                attempt=1,
                connector_id=self.services.connector_id,
                integration_id=integration.integration_id,
                deadline=started + REVOKE_TIMEOUT,
            )
            try:
                provisioner = self.registry.provisioner(integration, kind)
                assert provisioner is not None
                result = provisioner.revoke(request, ctx)
                self.audit_trail.revoked(integration.integration_id, kind, request.grant_id)
            except ConnectorError as exc:
                error = exc
            except Exception as exc:
                error = classify_aws_error(exc) or ConnectorError(
                    ErrorCode.INTERNAL,
                    f"unexpected {type(exc).__name__}: {redact_text(str(exc))[:300]}",
                    retryable=False,
                )
        outcome: Literal["succeeded", "failed"] = "failed" if error is not None else "succeeded"
        eid = event_id(integration.integration_id, kind, found, outcome)
        grant_id = request.grant_id if request is not None else found.grant_key
        audit.record(
            action="revoke",
            source="expiry",
            grant_id=grant_id,
            job_id=eid,
            attempt=1,
            integration_id=integration.integration_id,
            integration_type=integration.type_id,
            principal=request.principal if request is not None else "",
            target=dict(request.target) if request is not None else {},
            dry_run=False,
            outcome=outcome,
            error=error,
            duration_s=time.monotonic() - started,
            result=result,
        )
        if error is not None:
            with self._lock:
                if eid in self._failures_reported:
                    return None  # retried on every sweep; reported once
                self._failures_reported.add(eid)
        expired_at = (
            datetime.fromtimestamp(found.expires_epoch, UTC).isoformat()
            if found.expires_epoch is not None
            else f"unknown: {found.problem or 'the record could not be decoded'}"
        )
        details = {
            "kind": kind,
            "place": found.place,
            "principal": request.principal if request is not None else "",
            "expired_at": expired_at,
            "target": dict(request.target) if request is not None else {},
            "calls": len(result.get("calls", [])) if isinstance(result.get("calls"), list) else 0,
        }
        return ExpiryEvent(
            id=eid,
            time=now,
            integration_id=integration.integration_id,
            grant_id=grant_id,
            outcome=outcome,
            details=details,
            error_code=str(error.code) if error else "",
            error_message=error.message[:500] if error else "",
            retryable=bool(error and error.retryable),
        )
