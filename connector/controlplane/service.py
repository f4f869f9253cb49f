"""service ControlPlane: what connectors call (Hello, PollJobs, Heartbeat, FinishJob(s), UploadInventory,
ReportEvents)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from google.protobuf import duration_pb2
from grpc import aio

from connector.controlplane.auth import TokenBook, connector_id_of
from connector.controlplane.engine import Engine
from connector.controlplane.events import validate_events
from connector.controlplane.inventory import MAX_CHUNKS_PER_STREAM, ChunkStatus, validate_chunk
from connector.controlplane.store import FinishStatus, RefusalCode, Refused, to_timestamp
from connector.logging import get_logger
from connector.v1 import connector_pb2, connector_pb2_grpc

log = get_logger("connector.controlplane")

MAX_JOBS_PER_POLL = 100
MAX_POLL_WAIT = 60.0
MAX_RESULTS_PER_FINISH = 256  # results in one FinishJobs call

Context = aio.ServicerContext[Any, Any]

_STATUS = {
    RefusalCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    RefusalCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    RefusalCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
}


async def refuse(context: Context, refused: Refused) -> NoReturn:
    await context.abort(_STATUS[refused.code], refused.message)


def seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def duration(value: float) -> duration_pb2.Duration:
    result = duration_pb2.Duration()
    result.FromNanoseconds(int(value * 1e9))
    return result


def _finish_problem(request: connector_pb2.FinishJobRequest) -> str | None:
    if request.outcome == connector_pb2.OUTCOME_UNSPECIFIED:
        return "FinishJobRequest.outcome is unspecified"
    if request.attempt < 1:
        return "FinishJobRequest.attempt must be >= 1"
    return None


def _stale(request: connector_pb2.FinishJobRequest, current_attempt: int) -> str:
    log.warning(
        "stale finish refused",
        job_id=request.job_id,
        attempt=request.attempt,
        current_attempt=current_attempt,
        host_id=request.host_id,
    )
    return f"stale attempt {request.attempt}, current is {current_attempt}"


def _set_status(status: connector_pb2.FinishJobStatus, code: grpc.StatusCode, message: str) -> None:
    status.code = code.value[0]
    status.message = message


class ControlPlaneService(connector_pb2_grpc.ControlPlaneServicer):
    def __init__(self, engine: Engine, tokens: TokenBook, job_signing_public_keys: list[bytes] | None = None) -> None:
        self._engine = engine
        self._tokens = tokens
        self._settings = engine.settings
        self._job_signing_public_keys = list(job_signing_public_keys or [])

    async def Hello(self, request: connector_pb2.HelloRequest, context: Context) -> connector_pb2.HelloResponse:
        connector_id = await connector_id_of(context, self._tokens, request.connector_id)
        if not request.host_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "HelloRequest.host_id is required")
        log.info(
            "connector hello",
            connector_id=connector_id,
            host_id=request.host_id,
            version=request.version,
            capabilities=list(request.capabilities),
        )
        self._engine.presence.hello(
            connector_id, request.host_id, request.version, list(request.capabilities), time.time()
        )
        return connector_pb2.HelloResponse(
            poll_wait=duration(self._settings.poll_wait),
            heartbeat_interval=duration(self._settings.heartbeat_interval),
            lease_duration=duration(self._settings.lease_seconds),
            server_time=to_timestamp(time.time()),
            job_signing_public_keys=self._job_signing_public_keys,
        )

    async def PollJobs(
        self, request: connector_pb2.PollJobsRequest, context: Context
    ) -> connector_pb2.PollJobsResponse:
        connector_id = await connector_id_of(context, self._tokens, request.connector_id)
        if request.max_jobs < 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "PollJobsRequest.max_jobs must be >= 1")
        if not request.host_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "PollJobsRequest.host_id is required")
        wait = min(max(seconds(request.wait), 0.0), MAX_POLL_WAIT)
        self._engine.presence.seen(connector_id, request.host_id, time.time())
        jobs = await self._engine.poll(
            connector_id,
            request.host_id,
            min(request.max_jobs, MAX_JOBS_PER_POLL),
            wait,
            is_active=lambda: not context.done(),
        )
        return connector_pb2.PollJobsResponse(jobs=jobs)

    async def Heartbeat(
        self, request: connector_pb2.HeartbeatRequest, context: Context
    ) -> connector_pb2.HeartbeatResponse:
        connector_id = await connector_id_of(context, self._tokens, request.connector_id)
        leases = [(lease.job_id, lease.attempt) for lease in request.leases]
        self._engine.presence.seen(connector_id, request.host_id, time.time())
        result, expires = await self._engine.heartbeat(connector_id, leases)
        if result.lost or result.cancelled:
            log.info(
                "heartbeat",
                connector_id=connector_id,
                host_id=request.host_id,
                renewed=len(result.renewed),
                cancelled_job_ids=result.cancelled,
                lost_job_ids=result.lost,
            )
        return connector_pb2.HeartbeatResponse(
            cancelled_job_ids=result.cancelled, lost_job_ids=result.lost, lease_expires=to_timestamp(expires)
        )

    async def FinishJob(
        self, request: connector_pb2.FinishJobRequest, context: Context
    ) -> connector_pb2.FinishJobResponse:
        connector_id = await connector_id_of(context, self._tokens, request.connector_id)
        problem = _finish_problem(request)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            result = await self._engine.finish(connector_id, request)
        except Refused as refused:
            await refuse(context, refused)
        if result.status is FinishStatus.STALE:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, _stale(request, result.current_attempt))
        return connector_pb2.FinishJobResponse(recorded=result.status is FinishStatus.RECORDED)

    async def FinishJobs(
        self, request: connector_pb2.FinishJobsRequest, context: Context
    ) -> connector_pb2.FinishJobsResponse:
        connector_id = await connector_id_of(context, self._tokens, request.connector_id)
        if len(request.results) > MAX_RESULTS_PER_FINISH:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"FinishJobsRequest.results has {len(request.results)} results; send at most {MAX_RESULTS_PER_FINISH}",
            )
        statuses = [connector_pb2.FinishJobStatus() for _ in request.results]
        valid: list[tuple[int, connector_pb2.FinishJobRequest]] = []
        for index, item in enumerate(request.results):
            problem = _finish_problem(item)
            if problem:
                _set_status(statuses[index], grpc.StatusCode.INVALID_ARGUMENT, problem)
                continue
            item.connector_id, item.host_id = connector_id, request.host_id
            valid.append((index, item))
        outcomes = await self._engine.finish_many(connector_id, [item for _, item in valid])
        for (index, item), outcome in zip(valid, outcomes, strict=True):
            if isinstance(outcome, Refused):
                _set_status(statuses[index], _STATUS[outcome.code], str(outcome))
            elif outcome.status is FinishStatus.STALE:
                _set_status(statuses[index], grpc.StatusCode.FAILED_PRECONDITION, _stale(item, outcome.current_attempt))
            else:
                statuses[index].recorded = outcome.status is FinishStatus.RECORDED
        return connector_pb2.FinishJobsResponse(statuses=statuses)

    async def ReportEvents(
        self, request: connector_pb2.ReportEventsRequest, context: Context
    ) -> connector_pb2.ReportEventsResponse:
        connector_id = await connector_id_of(context, self._tokens, request.connector_id)
        try:
            validate_events(request.events)
        except Refused as refused:
            await refuse(context, refused)
        accepted = await self._engine.report_events(connector_id, request.host_id, request.events)
        return connector_pb2.ReportEventsResponse(accepted=accepted)

    async def UploadInventory(
        self, request_iterator: AsyncIterator[connector_pb2.InventoryChunk], context: Context
    ) -> connector_pb2.UploadInventoryResponse:
        status: ChunkStatus | None = None
        count = 0
        async for chunk in request_iterator:
            count += 1
            connector_id = await connector_id_of(context, self._tokens, chunk.connector_id)
            if count > MAX_CHUNKS_PER_STREAM:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"at most {MAX_CHUNKS_PER_STREAM} chunks per UploadInventory stream; send the rest in the next",
                )
            try:
                validate_chunk(chunk)
                status = await self._engine.upload(connector_id, chunk)
            except Refused as refused:
                log.warning(
                    "inventory chunk refused",
                    job_id=chunk.job_id,
                    attempt=chunk.attempt,
                    seq=chunk.seq,
                    reason=refused.message,
                )
                await refuse(context, refused)
            if status.complete and status.stored:
                (log.info if status.digest_ok else log.warning)(
                    "inventory upload complete",
                    job_id=chunk.job_id,
                    attempt=chunk.attempt,
                    items=status.items_received,
                    digest_ok=status.digest_ok,
                    merged=status.merged,
                )
        if status is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "UploadInventory stream carried no chunk")
        return connector_pb2.UploadInventoryResponse(
            items_received=status.items_received, digest_ok=status.digest_ok, next_seq=status.next_seq
        )
