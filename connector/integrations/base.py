"""The interface every integration implements, and the context a job runs in.

Integrations are plain, synchronous Python: the agent runs them in a bounded worker pool and gives them a
JobContext. They never import the agent or generated gRPC code. A Syncer emits inventory items through
the context (streamed to the control plane while the sync runs); a Provisioner grants and revokes and
returns a JSON-able result. Both raise ConnectorError subclasses for failures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from connector.errors import ConnectorError, ErrorCode, JobCancelled


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
    progress: Callable[[int, int], None] = lambda done, total: None

    def check_cancelled(self) -> None:
        """Call between units of work: raises if cancelled or past the deadline."""
        if self.cancelled.is_set():
            raise JobCancelled()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ConnectorError(ErrorCode.TIMEOUT, "the job's deadline passed before it finished")

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


class Integration:
    """Base class: an integration type id, its settings, and the operations it supports.

    Subclasses set `type_id` and override `sync` and/or `grant` + `revoke`; `capabilities` is derived from
    which ones they override. Settings are validated in `__init__` (raise InvalidSettings naming the
    setting), so a bad setting becomes a non-retryable result before any call is made.
    """

    type_id: ClassVar[str]

    def __init__(self, integration_id: str, settings: Mapping[str, Any], services: Services) -> None:
        self.integration_id = integration_id
        self.settings = settings
        self.services = services

    @classmethod
    def operations(cls) -> frozenset[str]:
        ops = set()
        if cls.sync is not Integration.sync:
            ops.add("sync")
        if cls.grant is not Integration.grant:
            ops.add("grant")
        if cls.revoke is not Integration.revoke:
            ops.add("revoke")
        return frozenset(ops)

    def account_ous(self, account_id: str) -> list[str]:
        """OU ids above an account (for the customer's organizational_units guardrail); [] if unknown."""
        return []

    def sync(self, request: SyncRequest, ctx: JobContext) -> dict[str, Any]:
        raise ConnectorError(ErrorCode.UNSUPPORTED, f"integration type {self.type_id!r} does not sync", retryable=False)

    def grant(self, request: GrantRequest, ctx: JobContext) -> dict[str, Any]:
        raise ConnectorError(
            ErrorCode.UNSUPPORTED, f"integration type {self.type_id!r} does not grant", retryable=False
        )

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        raise ConnectorError(
            ErrorCode.UNSUPPORTED, f"integration type {self.type_id!r} does not revoke", retryable=False
        )


@dataclass
class Services:
    """Process-wide resources shared by integrations (built once at start-up by the jobs layer)."""

    connector_id: str
    # connector.aws.sessions.AwsSessions: connector identity + cached assumed-role credentials.
    aws: Any = None
    # connector.jobs.guardrails.Guardrails (customer's policy file), or None when not configured.
    guardrails: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
