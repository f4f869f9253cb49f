"""TLS with a certificate made at test time, refusal of plaintext off loopback, health and reflection."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from connector.controlplane.client import AdminClient
from connector.controlplane.server import ControlPlaneServer, ControlPlaneThread
from connector.controlplane.settings import SettingsError
from tests.certs import server_tls
from tests.controlplane.cp_helpers import ADMIN_TOKEN, CONNECTOR_ID, Connector, fast_settings

pytestmark = pytest.mark.timeout(60)


def make_cert(directory: Path) -> tuple[Path, Path, Path]:
    """(ca, cert, key) for localhost / 127.0.0.1."""
    return server_tls(directory)


def test_tls_end_to_end(tmp_path: Path) -> None:
    ca_file, cert_file, key_file = make_cert(tmp_path)
    settings = fast_settings(tls_cert_file=str(cert_file), tls_key_file=str(key_file))
    with ControlPlaneThread(settings, tls_ca_file=ca_file) as cp:
        record = cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization")
        credentials = grpc.ssl_channel_credentials(ca_file.read_bytes())
        with grpc.secure_channel(cp.address, credentials) as channel:
            [job] = Connector(channel).poll(max_jobs=1, wait=1.0)
        assert job.id == record.job.id
        # A plaintext client cannot talk to the TLS port.
        with grpc.insecure_channel(cp.address) as plain, pytest.raises(grpc.RpcError) as excinfo:
            Connector(plain).hello()
        assert excinfo.value.code() == grpc.StatusCode.UNAVAILABLE
        # Nor can a client that does not trust the certificate.
        (tmp_path / "other").mkdir()
        other_ca, _, _ = make_cert(tmp_path / "other")
        with AdminClient(cp.address, ADMIN_TOKEN, tls_ca_file=other_ca) as untrusting, pytest.raises(grpc.RpcError):
            untrusting.list()


def test_plaintext_on_a_non_loopback_bind_is_refused() -> None:
    with pytest.raises(SettingsError, match="--tls-cert"):
        ControlPlaneServer(fast_settings(bind="0.0.0.0:0"))
    with pytest.raises(SettingsError, match="--tls-key"):
        ControlPlaneServer(fast_settings(bind="127.0.0.1:0", tls_cert_file="/nonexistent.crt"))


def test_health_and_reflection_answer_without_a_token(cp: ControlPlaneThread) -> None:
    with grpc.insecure_channel(cp.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service="connector.v1.ControlPlane"), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert {"connector.v1.ControlPlane", "connector.v1.Admin", "grpc.health.v1.Health"} <= names
