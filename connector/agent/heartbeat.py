"""Lease renewal: one Heartbeat call for every running lease (including jobs still delivering their
result), on its own asyncio task, so job work (in threads) can never starve it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from grpc import aio

from connector.agent.channel import ControlPlaneClient, FatalConnectionError, TokenUnavailable, fatal_message, is_fatal
from connector.agent.executor import RunningJob
from connector.agent.health import HealthState
from connector.agent.metrics import Metrics
from connector.agent.steering import Steering
from connector.logging import get_logger

log = get_logger("connector.agent.heartbeat")


class Heartbeater:
    def __init__(
        self,
        client: ControlPlaneClient,
        leases: Callable[[], list[RunningJob]],
        steering: Callable[[], Steering],
        metrics: Metrics,
        health: HealthState,
        on_fatal: Callable[[FatalConnectionError], None],
    ) -> None:
        self._client = client
        self._leases = leases
        self._steering = steering
        self._metrics = metrics
        self._health = health
        self._on_fatal = on_fatal
        self.beats = 0

    async def run(self) -> None:
        # Re-read the interval every slice: a Hello (first or after a reconnect) may shorten it, and a
        # beat scheduled with the old value could otherwise come after the new, shorter lease ran out.
        last = time.monotonic()
        while True:
            due = last + self._steering().heartbeat_interval
            now = time.monotonic()
            if now < due:
                await asyncio.sleep(min(due - now, 0.25))
                continue
            last = now
            await self.beat_once()

    async def beat_once(self) -> None:
        running = self._leases()
        if not running:
            return
        steering = self._steering()
        sent_at = time.monotonic()
        self._health.last_attempt = sent_at
        try:
            response = await self._client.heartbeat(
                [r.key for r in running], rpc_deadline=max(1.0, steering.heartbeat_interval)
            )
        except aio.AioRpcError as exc:
            if is_fatal(exc):
                self._on_fatal(
                    FatalConnectionError(fatal_message(exc.code(), exc.details() or "", self._client.config))
                )
                return
            self._metrics.heartbeat_failures.inc()
            log.warning("heartbeat_failed", code=exc.code().name, leases=len(running))
            return
        except TokenUnavailable as exc:
            self._metrics.heartbeat_failures.inc()
            log.warning("heartbeat_failed", error=str(exc), leases=len(running))
            return
        self.beats += 1
        cancelled = set(response.cancelled_job_ids)
        lost = set(response.lost_job_ids)
        by_id: dict[str, list[RunningJob]] = {}
        for r in running:
            by_id.setdefault(r.job.id, []).append(r)
        for job_id, same in by_id.items():
            same.sort(key=lambda r: r.job.attempt)
            if job_id in lost:
                # With two attempts of one job here, the older one is the lost lease.
                victim = same[0]
                victim.cancel("lost")
                log.warning("job_lease_lost", job_id=job_id, attempt=victim.job.attempt)
                same = same[1:]
            for r in same:
                r.lease_until = sent_at + steering.lease_duration
                if job_id in cancelled and not r.cancelled.is_set():
                    r.cancel("control_plane")
                    log.info("job_cancel_requested", job_id=job_id, attempt=r.job.attempt)
