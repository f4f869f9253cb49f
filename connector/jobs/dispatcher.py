"""Decode, verify and route a job to its integration; turn every failure into a typed result.

`Dispatcher.execute` never raises: a malformed job, a bad setting, an AWS error or a bug all become a
JobOutcome with a typed error, so one bad job can never take the agent down.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from google.protobuf import json_format

from connector.aws.errors import classify_aws_error
from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations import ledger
from connector.integrations.base import GrantRequest, JobContext, RevokeRequest, Services, SyncRequest
from connector.integrations.capabilities import Integration, KindSpec, Provisioner
from connector.integrations.effect import Effect
from connector.jobs import audit
from connector.jobs.guardrails import DEFAULT as DEFAULT_POLICY
from connector.jobs.registry import Registry
from connector.logging import get_logger, redact_text
from connector.v1 import connector_pb2

log = get_logger("connector.jobs")

Outcome = Literal["succeeded", "failed", "cancelled"]
MAX_ID_LENGTH = 256


@dataclass
class JobOutcome:
    outcome: Outcome
    error: ConnectorError | None = None
    result: dict[str, Any] = field(default_factory=dict)
    kind: str = ""
    integration_type: str = ""
    effect: dict[str, Any] | None = None  # a grant's Effect as the guardrails judged it


class IntegrationListener(Protocol):
    """Told about integrations whose settings validated (the expiry loop keeps sweeping with them)."""

    def offer(self, integration: Integration) -> None: ...

    def confirm(self, integration: Integration) -> None: ...


# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z.
_MIN_TIMESTAMP, _MAX_TIMESTAMP = -62_135_596_800, 253_402_300_799


def _struct(msg: Any, what: str = "") -> dict[str, Any]:
    if msg is None:
        return {}
    try:
        return json_format.MessageToDict(msg, preserving_proto_field_name=True)
    except ValueError:  # NaN / Infinity: a Struct can carry them, JSON (and every integration) cannot
        raise InvalidJob(f"{what or 'the job'} holds a number that is NaN or Infinity; send finite numbers") from None


def _expires_at(grant: connector_pb2.GrantJob) -> datetime | None:
    if not grant.HasField("expires_at"):
        return None
    ts = grant.expires_at
    if not _MIN_TIMESTAMP <= ts.seconds <= _MAX_TIMESTAMP or not 0 <= ts.nanos <= 999_999_999:
        raise InvalidJob("grant.expires_at is not a valid timestamp (years 1 to 9999)")
    return ts.ToDatetime(tzinfo=UTC)


def _require_id(value: str, what: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise InvalidJob(f"{what} is required: a printable string of 1 to {MAX_ID_LENGTH} characters")
    return value


class Dispatcher:
    """Routes jobs by kind, integration type and target resource type. Integration instances are cached per
    settings. A grant is described as an Effect by its kind, judged by the guardrails, then made."""

    def __init__(
        self,
        registry: Registry,
        services: Services,
        verify: Callable[[connector_pb2.Job], None] | None = None,
        listener: IntegrationListener | None = None,
    ) -> None:
        self.registry = registry
        self.services = services
        self.listener = listener
        self._verify = verify
        self._instances: dict[tuple[str, str, str], Integration] = {}
        self._lock = threading.Lock()

    def verify(self, job: connector_pb2.Job) -> None:
        """Raises ConnectorError when the verify hook refuses the job (e.g. its signature does not check out)."""
        if self._verify is not None:
            self._verify(job)

    def capabilities(self) -> list[str]:
        return self.registry.types()

    def _integration(self, job: connector_pb2.Job) -> Integration:
        if not job.HasField("integration"):
            raise InvalidJob("the job names no integration")
        spec = job.integration
        _require_id(spec.id, "integration.id")
        cls = self.registry.get(spec.type)
        if cls is None:
            raise ConnectorError(
                ErrorCode.UNSUPPORTED,
                f"integration type {spec.type[:64]!r} is not enabled on this connector "
                f"(it runs: {', '.join(self.registry.types())})",
                retryable=False,
            )
        settings = _struct(spec.settings, "integration.settings")
        key = (spec.id, spec.type, hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest())
        made = False
        with self._lock:
            instance = self._instances.get(key)
            if instance is None:
                instance = cls(spec.id, settings, self.services)  # validates: raises InvalidSettings
                self._instances = {k: v for k, v in self._instances.items() if k[0] != spec.id}
                self._instances[key] = instance
                made = True
        if made:
            self._tell("offer", instance)  # only settings that validated, and only from a verified job
        return instance

    def _tell(self, what: str, integration: Integration) -> None:
        """Tell the expiry loop; its trouble (a full disk for its state file) never fails the job."""
        if self.listener is None:
            return
        try:
            getattr(self.listener, what)(integration)
        except Exception as exc:
            log.warning(
                "expiry_listener_failed", integration_id=integration.integration_id, call=what, error=type(exc).__name__
            )

    def _hook(self, what: str, *args: Any) -> None:
        """Optional listener calls (the audit trail's grant windows); never fail the job."""
        call = getattr(self.listener, what, None)
        if call is None:
            return
        try:
            call(*args)
        except Exception as exc:
            log.warning("listener_hook_failed", call=what, error=type(exc).__name__)

    def _provisioner(self, integration: Integration, target: Mapping[str, Any]) -> tuple[Provisioner, KindSpec]:
        raw = target.get("resource_type") or integration.default_resource_type
        kinds = self.registry.resource_types(integration.type_id)
        spec = self.registry.kind(integration, raw) if isinstance(raw, str) else None
        provisioner = self.registry.provisioner(integration, raw) if spec is not None and isinstance(raw, str) else None
        if spec is None or provisioner is None:
            shown = f"{str(raw)[:64]!r}" if raw else "none"
            raise InvalidJob(
                f"target.resource_type {shown} is not supported by integration type {integration.type_id!r}; "
                f"supported: {', '.join(kinds) or 'none (it only syncs)'}"
            )
        return provisioner, spec

    def execute(self, job: connector_pb2.Job, ctx: JobContext) -> JobOutcome:
        started = time.monotonic()
        outcome = self._execute(job, ctx)
        if job.WhichOneof("kind") in ("grant", "revoke"):
            try:
                _audit(job, outcome, time.monotonic() - started)  # exactly one audit line per grant / revoke
            except Exception:  # execute never raises: the job's result must still be reported
                log.exception("audit_record_failed", job_id=job.id[:MAX_ID_LENGTH])
        return outcome

    def _execute(self, job: connector_pb2.Job, ctx: JobContext) -> JobOutcome:
        kind = ""
        integration_type = job.integration.type if job.HasField("integration") else ""
        judged: list[Effect] = []
        try:
            _require_id(job.id, "job id")
            self.verify(job)
            kind = job.WhichOneof("kind") or ""
            if not kind:
                raise InvalidJob("the job has no kind: set one of sync, grant, revoke")
            integration = self._integration(job)
            ctx.check_cancelled()
            result = self._route(kind, job, integration, ctx, judged)
            if not _dry_run(job):
                self._tell("confirm", integration)  # these settings work: the expiry loop may rely on them
            outcome = JobOutcome("succeeded", result=result, kind=kind, integration_type=integration_type)
        except ConnectorError as exc:
            state: Outcome = "cancelled" if exc.code == ErrorCode.CANCELLED else "failed"
            outcome = JobOutcome(state, error=exc, kind=kind, integration_type=integration_type)
        except Exception as exc:  # the agent must survive anything an integration does
            mapped = classify_aws_error(exc)
            if mapped is not None:
                outcome = JobOutcome("failed", error=mapped, kind=kind, integration_type=integration_type)
            else:
                log.exception("job_internal_error", job_id=job.id[:MAX_ID_LENGTH])
                error = ConnectorError(
                    ErrorCode.INTERNAL,
                    f"unexpected {type(exc).__name__}: {redact_text(str(exc))[:500]}",
                    retryable=False,
                )
                outcome = JobOutcome("failed", error=error, kind=kind, integration_type=integration_type)
        if judged:
            outcome.effect = judged[0].summary()
        return outcome

    def _route(
        self, kind: str, job: connector_pb2.Job, integration: Integration, ctx: JobContext, judged: list[Effect]
    ) -> dict[str, Any]:
        started = time.monotonic()
        if kind == "sync":
            syncer = self.registry.syncer(integration)
            if syncer is None:
                raise ConnectorError(
                    ErrorCode.UNSUPPORTED, f"integration type {integration.type_id!r} does not sync", retryable=False
                )
            sync = SyncRequest(tuple(job.sync.resource_types), tuple(job.sync.account_ids), job.sync.discovery_only)
            result = syncer.sync(sync, ctx)
        elif kind == "grant":
            grant = _grant_request(job.grant)
            now = datetime.now(UTC)
            ledger.check_expiry(grant.expires_at, now)  # a grant that has already expired is never applied
            provisioner, spec = self._provisioner(integration, grant.target)
            effect = provisioner.describe(grant, ctx)  # what it would really give: reads only
            judged.append(effect)
            (self.services.guardrails or DEFAULT_POLICY).check(effect, now, changes_nothing=spec.changes_nothing)
            ctx.check_cancelled()
            result = provisioner.grant(grant, effect, ctx)
            if not grant.dry_run:  # the audit trail (enable_audit) starts the grant's window
                self._hook("granted", integration, spec.resource_type, provisioner, grant, effect)
        elif kind == "revoke":
            r = job.revoke
            revoke = RevokeRequest(
                grant_id=_require_id(r.grant_id, "revoke.grant_id"),
                principal=_require_id(r.principal, "revoke.principal"),
                target=_struct(r.target, "revoke.target"),
                dry_run=r.dry_run,
            )
            provisioner, spec = self._provisioner(integration, revoke.target)
            result = provisioner.revoke(revoke, ctx)
            if not revoke.dry_run:  # the audit trail closes the grant's window
                self._hook("revoked", integration.integration_id, spec.resource_type, revoke.grant_id)
        else:
            raise InvalidJob(f"job kind {kind!r} is not supported by this connector version")
        if not isinstance(result, Mapping):
            raise ConnectorError(
                ErrorCode.INTERNAL, f"{integration.type_id}.{kind} returned no result", retryable=False
            )
        out = dict(result) | {"elapsed_ms": round((time.monotonic() - started) * 1000, 1)}
        if judged:
            out["effect"] = judged[0].summary()
        return out


def _grant_request(g: connector_pb2.GrantJob) -> GrantRequest:
    return GrantRequest(
        grant_id=_require_id(g.grant_id, "grant.grant_id"),
        principal=_require_id(g.principal, "grant.principal"),
        target=_struct(g.target, "grant.target"),
        expires_at=_expires_at(g),
        dry_run=g.dry_run,
        requester_public_key=g.requester_public_key,
        requester=g.requester,
    )


def _dry_run(job: connector_pb2.Job) -> bool:
    kind = job.WhichOneof("kind")
    return (kind == "grant" and job.grant.dry_run) or (kind == "revoke" and job.revoke.dry_run)


def _audit(job: connector_pb2.Job, outcome: JobOutcome, duration_s: float) -> None:
    action = job.WhichOneof("kind") or ""
    body = job.grant if action == "grant" else job.revoke
    audit.record(
        action=action,
        source="job",
        grant_id=body.grant_id[:MAX_ID_LENGTH],
        job_id=job.id[:MAX_ID_LENGTH],
        attempt=job.attempt,
        integration_id=job.integration.id[:MAX_ID_LENGTH],
        integration_type=job.integration.type[:64],
        principal=body.principal[:MAX_ID_LENGTH],
        target=_audit_target(body.target),
        dry_run=body.dry_run,
        outcome=outcome.outcome,
        error=outcome.error,
        duration_s=duration_s,
        result=outcome.result,
        effect=outcome.effect,
    )


def _audit_target(target: Any) -> dict[str, Any]:
    try:
        return _struct(target)
    except InvalidJob:
        return {"unreadable": "the target holds NaN or Infinity"}
