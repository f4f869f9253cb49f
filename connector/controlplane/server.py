"""The reference control plane server (grpc.aio): ControlPlane + Admin + health + reflection.

    settings = ServerSettings(bind="127.0.0.1:0", db_path=":memory:", connector_tokens={"conn-1": "..."},
                              admin_token="...")
    server = ControlPlaneServer(settings); port = await server.start(); ...; await server.stop()

ControlPlaneThread runs one in a background thread with its own event loop, for synchronous callers
(tests, the demo, benchmarks):

    with ControlPlaneThread(settings) as cp:
        record = cp.admin.enqueue_sync("conn-1", "org-1", "aws_organization")
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import _async as health_aio  # what grpc_health documents as health.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from connector.controlplane.admin import AdminService
from connector.controlplane.auth import ADMIN_SERVICE, CONTROL_PLANE_SERVICE, AuthInterceptor, TokenBook
from connector.controlplane.client import AdminClient
from connector.controlplane.db import Database
from connector.controlplane.engine import Engine
from connector.controlplane.service import ControlPlaneService
from connector.controlplane.settings import ServerSettings, SettingsError, split_host_port
from connector.controlplane.signing import JobSigner, SigningKeyError, load_signer
from connector.logging import get_logger
from connector.v1 import admin_pb2_grpc, connector_pb2_grpc

__all__ = ["ControlPlaneServer", "ControlPlaneThread", "ServerSettings"]

log = get_logger("connector.controlplane")


class ControlPlaneServer:
    def __init__(self, settings: ServerSettings) -> None:
        settings.validate()
        self.settings = settings
        self.port = 0
        self._server: aio.Server | None = None
        self._engine: Engine | None = None
        self._db: Database | None = None
        self._health: Any = None
        self._tokens: TokenBook | None = None
        self.signer: JobSigner | None = None

    @property
    def address(self) -> str:
        host, _ = split_host_port(self.settings.bind)
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 (a wildcard bind is reached via loopback locally)
            host = "127.0.0.1"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """What a connector's CONTROL_PLANE_URL should be."""
        return f"{'https' if self.settings.tls else 'http'}://{self.address}"

    async def start(self) -> int:
        """Opens the store, re-arms leases found in it, starts serving; returns the bound port."""
        try:
            return await self._start()
        except BaseException:
            await self.stop(grace=0)
            raise

    async def _start(self) -> int:
        settings = self.settings
        if settings.job_signing_key_file is not None:
            try:
                self.signer = await asyncio.to_thread(load_signer, settings.job_signing_key_file)
            except SigningKeyError as exc:
                raise SettingsError(str(exc)) from None
        self._db = Database(settings.db_path)
        tokens = self._tokens = TokenBook(self._db, settings.admin_token)
        for connector_id, token in settings.connector_tokens.items():
            tokens.add(connector_id, token)
        tokens.reload()
        self._engine = Engine(settings, self._db, sign=self.signer.sign if self.signer is not None else None)
        await self._engine.start()

        options = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
            # Keep idle long-polls alive through NATs and load balancers; accept client keepalive pings.
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        server = aio.server(interceptors=[AuthInterceptor(tokens)], options=options)
        public_keys = [self.signer.public_key] if self.signer is not None else []
        connector_pb2_grpc.add_ControlPlaneServicer_to_server(
            ControlPlaneService(self._engine, tokens, job_signing_public_keys=public_keys), server
        )
        admin_pb2_grpc.add_AdminServicer_to_server(AdminService(self._engine, signer=self.signer), server)
        self._health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = (CONTROL_PLANE_SERVICE, ADMIN_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)

        credentials = None
        if settings.tls:
            assert settings.tls_cert_file is not None and settings.tls_key_file is not None
            key = await asyncio.to_thread(Path(settings.tls_key_file).read_bytes)
            cert = await asyncio.to_thread(Path(settings.tls_cert_file).read_bytes)
            if b"-----BEGIN CERTIFICATE-----" not in cert:
                raise SettingsError(f"--tls-cert: {settings.tls_cert_file} holds no PEM certificate")
            if b"PRIVATE KEY-----" not in key:
                raise SettingsError(f"--tls-key: {settings.tls_key_file} holds no PEM private key")
            client_ca = None
            if settings.tls_client_ca_file is not None:  # mTLS: refuse clients without a cert from this CA
                client_ca = await asyncio.to_thread(Path(settings.tls_client_ca_file).read_bytes)
                if b"-----BEGIN CERTIFICATE-----" not in client_ca:
                    raise SettingsError(f"--tls-client-ca: {settings.tls_client_ca_file} holds no PEM certificate")
            credentials = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
            )
        try:
            if credentials is not None:
                self.port = server.add_secure_port(settings.bind, credentials)
            else:
                self.port = server.add_insecure_port(settings.bind)
        except RuntimeError:  # grpc's "Failed to bind to address"
            self.port = 0
        if not self.port:
            raise OSError(f"could not bind {settings.bind!r} (--bind): address in use or not available")
        await server.start()
        self._server = server
        for service in ("", CONTROL_PLANE_SERVICE, ADMIN_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "control plane listening",
            address=self.address,
            tls=settings.tls,
            client_certs_required=settings.tls_client_ca_file is not None,
            job_signing_key_id=self.signer.key_id if self.signer is not None else None,
            db=settings.db_path,
            lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts,
        )
        return self.port

    async def stop(self, grace: float = 2.0) -> None:
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._engine is not None:
            self._engine.begin_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._engine is not None:
            await self._engine.stop()
            self._engine = None
        if self._tokens is not None:
            self._tokens.close()
            self._tokens = None
        if self._db is not None:
            self._db.close()
            self._db = None
        log.info("control plane stopped")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def settle_rpc_tasks(within: float = 5.0) -> None:
    """Wait for the loop's other tasks (grpc aio's per-RPC tasks) after a server stopped, before the loop ends.

    grpc's stop() can return while an RPC's task still awaits its last batch from core; a loop that closes then
    cancels that task, and grpc logs the CancelledError as a traceback ("Exception not handled ... PollJobs").
    Only for a loop the control plane owns: it waits for every task but the caller."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=within)


class ControlPlaneThread:
    """A ControlPlaneServer on its own event loop in a daemon thread; `.admin` is a synchronous AdminClient."""

    def __init__(self, settings: ServerSettings, tls_ca_file: str | Path | None = None) -> None:
        self.settings = settings
        self._tls_ca_file = tls_ca_file
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: ControlPlaneServer | None = None
        self._admin: AdminClient | None = None
        self.port = 0

    @property
    def address(self) -> str:
        assert self._server is not None, "not started"
        return self._server.address

    @property
    def url(self) -> str:
        """What a connector's CONTROL_PLANE_URL should be (http:// only for a plaintext loopback server)."""
        assert self._server is not None, "not started"
        return self._server.url

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(self.address, self.settings.admin_token, tls_ca_file=self._tls_ca_file)
        return self._admin

    def start(self) -> ControlPlaneThread:
        self._server = ControlPlaneServer(self.settings)
        loop = asyncio.new_event_loop()
        started: Future[int] = Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            assert self._server is not None
            try:
                started.set_result(loop.run_until_complete(self._server.start()))
            except BaseException as exc:
                started.set_exception(exc)
                return
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="controlplane", daemon=True)
        self._thread.start()
        self.port = started.result(timeout=30)
        return self

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._loop is None or self._server is None:
            return
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._stop_and_settle(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._loop.close()
        self._loop = None

    async def _stop_and_settle(self) -> None:
        assert self._server is not None
        await self._server.stop()
        await settle_rpc_tasks()

    def __enter__(self) -> ControlPlaneThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
