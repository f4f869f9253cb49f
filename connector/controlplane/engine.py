"""The control plane's core: the stores behind one DB thread, wake-ups for long-polls and waiters, and
the lease / backoff timers. Both servicers call only this.

- All SQLite work runs on one dedicated thread, so the event loop never blocks on it and the connection
  is never used concurrently; each store call is one transaction.
- Wake-ups are in-process asyncio Events keyed by connector ("conn:<id>") or job ("job:<id>"). A waiter
  takes the event *before* it looks at the store, so a change committed in between is never missed.
- Every state change is logged as one line ("job <event>") and re-arms the matching timer.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from connector.controlplane.db import Database
from connector.controlplane.events import EventStore
from connector.controlplane.fanout import SplitStore
from connector.controlplane.inventory import ChunkStatus, InventoryStore
from connector.controlplane.leases import Timers
from connector.controlplane.presence import Presence
from connector.controlplane.settings import ServerSettings
from connector.controlplane.store import (
    LEASED,
    QUEUED,
    TERMINAL,
    Change,
    FinishResult,
    HeartbeatResult,
    JobStore,
    Refused,
)
from connector.logging import get_logger
from connector.v1 import admin_pb2, connector_pb2

log = get_logger("connector.controlplane")
T = TypeVar("T")


class Engine:
    def __init__(
        self, settings: ServerSettings, db: Database, sign: Callable[[connector_pb2.Job], None] | None = None
    ) -> None:
        self.settings = settings
        self.db = db
        self.jobs = JobStore(db)
        self.inventory = InventoryStore(db)
        self.events = EventStore(db)
        # Jobs the control plane makes itself are signed too, and sized to fit a PollJobs answer.
        self.splits = SplitStore(db, sign, settings.poll_budget_bytes)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="controlplane-db")
        self._events: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._stopping = False
        self.timers = Timers(self._on_due)
        self.presence = Presence()  # replicas heard from (Admin.ListConnectors)
        # Discovery jobs whose split is not done yet: only their end needs the split step (a lookup per
        # finished job would be a database round trip for every job).
        self._split_parents: set[str] = set()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    async def start(self) -> None:
        """Re-arms the timers of leases and backoffs found in the store (after a restart)."""
        now = time.time()
        for job_id, attempt, expires in await self.call(self.jobs.leases):
            self.timers.schedule(expires, ("lease", job_id, attempt))
        for connector_id, available_at in await self.call(self.jobs.delayed, now):
            self.timers.schedule(available_at, ("wake", connector_id, available_at))
        self.timers.start()
        for parent_job_id in await self.call(self.splits.pending):  # splits whose parent ended while we were down
            self._split_parents.add(parent_job_id)
            self._apply(await self.call(self.splits.complete, parent_job_id, time.time()))

    def begin_shutdown(self) -> None:
        """Held long-polls and waits return now (empty / as-is), so the server stops without cutting them."""
        self._stopping = True
        for event in self._events.values():
            event.set()
        self._events.clear()

    async def stop(self) -> None:
        self.begin_shutdown()
        await self.timers.stop()
        self._executor.shutdown(wait=True)

    # -- wake-ups ------------------------------------------------------------------------------

    def _event(self, key: str) -> asyncio.Event:
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        return event

    def _notify(self, key: str) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    def _apply(self, changes: Sequence[Change]) -> None:
        now = time.time()
        for change in changes:
            fields: dict[str, Any] = {
                "job_id": change.job_id,
                "connector_id": change.connector_id,
                "state": admin_pb2.JobState.Name(change.state).removeprefix("JOB_STATE_"),
                "attempt": change.attempt,
            }
            if change.host_id:
                fields["host_id"] = change.host_id
            if change.error_code:
                fields["error_code"] = change.error_code
                fields["error_message"] = change.error_message
            if change.state == LEASED and change.lease_expires is not None:
                self.timers.schedule(change.lease_expires, ("lease", change.job_id, change.attempt))
            if change.event == "requeued":
                self.timers.forget(("lease", change.job_id, change.attempt - 1))
            if change.state in TERMINAL:
                self.timers.forget(("lease", change.job_id, change.attempt))
                if change.job_id in self._split_parents:
                    self._spawn(self._complete_split(change.job_id))
            if change.state == QUEUED:
                if change.available_at is not None and change.available_at > now:
                    fields["retry_in_s"] = round(change.available_at - now, 3)
                    self.timers.schedule(change.available_at, ("wake", change.connector_id, change.available_at))
                else:
                    self._notify(f"conn:{change.connector_id}")
            self._notify(f"job:{change.job_id}")
            level = log.warning if change.state == admin_pb2.JOB_STATE_FAILED else log.info
            level(f"job {change.event}", **fields)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _complete_split(self, job_id: str) -> None:
        if not self._stopping:
            self._split_parents.discard(job_id)
            self._apply(await self.call(self.splits.complete, job_id, time.time()))

    async def _on_due(self, keys: list[Hashable]) -> None:
        for key in keys:
            assert isinstance(key, tuple)
            if key[0] == "wake":
                self._notify(f"conn:{key[1]}")
                continue
            _, job_id, attempt = key
            still_valid_until, changes = await self.call(
                self.jobs.expire, job_id, attempt, time.time(), self.settings.max_attempts
            )
            if still_valid_until is not None:
                self.timers.schedule(still_valid_until, key)
            self._apply(changes)

    # -- operations ----------------------------------------------------------------------------

    async def enqueue(
        self,
        connector_id: str,
        job: connector_pb2.Job,
        idempotency_key: str,
        now: float,
        deadline: float,
        split: tuple[int, float] | None = None,
    ) -> admin_pb2.JobRecord:
        record, changes = await self.call(self.jobs.enqueue, connector_id, job, idempotency_key, now, deadline, split)
        if split is not None:
            self._split_parents.add(record.job.id)
        self._apply(changes)
        return record

    async def poll(
        self, connector_id: str, host_id: str, max_jobs: int, wait: float, is_active: Callable[[], bool]
    ) -> list[connector_pb2.Job]:
        """Long-poll: returns as soon as a job is leased, or [] when `wait` ends. Never sleep-polls the db:
        it sleeps on the connector's Event, which enqueue / re-queue / backoff end set. The answer holds at
        most settings.poll_budget_bytes of jobs; what did not fit stays queued for the next poll."""
        deadline = time.monotonic() + wait
        while True:
            event = self._event(f"conn:{connector_id}")
            if self._stopping or not is_active():
                return []
            jobs = await self._lease(connector_id, host_id, max_jobs, is_active)
            remaining = deadline - time.monotonic()
            if jobs or remaining <= 0:
                return jobs
            try:
                await asyncio.wait_for(event.wait(), timeout=remaining)
            except TimeoutError:
                return []

    async def _lease(
        self, connector_id: str, host_id: str, max_jobs: int, is_active: Callable[[], bool]
    ) -> list[connector_pb2.Job]:
        settings = self.settings
        lease = self.call(
            self.jobs.lease,
            connector_id,
            host_id,
            max_jobs,
            time.time(),
            settings.lease_seconds,
            settings.poll_budget_bytes,
        )
        task = asyncio.ensure_future(lease)
        try:
            jobs, changes = await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller went away while the lease transaction ran: give those jobs back.
            task.add_done_callback(self._release_after_cancel)
            raise
        self._apply(changes)
        if jobs and not is_active():
            await self._release([(job.id, job.attempt) for job in jobs])
            return []
        return jobs

    def _release_after_cancel(self, task: asyncio.Future[tuple[list[connector_pb2.Job], list[Change]]]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        jobs, changes = task.result()
        self._apply(changes)
        if jobs:
            release = asyncio.ensure_future(self._release([(job.id, job.attempt) for job in jobs]))
            self._background.add(release)
            release.add_done_callback(self._background.discard)

    async def _release(self, leased: list[tuple[str, int]]) -> None:
        self._apply(await self.call(self.jobs.release, leased))

    async def heartbeat(self, connector_id: str, leases: list[tuple[str, int]]) -> tuple[HeartbeatResult, float]:
        now = time.time()
        result = await self.call(self.jobs.heartbeat, connector_id, leases, now, self.settings.lease_seconds)
        expires = now + self.settings.lease_seconds
        for job_id, attempt in result.renewed:
            self.timers.schedule(expires, ("lease", job_id, attempt))
        return result, expires

    async def finish(self, connector_id: str, request: connector_pb2.FinishJobRequest) -> FinishResult:
        """One result (FinishJob): judged by the same path as a batch of one. Raises Refused."""
        [result] = await self.finish_many(connector_id, [request])
        if isinstance(result, Refused):
            raise result
        return result

    async def finish_many(
        self, connector_id: str, requests: list[connector_pb2.FinishJobRequest]
    ) -> list[FinishResult | Refused]:
        """Each request judged on its own (its own transaction and attempt fence), all in one trip to the store
        thread (FinishJobs); a refusal is returned in its place rather than raised."""
        if not requests:
            return []
        results = await self.call(self._finish_each, connector_id, requests, time.time())
        for result in results:
            if isinstance(result, FinishResult):
                self._apply(result.changes)
        return results

    def _finish_each(
        self, connector_id: str, requests: list[connector_pb2.FinishJobRequest], now: float
    ) -> list[FinishResult | Refused]:
        results: list[FinishResult | Refused] = []
        for request in requests:
            try:
                results.append(
                    self.jobs.finish(
                        connector_id, request, now, self.settings.max_attempts, self.settings.retry_backoff
                    )
                )
            except Refused as refused:
                results.append(refused)
        return results

    async def upload(self, connector_id: str, chunk: connector_pb2.InventoryChunk) -> ChunkStatus:
        status = await self.call(self.inventory.upload, connector_id, chunk, time.time())
        if status.stored:
            self._notify(f"job:{chunk.job_id}")
        return status

    async def report_events(
        self, connector_id: str, host_id: str, events: Sequence[connector_pb2.ConnectorEvent]
    ) -> int:
        accepted = await self.call(self.events.report, connector_id, host_id, events, time.time())
        for event in accepted:
            fields: dict[str, Any] = {
                "connector_id": connector_id,
                "host_id": host_id,
                "event_id": event.id,
                "type": event.type,
                "integration_id": event.integration_id,
                "grant_id": event.grant_id,
                "outcome": connector_pb2.Outcome.Name(event.outcome).removeprefix("OUTCOME_"),
            }
            if event.error.code:
                fields["error_code"] = event.error.code
                fields["error_message"] = event.error.message
            (log.warning if event.outcome == connector_pb2.OUTCOME_FAILED else log.info)("connector event", **fields)
        return len(accepted)

    async def cancel(self, job_id: str) -> admin_pb2.JobRecord:
        record, changes = await self.call(self.jobs.cancel, job_id, time.time())
        self._apply(changes)
        return record

    async def get(self, job_id: str) -> admin_pb2.JobRecord | None:
        record = await self.call(self.jobs.get, job_id)
        if record is not None and record.job.WhichOneof("kind") == "sync" and record.job.sync.discovery_only:
            record.child_job_ids.extend(await self.call(self.splits.children, job_id))
        return record

    async def wait(self, job_id: str, wait_seconds: float) -> admin_pb2.JobRecord | None:
        """The job's record once it is terminal, or as it is when `wait_seconds` end."""
        deadline = time.monotonic() + wait_seconds
        while True:
            event = self._event(f"job:{job_id}")
            record = await self.get(job_id)
            remaining = deadline - time.monotonic()
            if record is None or record.state in TERMINAL or remaining <= 0 or self._stopping:
                return record
            try:
                await asyncio.wait_for(event.wait(), timeout=remaining)
            except TimeoutError:
                return await self.get(job_id)
