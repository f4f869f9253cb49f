"""What a job hands an integration, and the context it runs in.

Integrations are plain, synchronous Python: the agent runs them in a bounded worker pool and gives them a
JobContext. They never import the agent or generated gRPC code. A Syncer emits inventory items through
the context (streamed to the control plane while the sync runs); a Provisioner grants and revokes and
returns a JSON-able result. Both raise ConnectorError subclasses for failures. The interfaces themselves
are in connector.integrations.capabilities.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.errors import ConnectorError, ErrorCode, JobCancelled
from connector.integrations.endpoints import EndpointMap


@dataclass(frozen=True, slots=True)
class InventoryItem:
    """One discovered resource (or a per-scope error, type "error"). `attributes` must be JSON-able."""

    type: str
    id: str
    name: str = ""
    account_id: str = ""
    region: str = ""
    parent_id: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SyncRequest:
    resource_types: tuple[str, ...] = ()  # empty = all the integration syncs
    account_ids: tuple[str, ...] = ()  # empty = every account in scope
    discovery_only: bool = False  # only the organisation-wide part: tree, accounts, Identity Center directory


@dataclass(frozen=True, slots=True)
class GrantRequest:
    grant_id: str
    principal: str
    target: Mapping[str, Any]
    expires_at: datetime | None = None
    dry_run: bool = False
    requester_public_key: bytes = b""
    requester: str = ""


@dataclass(frozen=True, slots=True)
class RevokeRequest:
    grant_id: str
    principal: str
    target: Mapping[str, Any]
    dry_run: bool = False


def _discard(_: InventoryItem) -> None:
    return None


@dataclass
class JobContext:
    """What a running job may use: identity, cancellation, deadline, the inventory sink, progress."""

    job_id: str
    attempt: int
    connector_id: str
    integration_id: str
    cancelled: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # time.monotonic() value
    emit: Callable[[InventoryItem], None] = _discard
    progress: Callable[[int, int], None] = lambda done, total: None  # a sync's accounts (total 0: not known yet)
    scope_progress: Callable[[int, int], None] = lambda done, total: None  # its scope tasks, the same way

    def check_cancelled(self) -> None:
        """Call between units of work: raises if cancelled or past the deadline."""
        if self.cancelled.is_set():
            raise JobCancelled()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ConnectorError(ErrorCode.TIMEOUT, "the job's deadline passed before it finished")

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


@dataclass
class Services:
    """Process-wide resources shared by integrations (built once at start-up by the jobs layer)."""

    connector_id: str
    # connector.aws.sessions.AwsSessions: connector identity + cached assumed-role credentials.
    aws: Any = None
    # connector.jobs.guardrails.Guardrails: the customer's policy file, or the default policy.
    guardrails: Any = None
    # Where database endpoints AWS reports are really reached (CONNECTOR_DATABASE_ENDPOINTS); empty: as reported.
    database_endpoints: EndpointMap = field(default_factory=EndpointMap)
    extra: dict[str, Any] = field(default_factory=dict)


class ContextThreadPool(ThreadPoolExecutor):
    """A thread pool whose tasks run in a copy of the submitting thread's context: the job's log fields
    (job_id, attempt) and its trace span reach every line and span a pool thread makes (`map` submits too)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
