"""Running one job: its JobContext, the worker thread, and (for syncs) the inventory stream.

The dispatcher is synchronous and may block for minutes in SDK calls, so it runs in the bounded worker
pool via run_in_executor; the event loop (polling, heartbeats) stays free. `RunningJob` is the job's
shared state: the heartbeat task renews its lease and may cancel it or mark it lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Literal

from connector import telemetry
from connector.agent.channel import ControlPlaneClient
from connector.agent.inventory_upload import InventorySink, InventoryUploader
from connector.agent.steering import Steering
from connector.errors import ConnectorError, ErrorCode
from connector.integrations.base import JobContext
from connector.jobs.dispatcher import Dispatcher, JobOutcome, Outcome

CancelReason = Literal["", "control_plane", "lost", "drain", "fatal"]


@dataclass
class RunningJob:
    job: Any  # connector_pb2.Job
    lease_until: float  # monotonic; renewed by each successful heartbeat
    started: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)
    abandon: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: CancelReason = ""
    lost: bool = False
    progress: tuple[int, int] = (0, 0)  # a sync's accounts done / total (0: not known yet)
    scopes: tuple[int, int] = (0, 0)  # and its scope tasks

    @property
    def key(self) -> tuple[str, int]:
        return (self.job.id, self.job.attempt)

    def cancel(self, reason: CancelReason) -> None:
        if not self.cancel_reason:
            self.cancel_reason = reason
        if reason == "lost":
            self.lost = True
        self.cancelled.set()


@dataclass
class JobReport:
    outcome: str  # "succeeded" | "failed" | "cancelled"
    error: ConnectorError | None
    result: dict[str, Any]
    duration: float
    kind: str
    integration: str


def _interrupted(kind: str, integration: str) -> JobOutcome:
    # Not OUTCOME_CANCELLED: that one is final (the control plane asked for it). This replica went away,
    # so it is a retryable failure with code CANCELLED, and the control plane runs the job again.
    error = ConnectorError(
        ErrorCode.CANCELLED, "the connector shut down before the job finished; it can run again", retryable=True
    )
    return JobOutcome("failed", error=error, kind=kind, integration_type=integration)


class JobExecutor:
    def __init__(
        self,
        dispatcher: Dispatcher,
        pool: Executor,
        client: ControlPlaneClient,
        connector_id: str,
        steering: Callable[[], Steering],
        on_progress: Callable[[RunningJob, int, int], None] | None = None,
        on_scope_progress: Callable[[RunningJob], None] | None = None,
    ) -> None:
        self._on_progress = on_progress
        self._on_scope_progress = on_scope_progress
        self._dispatcher = dispatcher
        self._pool = pool
        self._client = client
        self._connector_id = connector_id
        self._steering = steering

    async def run(self, running: RunningJob) -> JobReport:
        job = running.job
        kind = job.WhichOneof("kind") or ""
        integration = job.integration.type if job.HasField("integration") else ""
        # One span per job (when tracing is on); the job's worker thread runs inside it (copied context).
        with telemetry.span(
            "job", **{"job.id": job.id, "job.attempt": job.attempt, "job.kind": kind, "integration.type": integration}
        ) as current:
            report = await self._run(running)
            telemetry.set_attributes(
                current, **{"job.outcome": report.outcome, "error.code": str(report.error.code) if report.error else ""}
            )
            return report

    async def _run(self, running: RunningJob) -> JobReport:
        loop = asyncio.get_running_loop()
        job = running.job
        steering = self._steering()
        ctx = JobContext(
            job_id=job.id,
            attempt=job.attempt,
            connector_id=self._connector_id,
            integration_id=job.integration.id if job.HasField("integration") else "",
            cancelled=running.cancelled,
            deadline=steering.local_deadline(job.deadline if job.HasField("deadline") else None),
        )

        def progress(done: int, total: int) -> None:  # called from the job's worker threads
            running.progress = (done, total)
            if self._on_progress is not None:
                self._on_progress(running, done, total)

        def scope_progress(done: int, total: int) -> None:  # the same, per scope task of a sync
            running.scopes = (done, total)
            if self._on_scope_progress is not None:
                self._on_scope_progress(running)

        ctx.progress = progress
        ctx.scope_progress = scope_progress
        uploader: InventoryUploader | None = None
        upload_task: asyncio.Task[Any] | None = None
        sink: InventorySink | None = None
        if job.WhichOneof("kind") == "sync":
            uploader = InventoryUploader(
                self._client.upload,
                connector_id=self._connector_id,
                job_id=job.id,
                attempt=job.attempt,
                should_stop=running.cancelled.is_set,
            )
            sink = InventorySink(loop, uploader.queue, running.cancelled, lambda: uploader.error if uploader else None)
            ctx.emit = sink.emit
            upload_task = asyncio.create_task(uploader.run(), name=f"upload-{job.id}")

        def work() -> JobOutcome:
            outcome = self._dispatcher.execute(job, ctx)
            if sink is not None and outcome.outcome == "succeeded":
                try:
                    sink.close()
                except ConnectorError as exc:
                    state: Outcome = "cancelled" if exc.code == ErrorCode.CANCELLED else "failed"
                    return JobOutcome(state, error=exc, kind=outcome.kind, integration_type=outcome.integration_type)
            return outcome

        started = running.started
        # run_in_executor does not carry contextvars: the job's log context (job_id) and span go along by hand.
        future = loop.run_in_executor(self._pool, contextvars.copy_context().run, work)
        abandon: asyncio.Future[Any] = asyncio.ensure_future(running.abandon.wait())
        await asyncio.wait([future, abandon], return_when=asyncio.FIRST_COMPLETED)
        abandon.cancel()
        kind = job.WhichOneof("kind") or ""
        integration = job.integration.type if job.HasField("integration") else ""
        # Not done = the thread ignored cancellation past the drain: report without it, leave it behind.
        outcome = future.result() if future.done() else _interrupted(kind, integration)
        if running.cancel_reason in ("drain", "fatal") and outcome.outcome == "cancelled":
            outcome = _interrupted(kind, integration)

        result = dict(outcome.result)
        if upload_task is not None and uploader is not None:
            if outcome.outcome == "succeeded":
                await upload_task
                if uploader.error is not None:
                    outcome = JobOutcome("failed", error=uploader.error, kind=kind, integration_type=integration)
                    result = {}
                else:
                    result["inventory"] = {"items": uploader.result.items, "chunks": uploader.result.chunks}
            else:
                upload_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await upload_task
        return JobReport(
            outcome=outcome.outcome,
            error=outcome.error,
            result=result,
            duration=time.monotonic() - started,
            kind=outcome.kind or kind,
            integration=outcome.integration_type or integration,
        )
