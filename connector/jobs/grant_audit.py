"""The audit trail per grant (integration setting `enable_audit: true`): what the granted principal did while
the grant was live, collected locally from the customer's own logs and reported as a bounded summary.

When a grant succeeds (not a dry run), a kind that is `Auditable` says whose activity to collect and where
(`audit_subject`, from the Effect: the role and its services and regions for IAM, the cluster, principal and
username for EKS, the role, region and instances for EC2 through SSM; None when the integration's audit is
off). The trail keeps that as the grant's *window* (started = the first successful delivery; a re-delivery
keeps it). A revoke (job or expiry loop) closes the
window; one never closed here (another replica revoked it) closes at its expiry.

When it runs, and why: once per grant, after the window has closed and SETTLE_SECONDS (15 minutes) have
passed, from the expiry loop's own thread on its interval (never a job slot, also while the control plane is
unreachable). After the close, because a summary of a live grant would be partial and a periodic one would
read the same log again and again (LookupEvents allows 2 calls/s per account and region); after a delay,
because CloudTrail delivers events to the event history within about 15 minutes, so an immediate read would
miss the last ones. A read that fails is retried on later sweeps (backed off); after MAX_ATTEMPTS it is
reported as a failed audit event. Windows live in memory and, with CONNECTOR_STATE_DIR, in a file beside the
expiry state (subjects are ARNs and usernames: no secrets), so a restart does not lose them.

Events: type `grant.audit`, id `audit-<hash of integration, kind, grant, window start>` (the control plane
deduplicates by id), with the summary's counts, never raw log lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector.aws.errors import classify_aws_error
from connector.errors import ConnectorError, ErrorCode
from connector.integrations.base import GrantRequest
from connector.integrations.capabilities import Auditable, AuditSubject, Integration
from connector.integrations.effect import Effect
from connector.logging import get_logger, redact_text

if TYPE_CHECKING:
    from connector.jobs.expiry import ExpiryEvent  # the event shape ReportEvents takes (expiry imports this module)

log = get_logger("connector.jobs.grant_audit")
EVENT_TYPE = "grant.audit"
SETTLE_SECONDS = 900.0
MAX_ATTEMPTS = 6
MAX_WINDOWS = 10_000  # a bound: the oldest closed windows go first
RETRY_FIRST = 60.0


@dataclass
class Window:
    integration_id: str
    kind: str
    grant_id: str
    subject: AuditSubject
    started: float  # epoch seconds
    expires: float | None
    ended: float | None = None
    attempts: int = 0
    retry_at: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.integration_id}|{self.kind}|{self.grant_id}"

    def closes_at(self) -> float | None:
        return self.ended if self.ended is not None else self.expires

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["subject"] = self.subject.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        return cls(**(data | {"subject": AuditSubject.from_dict(data["subject"])}))


def event_id(window: Window) -> str:
    digest = hashlib.sha256(f"{window.key}|{int(window.started)}".encode()).hexdigest()[:32]
    return f"audit-{digest}"


@dataclass
class GrantAudit:
    state_file: Path | None = None
    settle_seconds: float = SETTLE_SECONDS
    clock: Callable[[], float] = time.time
    _windows: dict[str, Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.state_file is not None and self.state_file.exists():
            try:
                for raw in json.loads(self.state_file.read_text(encoding="utf-8")).get("windows", []):
                    window = Window.from_dict(raw)
                    self._windows[window.key] = window
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.warning("audit_state_unreadable", path=str(self.state_file), error=str(exc)[:200])

    @property
    def pending(self) -> int:
        return len(self._windows)

    # -- from the dispatcher and the expiry loop ------------------------------------------------------------
    def granted(
        self, integration: Integration, kind: str, provisioner: Any, request: GrantRequest, effect: Effect
    ) -> None:
        if not isinstance(provisioner, Auditable):
            return
        subject = provisioner.audit_subject(request, effect)
        if subject is None:
            return
        expires = request.expires_at.timestamp() if request.expires_at is not None else None
        with self._lock:
            key = f"{integration.integration_id}|{kind}|{request.grant_id}"
            known = self._windows.get(key)
            if known is not None and known.ended is None:
                known.expires, known.subject = expires, subject  # a re-delivery keeps the start
            else:
                self._windows[key] = Window(
                    integration.integration_id, kind, request.grant_id, subject, self.clock(), expires
                )
            self._bound()
        self._save()

    def revoked(self, integration_id: str, kind: str, grant_id: str) -> None:
        with self._lock:
            window = self._windows.get(f"{integration_id}|{kind}|{grant_id}")
            if window is None or window.ended is not None:
                return
            window.ended = self.clock()
        self._save()

    # -- collection (the expiry loop's thread) -----------------------------------------------------------------
    def collect(
        self, integration_of: Callable[[str], Integration | None], provisioner_of: Callable[[Integration, str], Any]
    ) -> list[ExpiryEvent]:
        """Summarise every window that closed at least settle_seconds ago. Never raises."""
        now = self.clock()
        with self._lock:
            due = [
                w
                for w in self._windows.values()
                if (c := w.closes_at()) is not None and c + self.settle_seconds <= now and w.retry_at <= now
            ]
        events: list[ExpiryEvent] = []
        for window in due:
            event = self._collect_one(window, integration_of, provisioner_of, now)
            if event is not None:
                events.append(event)
        if due:
            self._save()
        return events

    def _collect_one(
        self,
        window: Window,
        integration_of: Callable[[str], Integration | None],
        provisioner_of: Callable[[Integration, str], Any],
        now: float,
    ) -> ExpiryEvent | None:
        from connector.jobs.expiry import ExpiryEvent

        integration = integration_of(window.integration_id)
        start = datetime.fromtimestamp(window.started, UTC) - timedelta(seconds=60)  # clock skew
        closed = window.closes_at()
        assert closed is not None
        end = datetime.fromtimestamp(closed, UTC) + timedelta(seconds=60)
        details: dict[str, Any] = {
            "kind": window.kind,
            "source": window.subject.source,
            "principal": window.subject.principal,
            "account_id": window.subject.account_id,
            "window": {"start": datetime.fromtimestamp(window.started, UTC).isoformat(), "end": end.isoformat()},
        }
        if window.subject.cluster:
            details["cluster"] = window.subject.cluster
        error: ConnectorError | None = None
        try:
            if integration is None:
                raise ConnectorError(ErrorCode.UNAVAILABLE, "the integration is not known to this process yet")
            provisioner = provisioner_of(integration, window.kind)
            if not isinstance(provisioner, Auditable):
                raise ConnectorError(ErrorCode.UNSUPPORTED, f"kind {window.kind} has no audit source", retryable=False)
            summary = provisioner.audit(window.subject, start, end)
        except Exception as exc:  # a log that cannot be read now is tried again on a later sweep
            error = (
                exc
                if isinstance(exc, ConnectorError)
                else classify_aws_error(exc)
                or ConnectorError(
                    ErrorCode.INTERNAL,
                    f"unexpected {type(exc).__name__}: {redact_text(str(exc))[:300]}",
                    retryable=False,
                )
            )
        with self._lock:
            if error is not None:
                window.attempts += 1
                if window.attempts < MAX_ATTEMPTS:
                    window.retry_at = now + RETRY_FIRST * 2 ** (window.attempts - 1)
                    log.warning(
                        "grant_audit_retry",
                        grant_id=window.grant_id,
                        attempts=window.attempts,
                        error=error.message[:200],
                    )
                    return None
            self._windows.pop(window.key, None)
        if error is not None:
            return ExpiryEvent(
                id=event_id(window) + "-failed",
                time=datetime.fromtimestamp(now, UTC),
                integration_id=window.integration_id,
                grant_id=window.grant_id,
                outcome="failed",
                details=details,
                error_code=str(error.code),
                error_message=error.message[:500],
                retryable=False,
                type=EVENT_TYPE,
            )
        details |= {
            "events": summary.events,
            "by_action": summary.by_action,
            "errors": summary.errors,
            "first": summary.first,
            "last": summary.last,
            "resources": list(summary.resources),
            "truncated": summary.truncated,
            "notes": list(summary.notes),
        }
        log.info("grant_audit_collected", grant_id=window.grant_id, kind=window.kind, events=summary.events)
        return ExpiryEvent(
            id=event_id(window),
            time=datetime.fromtimestamp(now, UTC),
            integration_id=window.integration_id,
            grant_id=window.grant_id,
            outcome="succeeded",
            details=details,
            type=EVENT_TYPE,
        )

    # -- state --------------------------------------------------------------------------------------------------
    def _bound(self) -> None:
        while len(self._windows) > MAX_WINDOWS:
            oldest = min(self._windows.values(), key=lambda w: w.started)
            self._windows.pop(oldest.key)
            log.error("grant_audit_window_dropped", grant_id=oldest.grant_id, reason="too many pending windows")

    def _save(self) -> None:
        if self.state_file is None:
            return
        with self._lock:
            text = json.dumps({"windows": [w.to_dict() for w in self._windows.values()]}, sort_keys=True)
        tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, self.state_file)
        except OSError as exc:
            log.warning("audit_state_not_saved", path=str(self.state_file), error=str(exc)[:200])
