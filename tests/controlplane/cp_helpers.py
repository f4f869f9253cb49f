"""Helpers for the control plane room: a real server on loopback (ControlPlaneThread) and a thin
connector-side client over the generated stubs (no agent code involved). conftest.py exposes the fixtures."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from connector.controlplane.server import ControlPlaneThread, ServerSettings
from connector.v1 import connector_pb2, connector_pb2_grpc

CONNECTOR_ID = "conn-1"
CONNECTOR_TOKEN = "conn-1-token-0123456789"
OTHER_ID = "conn-2"
OTHER_TOKEN = "conn-2-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"


def fast_settings(**overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "bind": "127.0.0.1:0",
        "db_path": ":memory:",
        "connector_tokens": {CONNECTOR_ID: CONNECTOR_TOKEN, OTHER_ID: OTHER_TOKEN},
        "admin_token": ADMIN_TOKEN,
        "lease_seconds": 2.0,
        "heartbeat_interval": 0.5,
        "poll_wait": 2.0,
        "max_attempts": 3,
        "retry_backoff": 0.2,
    }
    values.update(overrides)
    return ServerSettings(**values)


def duration(value: float) -> duration_pb2.Duration:
    result = duration_pb2.Duration()
    result.FromNanoseconds(int(value * 1e9))
    return result


def digest_of(items: Sequence[connector_pb2.InventoryItem]) -> connector_pb2.InventoryDigest:
    sha = hashlib.sha256()
    for item in items:
        sha.update(item.SerializeToString(deterministic=True))
    return connector_pb2.InventoryDigest(item_count=len(items), sha256=sha.hexdigest())


class Connector:
    """What an agent replica sends, spelled out with the generated stub."""

    def __init__(
        self,
        channel: grpc.Channel,
        connector_id: str = CONNECTOR_ID,
        token: str = CONNECTOR_TOKEN,
        host_id: str = "host-a",
    ) -> None:
        self.stub = connector_pb2_grpc.ControlPlaneStub(channel)
        self.connector_id = connector_id
        self.host_id = host_id
        self.metadata = (("authorization", f"Bearer {token}"),)

    def hello(self) -> connector_pb2.HelloResponse:
        request = connector_pb2.HelloRequest(
            connector_id=self.connector_id, version="test", host_id=self.host_id, capabilities=["noop"]
        )
        return self.stub.Hello(request, metadata=self.metadata, timeout=10)

    def poll(self, max_jobs: int = 1, wait: float = 0.0) -> list[connector_pb2.Job]:
        request = connector_pb2.PollJobsRequest(
            connector_id=self.connector_id, host_id=self.host_id, max_jobs=max_jobs, wait=duration(wait)
        )
        return list(self.stub.PollJobs(request, metadata=self.metadata, timeout=wait + 10).jobs)

    def heartbeat(self, *leases: tuple[str, int]) -> connector_pb2.HeartbeatResponse:
        request = connector_pb2.HeartbeatRequest(
            connector_id=self.connector_id,
            host_id=self.host_id,
            leases=[connector_pb2.JobLease(job_id=j, attempt=a) for j, a in leases],
        )
        return self.stub.Heartbeat(request, metadata=self.metadata, timeout=10)

    def finish(
        self,
        job_id: str,
        attempt: int,
        outcome: int = connector_pb2.OUTCOME_SUCCEEDED,
        error: connector_pb2.JobError | None = None,
        result: dict[str, Any] | None = None,
    ) -> connector_pb2.FinishJobResponse:
        request = connector_pb2.FinishJobRequest(
            connector_id=self.connector_id,
            host_id=self.host_id,
            job_id=job_id,
            attempt=attempt,
            outcome=outcome,  # type: ignore[arg-type]
            error=error,
        )
        if result:
            request.result.update(result)
        return self.stub.FinishJob(request, metadata=self.metadata, timeout=10)

    def upload(self, chunks: Sequence[connector_pb2.InventoryChunk]) -> connector_pb2.UploadInventoryResponse:
        return self.stub.UploadInventory(iter(chunks), metadata=self.metadata, timeout=10)

    def chunk(
        self,
        job: connector_pb2.Job,
        seq: int,
        items: Sequence[connector_pb2.InventoryItem],
        digest: connector_pb2.InventoryDigest | None = None,
        attempt: int | None = None,
    ) -> connector_pb2.InventoryChunk:
        return connector_pb2.InventoryChunk(
            connector_id=self.connector_id,
            job_id=job.id,
            attempt=job.attempt if attempt is None else attempt,
            seq=seq,
            items=items,
            digest=digest,
        )


@pytest.fixture
def cp() -> Iterator[ControlPlaneThread]:
    with ControlPlaneThread(fast_settings()) as server:
        yield server


@pytest.fixture
def channel(cp: ControlPlaneThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(cp.address) as ch:
        yield ch


@pytest.fixture
def conn(channel: grpc.Channel) -> Connector:
    return Connector(channel)


def rpc_code(excinfo: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return excinfo.value.code()


def rpc_details(excinfo: pytest.ExceptionInfo[grpc.RpcError]) -> str:
    return excinfo.value.details() or ""
