"""The gRPC channel to the control plane: TLS (or loopback plaintext), bearer token per call, deadlines.

`ControlPlaneClient` is the agent's one boundary to the protocol: every call re-reads the token (so a
rotated token file is picked up) and carries a deadline. `classify` decides what a failure means:
fatal (wrong token / connector id: retrying cannot fix it) or retryable (back off and reconnect).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc
from grpc import aio

from connector import __version__
from connector.config import AgentConfig, ConfigError
from connector.logging import get_logger, redact_text, register_secret
from connector.net.proxy import Proxy, grpc_channel_options, grpc_proxy, proxy_failure_hint
from connector.v1 import connector_pb2, connector_pb2_grpc

CONNECT_TIMEOUT = 10.0  # Hello, Heartbeat, FinishJob: small requests, a short deadline
POLL_MARGIN = 10.0  # a long-poll's deadline is its wait plus this
UPLOAD_TIMEOUT = 60.0  # one batch of at most 16 chunks of at most 1 MiB
# The protocol's message limit (gRPC's default): the control plane fills each PollJobsResponse to less than
# this and refuses at enqueue a job that could not fit (connector.controlplane.settings mirrors it). Keep it
# at 4 MiB: raising it here does not make a server send more.
MAX_RECEIVE_BYTES = 4 * 1024 * 1024

# Keepalive detects a dead connection (NAT or load balancer dropped it) while a long-poll is held. 60 s
# stays within gRPC servers' default ping policy (without data, at most 2 pings before data flows).
CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.primary_user_agent", f"access-connector/{__version__}"),
    ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
    # gRPC's own reconnect backoff grows to 120 s by default: cap it near ours, so a control plane that
    # comes back is seen within ~30 s.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 30_000),
]

log = get_logger("connector.agent.channel")

FATAL_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


class FatalConnectionError(Exception):
    """Retrying cannot fix this (the control plane refused our identity). The message says what to check."""


class TokenUnavailable(Exception):
    """The token file could not be read right now (e.g. mid-rotation); retried like a network error."""


def fatal_message(code: grpc.StatusCode, details: str, config: AgentConfig) -> str:
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return (
            f"the control plane refused the connector token (UNAUTHENTICATED: {details}); check that "
            "CONNECTOR_TOKEN or CONNECTOR_TOKEN_FILE holds this connector's current token"
        )
    return (
        f"the control plane refused connector id {config.id!r} for this token (PERMISSION_DENIED: {details}); "
        "check that CONNECTOR_ID matches the connector the token was issued for"
    )


def read_file(path: object, variable: str) -> bytes:
    try:
        with open(str(path), "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise OSError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None


def control_plane_proxy(config: AgentConfig) -> Proxy | None:
    """The proxy the channel to the control plane goes through (HTTPS_PROXY / https_proxy / grpc_proxy, less
    NO_PROXY), or None."""
    host, port = config.host_port
    return grpc_proxy(host, port)


def channel_options(config: AgentConfig) -> list[tuple[str, int | str]]:
    """CHANNEL_OPTIONS plus the proxy decision (gRPC's core alone would ignore the upper-case variables)."""
    host, port = config.host_port
    return CHANNEL_OPTIONS + grpc_channel_options(host, port)


def make_channel(config: AgentConfig) -> aio.Channel:
    """TLS by default (system roots or CONNECTOR_TLS_CA_FILE, client cert for mTLS); plaintext only to
    loopback with CONNECTOR_ALLOW_INSECURE_LOOPBACK (validated in connector.config). Through the proxy the
    environment names, if any."""
    proxy = control_plane_proxy(config)
    if proxy is not None:
        if proxy.password:
            register_secret(proxy.password)
        log.info("control_plane_proxy", proxy=proxy.display, variable=proxy.variable, target=config.target)
    options = channel_options(config)
    if config.plaintext:
        return aio.insecure_channel(config.target, options=options)
    root = read_file(config.tls_ca_file, "CONNECTOR_TLS_CA_FILE") if config.tls_ca_file else None
    key = read_file(config.tls_client_key_file, "CONNECTOR_TLS_CLIENT_KEY_FILE") if config.tls_client_key_file else None
    cert = (
        read_file(config.tls_client_cert_file, "CONNECTOR_TLS_CLIENT_CERT_FILE")
        if config.tls_client_cert_file
        else None
    )
    credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)
    return aio.secure_channel(config.target, credentials, options=options)


class ControlPlaneClient:
    def __init__(self, config: AgentConfig, channel: aio.Channel) -> None:
        self.config = config
        self.channel = channel
        self.stub = connector_pb2_grpc.ControlPlaneStub(channel)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        try:
            token = self.config.read_token()
        except (OSError, ConfigError) as exc:
            raise TokenUnavailable(f"cannot read the connector token: {type(exc).__name__}") from None
        register_secret(token)  # a rotated token is scrubbed from logs like the first one
        return (("authorization", f"Bearer {token}"),)

    async def hello(self, capabilities: Sequence[str]) -> connector_pb2.HelloResponse:
        request = connector_pb2.HelloRequest(
            connector_id=self.config.id,
            version=__version__,
            host_id=self.config.host_id,
            capabilities=list(capabilities),
        )
        return await self.stub.Hello(request, timeout=CONNECT_TIMEOUT, metadata=self._metadata())

    async def poll(self, max_jobs: int, wait: float) -> list[connector_pb2.Job]:
        request = connector_pb2.PollJobsRequest(
            connector_id=self.config.id, host_id=self.config.host_id, max_jobs=max_jobs
        )
        request.wait.FromNanoseconds(int(wait * 1e9))
        response = await self.stub.PollJobs(request, timeout=wait + POLL_MARGIN, metadata=self._metadata())
        return list(response.jobs)

    async def heartbeat(
        self, leases: Iterable[tuple[str, int]], rpc_deadline: float
    ) -> connector_pb2.HeartbeatResponse:
        request = connector_pb2.HeartbeatRequest(
            connector_id=self.config.id,
            host_id=self.config.host_id,
            leases=[connector_pb2.JobLease(job_id=job_id, attempt=attempt) for job_id, attempt in leases],
        )
        return await self.stub.Heartbeat(request, timeout=rpc_deadline, metadata=self._metadata())

    async def finish(
        self, request: connector_pb2.FinishJobRequest, rpc_deadline: float
    ) -> connector_pb2.FinishJobResponse:
        request.connector_id = self.config.id
        request.host_id = self.config.host_id
        return await self.stub.FinishJob(request, timeout=rpc_deadline, metadata=self._metadata())

    async def finish_many(
        self, requests: Sequence[connector_pb2.FinishJobRequest], rpc_deadline: float
    ) -> connector_pb2.FinishJobsResponse:
        request = connector_pb2.FinishJobsRequest(
            connector_id=self.config.id, host_id=self.config.host_id, results=list(requests)
        )
        return await self.stub.FinishJobs(request, timeout=rpc_deadline, metadata=self._metadata())

    async def upload(self, chunks: Sequence[connector_pb2.InventoryChunk]) -> connector_pb2.UploadInventoryResponse:
        return await self.stub.UploadInventory(iter(chunks), timeout=UPLOAD_TIMEOUT, metadata=self._metadata())

    async def report_events(
        self, events: Sequence[connector_pb2.ConnectorEvent], rpc_deadline: float
    ) -> connector_pb2.ReportEventsResponse:
        request = connector_pb2.ReportEventsRequest(
            connector_id=self.config.id, host_id=self.config.host_id, events=list(events)
        )
        return await self.stub.ReportEvents(request, timeout=rpc_deadline, metadata=self._metadata())

    async def close(self) -> None:
        await self.channel.close(grace=None)


def status_code(exc: BaseException) -> grpc.StatusCode | None:
    return exc.code() if isinstance(exc, aio.AioRpcError) else None


_TLS_MARKERS = ("ssl", "tls", "handshake", "certificate", "x509", "tsi_", "hostname", "peer name")
TLS_HINT = (
    "TLS to the control plane failed: check that CONNECTOR_TLS_CA_FILE (or the system roots) holds the CA that "
    "issued the control plane's certificate, that the host in CONTROL_PLANE_URL is named in that certificate, and, "
    "if the control plane requires client certificates, CONNECTOR_TLS_CLIENT_CERT_FILE / CONNECTOR_TLS_CLIENT_KEY_FILE"
)


# Under TLS 1.3 a server that refuses (or misses) our client certificate just closes the connection.
_CLOSED_MARKERS = ("socket closed", "connection reset", "broken pipe")


# What gRPC says when the proxy itself failed: it refused the CONNECT, or nothing listens at its address (gRPC
# dials the proxy, so a refused connection is the proxy's).
_PROXY_MARKERS = ("proxy", "connection refused", "failed to connect to remote host", "connection reset")


def failure_reason(
    exc: BaseException | None, tls: bool = True, proxy: Proxy | None = None, target: str = "the control plane"
) -> str:
    """Why a connection attempt failed, for the reconnect log line: gRPC's details (redacted, bounded) and,
    for a TLS failure, which settings to check. A wrong CA or host name is retried, never fatal: the
    control plane's certificate may be being replaced. Through a proxy, a failure of the proxy names the
    variable it came from, not the TLS settings."""
    if exc is None:
        return ""
    details = exc.details() if isinstance(exc, aio.AioRpcError) else str(exc)
    text = redact_text(details or type(exc).__name__)[:400]
    lowered = text.lower()
    if proxy is not None and any(marker in lowered for marker in _PROXY_MARKERS):
        return f"{text} -- {proxy_failure_hint(proxy, target)}"
    if tls and any(marker in lowered for marker in _TLS_MARKERS):
        return f"{text} -- {TLS_HINT}"
    if tls and any(marker in lowered for marker in _CLOSED_MARKERS):
        return f"{text} -- the control plane closed the connection while setting up TLS; {TLS_HINT}"
    return text


def is_fatal(exc: BaseException) -> bool:
    return status_code(exc) in FATAL_CODES


TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


def is_transient(exc: BaseException) -> bool:
    """Worth resending the same request (FinishJob, an inventory batch): the network or the server hiccuped.
    A refusal (FAILED_PRECONDITION for a stale attempt, INVALID_ARGUMENT) will not change on a resend."""
    if isinstance(exc, TokenUnavailable):
        return True
    return isinstance(exc, aio.AioRpcError) and exc.code() in TRANSIENT_CODES


def is_retryable(exc: BaseException) -> bool:
    """For the connection loop: anything but a refused identity is retried, with backoff, by re-registering."""
    if isinstance(exc, TokenUnavailable):
        return True
    return isinstance(exc, aio.AioRpcError) and exc.code() not in FATAL_CODES
