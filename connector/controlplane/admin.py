"""service Admin: the operator API (enqueue, get, wait, list, cancel, query inventory).

Authenticated with the admin token (see auth.py); never exposed to connectors.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import grpc
from google.protobuf import struct_pb2
from grpc import aio

from connector.controlplane.engine import Engine
from connector.controlplane.service import Context, refuse, seconds
from connector.controlplane.settings import POLL_RESPONSE_HEADROOM
from connector.controlplane.signing import JobSigner
from connector.controlplane.store import Refused, delivered_size, to_timestamp
from connector.logging import get_logger
from connector.v1 import admin_pb2, admin_pb2_grpc, connector_pb2

log = get_logger("connector.controlplane")

MAX_JOB_TIMEOUT = 7 * 86400.0
DEFAULT_WAIT = 30.0
MAX_WAIT = 300.0
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000
DEFAULT_INVENTORY_LIMIT = 100
MAX_INVENTORY_LIMIT = 5000


# Nesting of a job's settings / target objects. protobuf parsers stop at 100 message levels and each
# level of a JSON object costs two (Struct, Value), so a deeper job would be stored but could never be
# parsed again by the connector's PollJobs (or ListJobs): refuse it here, with the field's name.
MAX_STRUCT_DEPTH = 16


def _depth(value: struct_pb2.Value | struct_pb2.Struct, level: int = 0) -> int:
    if level > MAX_STRUCT_DEPTH:
        return level
    if isinstance(value, struct_pb2.Struct):
        return max((_depth(v, level + 1) for v in value.fields.values()), default=level + 1)
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return _depth(value.struct_value, level)
    if kind == "list_value":
        return max((_depth(v, level + 1) for v in value.list_value.values), default=level + 1)
    return level


MAX_SPLIT = 1000


def _problem(request: admin_pb2.EnqueueJobRequest) -> str | None:
    """What is wrong with an enqueue request, naming the field; None when it is fine."""
    if not request.connector_id:
        return "connector_id is required"
    if not request.integration.id or not request.integration.type:
        return "integration.id and integration.type are required"
    kind = request.WhichOneof("kind")
    if kind is None:
        return "one of sync, grant or revoke is required"
    if kind in ("grant", "revoke"):
        body: Any = getattr(request, kind)
        if not body.grant_id or not body.principal:
            return f"{kind}.grant_id and {kind}.principal are required"
    structs = [("integration.settings", request.integration.settings)]
    if kind in ("grant", "revoke"):
        structs.append((f"{kind}.target", getattr(request, kind).target))
    for name, struct in structs:
        if _depth(struct) > MAX_STRUCT_DEPTH:
            return f"{name} is nested deeper than {MAX_STRUCT_DEPTH} levels of objects and lists"
    if request.HasField("timeout") and not 0 < seconds(request.timeout) <= MAX_JOB_TIMEOUT:
        return f"timeout must be between 0 and {MAX_JOB_TIMEOUT:g} seconds"
    if request.split_accounts_per_job:
        if kind != "sync":
            return "split_accounts_per_job applies to sync jobs only"
        if request.sync.account_ids or request.sync.discovery_only:
            return "split_accounts_per_job splits a full sync: leave sync.account_ids and sync.discovery_only unset"
        if request.split_accounts_per_job > MAX_SPLIT:
            return f"split_accounts_per_job must be at most {MAX_SPLIT}"
    return None


AWS_ACCOUNT_ID = "0" * 12  # stands for the account of a split sync's smallest child when measuring it


def _size_problem(job: connector_pb2.Job, max_attempts: int, split: bool, limit: int) -> str | None:
    """A job no PollJobs answer could carry: measured as it would be sent (signed, on its last attempt) and, for
    a split sync, as its smallest child (one account; larger children are packed to fit)."""
    probe = job
    if split:
        probe = connector_pb2.Job()
        probe.CopyFrom(job)
        probe.sync.discovery_only = False
        probe.sync.account_ids.append(AWS_ACCOUNT_ID)
    size = delivered_size(probe, attempt=max_attempts)
    if size <= limit:
        return None
    what = "a child job of this split sync" if split else "the job"
    return (
        f"{what} would be {size} bytes as delivered, over the {limit}-byte limit of one PollJobs answer "
        f"(4 MiB, or the control plane's smaller max_message_bytes, less {POLL_RESPONSE_HEADROOM // 1024} KiB "
        "headroom): send smaller integration.settings / target, or split the work into several jobs"
    )


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(self, engine: Engine, signer: JobSigner | None = None) -> None:
        self._engine = engine
        self._signer = signer

    async def EnqueueJob(self, request: admin_pb2.EnqueueJobRequest, context: Context) -> admin_pb2.JobRecord:
        problem = _problem(request)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"EnqueueJobRequest: {problem}")
        now = time.time()
        timeout = seconds(request.timeout) if request.HasField("timeout") else self._engine.settings.default_job_timeout
        job = connector_pb2.Job(
            id=str(uuid.uuid4()),
            attempt=0,  # set on each delivery; the store keeps the current attempt
            integration=request.integration,
            created=to_timestamp(now),
            deadline=to_timestamp(now + timeout),
        )
        kind = request.WhichOneof("kind")
        assert kind is not None
        getattr(job, kind).CopyFrom(getattr(request, kind))
        split = None
        if request.split_accounts_per_job:
            job.sync.discovery_only = True  # the children get the per-account work once this succeeds
            split = (int(request.split_accounts_per_job), timeout)
        if self._signer is not None:  # signed once, here; the signature is stored with the job
            self._signer.sign(job)
        settings = self._engine.settings
        problem = _size_problem(job, settings.max_attempts, split is not None, settings.poll_budget_bytes)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"EnqueueJobRequest: {problem}")
        return await self._engine.enqueue(request.connector_id, job, request.idempotency_key, now, now + timeout, split)

    async def GetJob(self, request: admin_pb2.GetJobRequest, context: Context) -> admin_pb2.JobRecord:
        record = await self._engine.get(request.job_id)
        if record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown job {request.job_id!r}")
        return record

    async def WaitJob(self, request: admin_pb2.WaitJobRequest, context: Context) -> admin_pb2.JobRecord:
        timeout = seconds(request.timeout) if request.HasField("timeout") else DEFAULT_WAIT
        record = await self._engine.wait(request.job_id, min(max(timeout, 0.0), MAX_WAIT))
        if record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown job {request.job_id!r}")
        return record

    async def ListJobs(self, request: admin_pb2.ListJobsRequest, context: Context) -> admin_pb2.ListJobsResponse:
        limit = min(request.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        jobs = await self._engine.call(self._engine.jobs.list_jobs, request.connector_id, request.state, limit)
        return admin_pb2.ListJobsResponse(jobs=jobs)

    async def CancelJob(self, request: admin_pb2.GetJobRequest, context: Context) -> admin_pb2.JobRecord:
        try:
            return await self._engine.cancel(request.job_id)
        except Refused as refused:
            await refuse(context, refused)

    async def QueryInventory(
        self, request: admin_pb2.QueryInventoryRequest, context: aio.ServicerContext[Any, Any]
    ) -> admin_pb2.QueryInventoryResponse:
        limit = min(request.limit or DEFAULT_INVENTORY_LIMIT, MAX_INVENTORY_LIMIT)
        return await self._engine.call(self._engine.inventory.query, request, limit)

    async def ListEvents(self, request: admin_pb2.ListEventsRequest, context: Context) -> admin_pb2.ListEventsResponse:
        limit = min(request.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        events = await self._engine.call(self._engine.events.list_events, request, limit)
        return admin_pb2.ListEventsResponse(events=events)

    async def ListConnectors(
        self, request: admin_pb2.ListConnectorsRequest, context: Context
    ) -> admin_pb2.ListConnectorsResponse:
        settings = self._engine.settings
        response = admin_pb2.ListConnectorsResponse(
            replicas=[
                admin_pb2.ConnectorReplica(
                    connector_id=r.connector_id,
                    host_id=r.host_id,
                    version=r.version,
                    capabilities=list(r.capabilities),
                    hello_time=to_timestamp(r.hello_time),
                    last_seen=to_timestamp(r.last_seen),
                )
                for r in self._engine.presence.replicas(request.connector_id)
            ]
        )
        response.poll_wait.FromNanoseconds(int(settings.poll_wait * 1e9))
        response.heartbeat_interval.FromNanoseconds(int(settings.heartbeat_interval * 1e9))
        return response
