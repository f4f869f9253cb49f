"""A diagnostic integration that touches nothing: it sleeps and emits synthetic items on request.

Used by the dispatch benchmark and by agent tests (drain, cancellation, lease loss) where the job's
effect does not matter but its duration does. Bounded so a control plane cannot use it to pin a slot.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations.base import GrantRequest, InventoryItem, JobContext, RevokeRequest, SyncRequest
from connector.integrations.capabilities import Integration, IntegrationSpec, KindSpec
from connector.integrations.effect import Effect, Level

MAX_SLEEP_SECONDS = 600.0
MAX_ITEMS = 1_000_000


def _sleep(params: Mapping[str, Any], ctx: JobContext, where: str) -> float:
    """`where` names where the parameters came from in the job: "integration.settings" or "grant.target"..."""
    seconds = params.get("sleep_seconds", 0)
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise InvalidJob(f"{where}.sleep_seconds must be a number from 0 to {MAX_SLEEP_SECONDS:g}")
    end = time.monotonic() + float(seconds)
    while (left := end - time.monotonic()) > 0:
        ctx.check_cancelled()
        ctx.cancelled.wait(min(left, 0.05))
    ctx.check_cancelled()
    if code := params.get("fail_with"):
        if not isinstance(code, str) or code not in ErrorCode.__members__:
            raise InvalidJob(f"{where}.fail_with must be one of {sorted(ErrorCode.__members__)}")
        raise ConnectorError(ErrorCode(code), "failure requested by the noop job")
    return float(seconds)


class NoopIntegration(Integration):
    type_id = "noop"
    default_resource_type = "noop"


class NoopSync:
    def __init__(self, integration: NoopIntegration) -> None:
        self.settings = integration.settings

    def sync(self, request: SyncRequest, ctx: JobContext) -> dict[str, Any]:
        slept = _sleep(self.settings, ctx, "integration.settings")
        count = self.settings.get("items", 0)
        if not isinstance(count, (int, float)) or not 0 <= count <= MAX_ITEMS:
            raise InvalidJob(f"integration.settings.items must be a number from 0 to {MAX_ITEMS}")
        for i in range(int(count)):
            ctx.emit(InventoryItem(type="noop.item", id=f"item-{i}", name=f"item {i}", attributes={"n": i}))
        return {"slept_seconds": slept, "items": int(count)}


class NoopGrants:
    """Grants nothing anywhere: its Effect is level none, and it has nothing to expire."""

    def __init__(self, integration: NoopIntegration) -> None:
        self.integration = integration

    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect:
        return Effect(kind="noop", principal=request.principal, level=Level.NONE, expires_at=request.expires_at)

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]:
        # Wall-clock time the executor got the job: the dispatch benchmark's enqueue -> start latency.
        started_at = time.time()
        return {
            "grant_id": request.grant_id,
            "slept_seconds": _sleep(request.target, ctx, "grant.target"),
            "started_at": started_at,
        }

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        return {"grant_id": request.grant_id, "slept_seconds": _sleep(request.target, ctx, "revoke.target")}


INTEGRATION = IntegrationSpec(NoopIntegration, syncer=NoopSync)
KIND = KindSpec("noop", "noop", NoopGrants, changes_nothing=True)
