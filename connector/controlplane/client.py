"""AdminClient: a small synchronous client of service Admin, for the CLI, tests, the demo and benchmarks.

    admin = AdminClient("127.0.0.1:50051", admin_token, tls_ca_file=None)
    record = admin.enqueue_grant("conn-1", "eks-prod", "eks", grant_id="g-1", principal="arn:...",
                                 target={"cluster": "prod"}, expires_in=3600)
    record = admin.wait(record.job.id, timeout=60)

Plaintext when no CA file is given (for a loopback server), TLS otherwise (or with tls=True and the
system roots). Every call carries the admin token as `authorization: Bearer ...` metadata.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from connector.v1 import admin_pb2, admin_pb2_grpc, connector_pb2

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def _struct(values: Mapping[str, Any] | None) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    if values:
        result.update(dict(values))
    return result


def _duration(value: float) -> duration_pb2.Duration:
    result = duration_pb2.Duration()
    result.FromNanoseconds(int(value * 1e9))
    return result


class AdminClient:
    def __init__(
        self,
        address: str,
        admin_token: str,
        tls_ca_file: str | Path | None = None,
        *,
        tls: bool | None = None,
        tls_server_name: str | None = None,
        tls_client_cert_file: str | Path | None = None,
        tls_client_key_file: str | Path | None = None,
    ) -> None:
        self.address = address
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        use_tls = tls_ca_file is not None if tls is None else tls
        if use_tls:
            root = Path(tls_ca_file).read_bytes() if tls_ca_file is not None else None
            # mTLS (a server started with --tls-client-ca): present this certificate.
            key = Path(tls_client_key_file).read_bytes() if tls_client_key_file is not None else None
            chain = Path(tls_client_cert_file).read_bytes() if tls_client_cert_file is not None else None
            credentials = grpc.ssl_channel_credentials(root, private_key=key, certificate_chain=chain)
            self._channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = admin_pb2_grpc.AdminStub(self._channel)
        self._metadata = (("authorization", f"Bearer {admin_token}"),)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- enqueue -------------------------------------------------------------------------------

    def enqueue(self, request: admin_pb2.EnqueueJobRequest, rpc_timeout: float = 30.0) -> admin_pb2.JobRecord:
        return self._stub.EnqueueJob(request, metadata=self._metadata, timeout=rpc_timeout)

    def _request(
        self,
        connector_id: str,
        integration_id: str,
        integration_type: str,
        settings: Mapping[str, Any] | None,
        timeout: float | None,
        idempotency_key: str,
    ) -> admin_pb2.EnqueueJobRequest:
        request = admin_pb2.EnqueueJobRequest(
            connector_id=connector_id,
            integration=connector_pb2.Integration(id=integration_id, type=integration_type, settings=_struct(settings)),
            idempotency_key=idempotency_key,
        )
        if timeout is not None:
            request.timeout.CopyFrom(_duration(timeout))
        return request

    def enqueue_sync(
        self,
        connector_id: str,
        integration_id: str,
        integration_type: str,
        settings: Mapping[str, Any] | None = None,
        *,
        resource_types: Sequence[str] = (),
        account_ids: Sequence[str] = (),
        timeout: float | None = None,
        idempotency_key: str = "",
        split_accounts_per_job: int = 0,
    ) -> admin_pb2.JobRecord:
        """`split_accounts_per_job` > 0: a discovery job now, per-account child jobs once it succeeded
        (their ids appear in the discovery job's record as child_job_ids)."""
        request = self._request(connector_id, integration_id, integration_type, settings, timeout, idempotency_key)
        request.sync.CopyFrom(connector_pb2.SyncJob(resource_types=resource_types, account_ids=account_ids))
        request.split_accounts_per_job = split_accounts_per_job
        return self.enqueue(request)

    def enqueue_grant(
        self,
        connector_id: str,
        integration_id: str,
        integration_type: str,
        *,
        grant_id: str,
        principal: str,
        target: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        expires_in: float | None = None,
        dry_run: bool = False,
        requester: str = "",
        requester_public_key: bytes = b"",
        timeout: float | None = None,
        idempotency_key: str = "",
    ) -> admin_pb2.JobRecord:
        request = self._request(connector_id, integration_id, integration_type, settings, timeout, idempotency_key)
        grant = connector_pb2.GrantJob(
            grant_id=grant_id,
            principal=principal,
            target=_struct(target),
            dry_run=dry_run,
            requester=requester,
            requester_public_key=requester_public_key,
        )
        if expires_in is not None:
            expires = timestamp_pb2.Timestamp()
            expires.FromNanoseconds(int((time.time() + expires_in) * 1e9))
            grant.expires_at.CopyFrom(expires)
        request.grant.CopyFrom(grant)
        return self.enqueue(request)

    def enqueue_revoke(
        self,
        connector_id: str,
        integration_id: str,
        integration_type: str,
        *,
        grant_id: str,
        principal: str,
        target: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        timeout: float | None = None,
        idempotency_key: str = "",
    ) -> admin_pb2.JobRecord:
        request = self._request(connector_id, integration_id, integration_type, settings, timeout, idempotency_key)
        request.revoke.CopyFrom(
            connector_pb2.RevokeJob(grant_id=grant_id, principal=principal, target=_struct(target), dry_run=dry_run)
        )
        return self.enqueue(request)

    # -- jobs and inventory --------------------------------------------------------------------

    def get(self, job_id: str) -> admin_pb2.JobRecord:
        return self._stub.GetJob(admin_pb2.GetJobRequest(job_id=job_id), metadata=self._metadata, timeout=30)

    def wait(self, job_id: str, timeout: float = 60.0) -> admin_pb2.JobRecord:
        """The job's record once terminal, or as it is when `timeout` ends (the server caps one wait at 300 s;
        longer timeouts are split into several waits)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(deadline - time.monotonic(), 0.0)
            chunk = min(remaining, 300.0)
            record = self._stub.WaitJob(
                admin_pb2.WaitJobRequest(job_id=job_id, timeout=_duration(chunk)),
                metadata=self._metadata,
                timeout=chunk + 30,
            )
            if record.state in TERMINAL_STATES or remaining <= chunk:
                return record

    def list(self, connector_id: str = "", state: int = 0, limit: int = 0) -> list[admin_pb2.JobRecord]:
        request = admin_pb2.ListJobsRequest(connector_id=connector_id, state=state, limit=limit)  # type: ignore[arg-type]
        return list(self._stub.ListJobs(request, metadata=self._metadata, timeout=30).jobs)

    def cancel(self, job_id: str) -> admin_pb2.JobRecord:
        return self._stub.CancelJob(admin_pb2.GetJobRequest(job_id=job_id), metadata=self._metadata, timeout=30)

    def inventory(
        self, integration_id: str = "", type: str = "", account_id: str = "", limit: int = 0
    ) -> admin_pb2.QueryInventoryResponse:
        request = admin_pb2.QueryInventoryRequest(
            integration_id=integration_id, type=type, account_id=account_id, limit=limit
        )
        return self._stub.QueryInventory(request, metadata=self._metadata, timeout=30)

    def events(
        self, connector_id: str = "", type: str = "", grant_id: str = "", limit: int = 0
    ) -> builtins.list[connector_pb2.ConnectorEvent]:
        """Connector events (ReportEvents), newest first."""
        request = admin_pb2.ListEventsRequest(connector_id=connector_id, type=type, grant_id=grant_id, limit=limit)
        return list(self._stub.ListEvents(request, metadata=self._metadata, timeout=30).events)

    def connectors(self, connector_id: str = "") -> admin_pb2.ListConnectorsResponse:
        """The replicas that said Hello since the server started, with when each was last seen."""
        request = admin_pb2.ListConnectorsRequest(connector_id=connector_id)
        return self._stub.ListConnectors(request, metadata=self._metadata, timeout=30)


TERMINAL_STATES = (admin_pb2.JOB_STATE_SUCCEEDED, admin_pb2.JOB_STATE_FAILED, admin_pb2.JOB_STATE_CANCELLED)
