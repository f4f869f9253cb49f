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
from typing import Any, Literal

from google.protobuf import json_format

from connector.aws.errors import classify_aws_error
from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations.base import (
    GrantRequest,
    Integration,
    JobContext,
    RevokeRequest,
    Services,
    SyncRequest,
)
from connector.jobs import audit
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


def _struct(msg: Any) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True) if msg is not None else {}


def _require_id(value: str, what: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise InvalidJob(f"{what} is required: a printable string of 1 to {MAX_ID_LENGTH} characters")
    return value


class Dispatcher:
    """Routes jobs by kind and integration type. Integration instances are cached per settings."""

    def __init__(
        self, registry: Registry, services: Services, verify: Callable[[connector_pb2.Job], None] | None = None
    ) -> None:
        self.registry = registry
        self.services = services
        self._verify = verify
        self._instances: dict[tuple[str, str, str], Integration] = {}
        self._lock = threading.Lock()

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
        settings = _struct(spec.settings)
        key = (spec.id, spec.type, hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest())
        with self._lock:
            instance = self._instances.get(key)
            if instance is None:
                instance = cls(spec.id, settings, self.services)
                self._instances = {k: v for k, v in self._instances.items() if k[0] != spec.id}
                self._instances[key] = instance
        return instance

    def execute(self, job: connector_pb2.Job, ctx: JobContext) -> JobOutcome:
        started = time.monotonic()
        outcome = self._execute(job, ctx)
        if job.WhichOneof("kind") in ("grant", "revoke"):
            _audit(job, outcome, time.monotonic() - started)  # exactly one audit line per grant / revoke
        return outcome

    def _execute(self, job: connector_pb2.Job, ctx: JobContext) -> JobOutcome:
        kind = ""
        integration_type = job.integration.type if job.HasField("integration") else ""
        try:
            _require_id(job.id, "job id")
            if self._verify is not None:
                self._verify(job)
            kind = job.WhichOneof("kind") or ""
            if not kind:
                raise InvalidJob("the job has no kind: set one of sync, grant, revoke")
            integration = self._integration(job)
            ctx.check_cancelled()
            result = self._route(kind, job, integration, ctx)
            return JobOutcome("succeeded", result=result, kind=kind, integration_type=integration_type)
        except ConnectorError as exc:
            outcome: Outcome = "cancelled" if exc.code == ErrorCode.CANCELLED else "failed"
            return JobOutcome(outcome, error=exc, kind=kind, integration_type=integration_type)
        except Exception as exc:  # the agent must survive anything an integration does
            mapped = classify_aws_error(exc)
            if mapped is not None:
                return JobOutcome("failed", error=mapped, kind=kind, integration_type=integration_type)
            log.exception("job_internal_error", job_id=job.id)
            error = ConnectorError(
                ErrorCode.INTERNAL, f"unexpected {type(exc).__name__}: {redact_text(str(exc))[:500]}", retryable=False
            )
            return JobOutcome("failed", error=error, kind=kind, integration_type=integration_type)

    def _route(self, kind: str, job: connector_pb2.Job, integration: Integration, ctx: JobContext) -> dict[str, Any]:
        started = time.monotonic()
        if kind == "sync":
            sync = SyncRequest(tuple(job.sync.resource_types), tuple(job.sync.account_ids), job.sync.discovery_only)
            result = integration.sync(sync, ctx)
        elif kind == "grant":
            g = job.grant
            grant = GrantRequest(
                grant_id=_require_id(g.grant_id, "grant.grant_id"),
                principal=_require_id(g.principal, "grant.principal"),
                target=_struct(g.target),
                expires_at=g.expires_at.ToDatetime(tzinfo=UTC) if g.HasField("expires_at") else None,
                dry_run=g.dry_run,
                requester_public_key=g.requester_public_key,
                requester=g.requester,
            )
            guardrails = self.services.guardrails
            if guardrails is not None:
                guardrails.check_grant(grant.target, grant.expires_at, datetime.now(UTC), integration.account_ous)
            result = integration.grant(grant, ctx)
        elif kind == "revoke":
            r = job.revoke
            revoke = RevokeRequest(
                grant_id=_require_id(r.grant_id, "revoke.grant_id"),
                principal=_require_id(r.principal, "revoke.principal"),
                target=_struct(r.target),
                dry_run=r.dry_run,
            )
            result = integration.revoke(revoke, ctx)
        else:
            raise InvalidJob(f"job kind {kind!r} is not supported by this connector version")
        if not isinstance(result, Mapping):
            raise ConnectorError(
                ErrorCode.INTERNAL, f"{integration.type_id}.{kind} returned no result", retryable=False
            )
        return dict(result) | {"elapsed_ms": round((time.monotonic() - started) * 1000, 1)}


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
        target=_struct(body.target),
        dry_run=body.dry_run,
        outcome=outcome.outcome,
        error=outcome.error,
        duration_s=duration_s,
        result=outcome.result,
    )
