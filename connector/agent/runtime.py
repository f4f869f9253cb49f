"""The agent's orchestration: register, long-poll with slots, run jobs, report, reconnect, drain.

One control loop (Hello, then PollJobs for as many jobs as there are free slots), one heartbeat task,
one task per job (its work runs in the worker pool). Failures of the connection back off with jittered
exponential waits (tenacity) and re-register; a refused identity stops the agent (exit code 3). The
long-running tasks run under `supervisor.Supervisor`, which restarts any that crashes: nothing a job
carries, and no bug in one of them, ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import struct_pb2
from grpc import aio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_fixed, wait_random_exponential

from connector.agent.channel import (
    CONNECT_TIMEOUT,
    POLL_MARGIN,
    ControlPlaneClient,
    FatalConnectionError,
    TokenUnavailable,
    control_plane_proxy,
    failure_reason,
    fatal_message,
    is_fatal,
    is_retryable,
    is_transient,
    make_channel,
    status_code,
)
from connector.agent.events import SWEEP_INTERVAL, EventReporter, Sweeper, SweepLoop
from connector.agent.executor import JobExecutor, JobReport, RunningJob
from connector.agent.finish_batch import BatchUnavailable, FinishBatcher
from connector.agent.health import HealthServer, HealthState
from connector.agent.heartbeat import Heartbeater
from connector.agent.inventory_upload import _struct
from connector.agent.metrics import Metrics
from connector.agent.slots import Slots
from connector.agent.steering import Steering
from connector.agent.supervisor import Supervisor
from connector.config import AgentConfig
from connector.errors import ConnectorError, ErrorCode
from connector.jobs.dispatcher import Dispatcher
from connector.logging import console, get_logger
from connector.v1 import connector_pb2

log = get_logger("connector.agent")

EXIT_OK = 0
EXIT_FATAL_AUTH = 3
REPORT_TIMEOUT = 10.0  # deadline of one FinishJob call
REPORT_WINDOW = 10.0  # after the drain grace, how long results may still be retried
CANCEL_WAIT = 5.0  # after the grace, how long cancelled jobs get to stop before they are abandoned
BACKOFF_MIN = 0.25
BACKOFF_MAX = 30.0
CONTROL_LOOP = "control-loop"
PROGRESS_EVERY = 1.0  # on a terminal: a progress line at most this often (sync accounts, drain)

_OUTCOMES = {
    "succeeded": connector_pb2.OUTCOME_SUCCEEDED,
    "failed": connector_pb2.OUTCOME_FAILED,
    "cancelled": connector_pb2.OUTCOME_CANCELLED,
}

T = TypeVar("T")


def _crashed(running: RunningJob) -> JobReport:
    job = running.job
    error = ConnectorError(ErrorCode.INTERNAL, "the connector failed to run this job; see its log", retryable=False)
    integration = job.integration.type if job.HasField("integration") else ""
    return JobReport("failed", error, {}, time.monotonic() - running.started, job.WhichOneof("kind") or "", integration)


class _Stopped(Exception):
    """The in-flight control call was interrupted because the agent is stopping."""


class _SessionLost(Exception):
    """A session that had been working lost its connection: reconnect with a fresh backoff."""


class AgentRuntime:
    def __init__(
        self,
        config: AgentConfig,
        dispatcher: Dispatcher,
        *,
        sweeper: Sweeper | None = None,
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.sweeper = sweeper
        self.sweep_interval = sweep_interval
        self.sweep_loop: SweepLoop | None = None
        self.reporter: EventReporter | None = None
        self.supervisor: Supervisor | None = None
        self.metrics = Metrics()
        self.health = HealthState()
        self.steering = Steering()
        self.slots = Slots(config.concurrency)
        self.running: dict[tuple[str, int], RunningJob] = {}
        self.health_address = ""
        self.fatal_error: FatalConnectionError | None = None
        self.stale_refusals = 0
        self._progress_shown: dict[tuple[str, int], float] = {}  # job -> when its progress was last logged
        self.finish_batches = FinishBatcher(self._send_finish_batch)
        self.reconnects = 0
        self._stop = asyncio.Event()
        self._job_tasks: set[asyncio.Task[None]] = set()
        self._inflight: asyncio.Task[Any] | None = None
        self._report_deadline: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: ControlPlaneClient | None = None
        self._executor: JobExecutor | None = None

    # ---- stopping -------------------------------------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        """Stop polling at once and drain (call from the event loop; see `request_stop_threadsafe`)."""
        if self._stop.is_set():
            return
        log.info(
            "drain_started",
            reason=reason,
            running=len(self.running),
            grace_seconds=self.config.drain_grace_seconds,
        )
        self.health.draining = True
        self._stop.set()
        if self._inflight is not None:
            self._inflight.cancel()

    def request_stop_threadsafe(self, reason: str = "requested") -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.request_stop, reason)

    def max_shutdown_seconds(self) -> float:
        """Upper bound of a drain; the process watchdog forces exit after it."""
        return self.config.drain_grace_seconds + CANCEL_WAIT + REPORT_WINDOW + 2 * REPORT_TIMEOUT + 10.0

    def _on_fatal(self, error: FatalConnectionError) -> None:
        if self.fatal_error is None:
            self.fatal_error = error
            log.error("connection_refused", message=str(error))
        self.request_stop("fatal")

    # ---- main -----------------------------------------------------------------------------------------

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="connector-job")
        self._client = ControlPlaneClient(self.config, make_channel(self.config))
        self._executor = JobExecutor(
            self.dispatcher,
            pool,
            self._client,
            self.config.id,
            lambda: self.steering,
            self._progress,
            self._scope_progress,
        )
        health_server = HealthServer(self.config.health_addr, self.health, self.metrics.registry)
        health_server.start()
        self.health_address = health_server.address
        log.info("health_listening", address=self.health_address)
        heartbeater = Heartbeater(
            self._client,
            lambda: list(self.running.values()),
            lambda: self.steering,
            self.metrics,
            self.health,
            self._on_fatal,
        )
        outbox = self.config.state_dir / "events-outbox" if self.config.state_dir is not None else None
        reporter = self.reporter = EventReporter(self._client, outbox)
        supervisor = self.supervisor = Supervisor(
            self.metrics, self.health, stopping=self._stop.is_set, on_fatal=self._on_fatal
        )
        supervisor.start(CONTROL_LOOP, self._control_loop)
        supervisor.start("heartbeat", heartbeater.run)
        supervisor.start("tick", self._tick)
        supervisor.start("event-report", lambda: reporter.run(retry_interval=self.sweep_interval))
        if self.sweeper is not None:
            self.sweep_loop = SweepLoop(self.sweeper, reporter, self.sweep_interval, self._expiry_status)
            supervisor.start("expiry-sweep", self.sweep_loop.run)
            log.info("expiry_sweeper_started", interval_seconds=self.sweep_interval)
        try:
            await self._stop.wait()
            await supervisor.settled(CONTROL_LOOP)  # no job starts after this, so the drain sees every one
            self.health.draining = True
            if self.fatal_error is not None:
                await self._abort_jobs()
                return EXIT_FATAL_AUTH
            await self._drain()
            return EXIT_OK
        finally:
            await supervisor.close()
            if self.sweep_loop is not None:
                self.sweep_loop.close()
            if reporter.pending and self.fatal_error is None:  # last chance for events not yet reported
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reporter.flush(), REPORT_TIMEOUT)
            health_server.stop()
            await self._client.close()
            pool.shutdown(wait=False, cancel_futures=True)
            log.info("agent_stopped", reconnects=self.reconnects)

    def _expiry_status(self, status: Mapping[str, Mapping[str, Any]]) -> None:
        """Called from the sweeper's thread after each sweep (prometheus-client metrics are thread-safe)."""
        self.metrics.expiry_sweeps.inc()
        for integration_id, state in status.items():
            self.metrics.expiry_integration_failing.labels(integration_id).set(1 if state.get("failing") else 0)

    def _progress(self, running: RunningJob, done: int, total: int) -> None:
        """Sync progress (accounts done / total) as metrics, and a log line per tenth of the way; on a terminal,
        a line at most every second (JSON logs stay at the tenths). The line carries the scopes too."""
        integration = running.job.integration.id
        self.metrics.sync_accounts_done.labels(integration).set(done)
        self.metrics.sync_accounts_total.labels(integration).set(total)
        tenth = bool(total) and (done == total or done * 10 // total != (done - 1) * 10 // total)
        self._progress_line(running, (done, total), tenth)

    def _scope_progress(self, running: RunningJob) -> None:
        """A scope task finished: on a terminal a person sees scopes move between accounts (one account can be
        many scopes: regions x services), at most every second; JSON logs get no line of their own."""
        if console():
            self._progress_line(running, running.progress, False)

    def _progress_line(self, running: RunningJob, accounts: tuple[int, int], tenth: bool) -> None:
        now = time.monotonic()
        watched = console() and now - self._progress_shown.get(running.key, 0.0) >= PROGRESS_EVERY
        if tenth or watched:
            self._progress_shown[running.key] = now
            (done, total), (scopes_done, scopes_total) = accounts, running.scopes
            log.info(
                "sync_progress",
                job_id=running.job.id,
                integration=running.job.integration.id,
                accounts_done=done,
                accounts_total=total,
                scopes_done=scopes_done,
                scopes_total=scopes_total,
            )

    async def _tick(self) -> None:
        while True:
            self.health.loop_alive = time.monotonic()
            await asyncio.sleep(1.0)

    # ---- connection -----------------------------------------------------------------------------------

    async def _interruptible(self, call: Awaitable[T]) -> T:
        """Run one control-loop RPC so that request_stop can cancel it."""
        if self._stop.is_set():
            if asyncio.iscoroutine(call):
                call.close()
            raise _Stopped()
        task = asyncio.ensure_future(call)
        self._inflight = task
        try:
            await asyncio.wait({task})
        finally:
            self._inflight = None
        if task.cancelled():
            raise _Stopped()
        return task.result()

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _count_reconnect(self) -> None:
        self.reconnects += 1
        self.metrics.reconnects.inc()

    def _before_reconnect(self, state: RetryCallState) -> None:
        self._count_reconnect()
        exc = state.outcome.exception() if state.outcome else None
        code = status_code(exc) if exc else None
        log.warning(
            "reconnecting",
            attempt=state.attempt_number,
            error=code.name if code else type(exc).__name__,
            reason=failure_reason(
                exc, tls=not self.config.plaintext, proxy=control_plane_proxy(self.config), target=self.config.target
            ),
            retry_in_seconds=round(state.upcoming_sleep, 2),
        )

    async def _control_loop(self) -> None:
        while not self._stop.is_set():
            retrying = AsyncRetrying(
                # Full jitter can draw ~0 s: the floor keeps a refused connection from ever becoming a hot loop.
                wait=wait_fixed(BACKOFF_MIN) + wait_random_exponential(multiplier=0.5, max=BACKOFF_MAX),
                retry=retry_if_exception(is_retryable),
                before_sleep=self._before_reconnect,
                sleep=self._sleep_unless_stopped,
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        await self._session()
                return
            except _Stopped:
                return
            except _SessionLost as lost:
                self._count_reconnect()
                code = status_code(lost.__cause__) if lost.__cause__ else None
                log.warning("connection_lost", error=code.name if code else str(lost.__cause__), reconnecting=True)

    def _fatal(self, exc: aio.AioRpcError) -> FatalConnectionError:
        return FatalConnectionError(fatal_message(exc.code(), exc.details() or "", self.config))

    async def _session(self) -> None:
        if self._stop.is_set():
            return
        assert self._client is not None
        self.health.last_attempt = time.monotonic()
        self.metrics.hello_attempts.inc()
        log.info("connecting", target=self.config.target, tls=not self.config.plaintext)
        try:
            hello = await self._interruptible(self._client.hello(self.dispatcher.capabilities()))
        except aio.AioRpcError as exc:
            if is_fatal(exc):
                raise self._fatal(exc) from None
            raise
        self.steering = Steering.from_hello(hello)
        self.health.attempt_stale_after = self.steering.poll_wait + POLL_MARGIN + BACKOFF_MAX + CONNECT_TIMEOUT + 20
        self.health.registered = True
        log.info(
            "registered",
            connector_id=self.config.id,
            host_id=self.config.host_id,
            target=self.config.target,
            capabilities=self.dispatcher.capabilities(),
            poll_wait=self.steering.poll_wait,
            heartbeat_interval=self.steering.heartbeat_interval,
            lease_duration=self.steering.lease_duration,
        )
        progressed = False
        try:
            while not self._stop.is_set():
                await self._poll_once()
                progressed = True
        except (aio.AioRpcError, TokenUnavailable) as exc:
            self.health.registered = False
            if isinstance(exc, aio.AioRpcError) and is_fatal(exc):
                raise self._fatal(exc) from None
            if progressed:
                raise _SessionLost() from exc
            raise

    async def _poll_once(self) -> None:
        assert self._client is not None
        self.health.loop_alive = time.monotonic()
        taken = await self._interruptible(self.slots.take_all())
        jobs: list[connector_pb2.Job] = []
        try:
            self.health.last_attempt = started = time.monotonic()
            try:
                jobs = await self._interruptible(self._client.poll(taken, self.steering.poll_wait))
            finally:
                self.metrics.poll_latency.observe(time.monotonic() - started)
        finally:
            extra = jobs[taken:]
            jobs = jobs[:taken]
            await self.slots.release(taken - len(jobs))
        in_transit = time.monotonic() - started
        if jobs and in_transit > self.steering.poll_wait + self.steering.lease_duration:
            # The server answers within poll_wait, so this answer was held up (a partition) for more than a
            # whole lease: every lease in it has expired and its job is queued again, maybe running elsewhere.
            # Running it would only repeat work whose result the fence refuses.
            for job in jobs:
                log.warning(
                    "job_dropped_lease_expired", job_id=job.id, attempt=job.attempt, seconds=round(in_transit, 1)
                )
            await self.slots.release(len(jobs))
            jobs = []
        for job in jobs:
            self._start_job(job)
        for job in extra:  # a server that sends more than asked: give them back rather than overrun slots
            task = asyncio.create_task(self._refuse_extra(job))
            self._job_tasks.add(task)
            task.add_done_callback(self._job_tasks.discard)

    # ---- jobs -----------------------------------------------------------------------------------------

    def _start_job(self, job: connector_pb2.Job) -> None:
        """Never raises for what the job holds: a job that cannot even be logged still runs, and the dispatcher
        gives it its typed error result (a failure here would end the control loop's turn). Nothing here reads
        the job's settings: the dispatcher validates them and tells the expiry sweeper."""
        running = RunningJob(job=job, lease_until=time.monotonic() + self.steering.lease_duration)
        self.running[running.key] = running
        try:
            log.info(
                "job_started",
                job_id=job.id,
                kind=job.WhichOneof("kind") or "",
                integration=job.integration.type,
                attempt=job.attempt,
            )
        except Exception as exc:
            log.error("job_started_without_details", attempt=job.attempt, error=type(exc).__name__)
        self.metrics.jobs_running.set(len(self.running))
        task = asyncio.create_task(self._job_main(running), name=f"job-{job.id}")
        self._job_tasks.add(task)
        task.add_done_callback(self._job_tasks.discard)

    async def _job_main(self, running: RunningJob) -> None:
        assert self._executor is not None
        job = running.job
        # Every log line of this job carries its id: the task has its own context, its worker thread a copy.
        structlog.contextvars.bind_contextvars(job_id=job.id, attempt=job.attempt)
        delivery = "lost"
        report: JobReport | None = None
        try:
            try:
                report = await self._executor.run(running)
            except Exception:  # the dispatcher turns every failure into a result; should it not, still report one
                log.exception("job_crashed", job_id=job.id, attempt=job.attempt)
                report = _crashed(running)
            if not running.lost:
                delivery = await self._deliver(running, report)
        finally:
            self.running.pop(running.key, None)
            self._progress_shown.pop(running.key, None)
            self.metrics.jobs_running.set(len(self.running))
            await self.slots.release(1)
            kind = report.kind if report else (job.WhichOneof("kind") or "")
            integration = report.integration if report else job.integration.type
            outcome = "lost" if running.lost else (report.outcome if report else "failed")
            duration = report.duration if report else time.monotonic() - running.started
            self.metrics.jobs_total.labels(kind=kind, integration=integration, outcome=outcome).inc()
            self.metrics.job_duration.labels(kind=kind, integration=integration).observe(duration)
            error = report.error if report else None
            log.info(
                "job_finished",
                job_id=job.id,
                kind=kind,
                integration=integration,
                attempt=job.attempt,
                outcome=outcome,
                error_code=str(error.code) if error else "",
                error_retryable=error.retryable if error else False,
                duration_ms=round(duration * 1000, 1),
                delivery=delivery,
            )
            if running.lost:
                log.warning("job_result_dropped", job_id=job.id, attempt=job.attempt, reason="lease lost")

    def _finish_request(self, running: RunningJob, report: JobReport) -> connector_pb2.FinishJobRequest:
        request = connector_pb2.FinishJobRequest(
            job_id=running.job.id, attempt=running.job.attempt, outcome=_OUTCOMES[report.outcome]
        )
        if report.error is not None:
            request.error.code = str(report.error.code)
            request.error.message = report.error.message
            request.error.retryable = report.error.retryable
        request.result.CopyFrom(_struct(report.result) if report.result else struct_pb2.Struct())
        request.duration.FromNanoseconds(int(report.duration * 1e9))
        return request

    async def _send_finish_batch(
        self, requests: Sequence[connector_pb2.FinishJobRequest]
    ) -> connector_pb2.FinishJobsResponse:
        assert self._client is not None
        return await self._client.finish_many(requests, rpc_deadline=REPORT_TIMEOUT)

    def _give_up_delivery(self, running: RunningJob) -> bool:
        now = time.monotonic()
        if running.lost or now > running.lease_until:
            return True
        return self._report_deadline is not None and now > self._report_deadline

    async def _deliver(self, running: RunningJob, report: JobReport) -> str:
        """The result in the next FinishJobs batch; when that does not settle it, FinishJob, retried with backoff
        until the lease ends. Returns how it went (for the job line)."""
        assert self._client is not None
        client = self._client
        request = self._finish_request(running, report)
        try:
            status = await self.finish_batches.finish(request)
        except BatchUnavailable:
            pass
        else:
            if status.code == grpc.StatusCode.OK.value[0]:
                return "recorded" if status.recorded else "already_recorded"
            if status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]:
                return self._refused_stale(running, status.message)
            # Any other refusal: FinishJob below gets the same answer as a gRPC error and handles it as ever.
        retrying = AsyncRetrying(
            stop=lambda _state: self._give_up_delivery(running),
            wait=wait_random_exponential(multiplier=0.5, max=10),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await client.finish(request, rpc_deadline=REPORT_TIMEOUT)
        except aio.AioRpcError as exc:
            code = exc.code()
            if code.name == "FAILED_PRECONDITION":
                return self._refused_stale(running, exc.details() or "")
            if is_fatal(exc):
                self._on_fatal(self._fatal(exc))
            log.error("job_result_undelivered", job_id=running.job.id, attempt=running.job.attempt, code=code.name)
            return "undelivered"
        except TokenUnavailable as exc:
            log.error("job_result_undelivered", job_id=running.job.id, attempt=running.job.attempt, error=str(exc))
            return "undelivered"
        return "recorded" if response.recorded else "already_recorded"

    def _refused_stale(self, running: RunningJob, details: str) -> str:
        self.stale_refusals += 1
        log.warning("job_result_refused_stale", job_id=running.job.id, attempt=running.job.attempt, details=details)
        return "refused_stale"

    async def _refuse_extra(self, job: connector_pb2.Job) -> None:
        assert self._client is not None
        request = connector_pb2.FinishJobRequest(
            job_id=job.id, attempt=job.attempt, outcome=connector_pb2.OUTCOME_FAILED
        )
        request.error.code = "UNAVAILABLE"
        request.error.message = "the control plane sent more jobs than this connector asked for; run it again"
        request.error.retryable = True
        log.warning("job_refused_no_slot", job_id=job.id, attempt=job.attempt)
        with contextlib.suppress(aio.AioRpcError, TokenUnavailable):
            await self._client.finish(request, rpc_deadline=REPORT_TIMEOUT)

    # ---- shutdown -------------------------------------------------------------------------------------

    async def _drain(self) -> None:
        tasks = set(self._job_tasks)
        if not tasks:
            log.info("drain_finished", unfinished=0)
            return
        log.info("drain_waiting", running=len(tasks), grace_seconds=self.config.drain_grace_seconds)
        # On a terminal, say every second how many jobs still run and how long they have; JSON logs: just once.
        deadline = time.monotonic() + self.config.drain_grace_seconds
        step = PROGRESS_EVERY if console() else self.config.drain_grace_seconds
        pending = tasks
        while pending and (left := deadline - time.monotonic()) > 0:
            _, pending = await asyncio.wait(pending, timeout=min(step, left))
            if pending and console() and deadline > time.monotonic():
                log.info("draining", running=len(pending), grace_left_seconds=round(deadline - time.monotonic()))
        if pending:
            # Grace is over: cancel what still runs; results get a last short window to be reported.
            self._report_deadline = time.monotonic() + REPORT_WINDOW
            for running in list(self.running.values()):
                running.cancel("drain")
            log.warning("drain_grace_expired", cancelling=len(pending))
            _, pending = await asyncio.wait(pending, timeout=CANCEL_WAIT)
            if pending:
                for running in list(self.running.values()):
                    running.abandon.set()
                log.warning("drain_abandoning_threads", jobs=len(pending))
                _, pending = await asyncio.wait(pending, timeout=REPORT_WINDOW + REPORT_TIMEOUT)
                for task in pending:
                    task.cancel()
        log.info("drain_finished", unfinished=len(pending))

    async def _abort_jobs(self) -> None:
        """Identity refused: results cannot be delivered. Stop the work and leave the leases to expire."""
        for running in list(self.running.values()):
            running.cancel("lost")
        tasks = set(self._job_tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CANCEL_WAIT)
            for running in list(self.running.values()):
                running.abandon.set()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
