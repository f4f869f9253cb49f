"""TLS toward the control plane: verified server certificates, optional mTLS, no plaintext off loopback.

Certificates are made at test time. The agent is the real one: in-process (AgentThread) when it should
work, `python -m connector run` when it should be refused (it must keep retrying with backoff, say why in
its log, and not crash).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from connector.config import ConfigError, load_config
from connector.controlplane.client import AdminClient
from connector.controlplane.server import ControlPlaneThread
from connector.controlplane.settings import SettingsError
from connector.v1 import admin_pb2
from tests.agent.agent_harness import (
    ADMIN_TOKEN,
    CONNECTOR_ID,
    AgentThread,
    agent_env,
    cp_settings,
    read_lines,
    spawn_agent,
    wait_for,
)
from tests.certs import Issued, TestCA

pytestmark = pytest.mark.timeout(120)


@pytest.fixture()
def pki(tmp_path: Path) -> dict[str, object]:
    server_ca, client_ca, stranger = TestCA(tmp_path, "server"), TestCA(tmp_path, "client"), TestCA(tmp_path, "rogue")
    return {
        "server_ca": server_ca,
        "client_ca": client_ca,
        "stranger": stranger,
        "server": server_ca.issue("controlplane", dns=("localhost",), ips=("127.0.0.1",)),
        "client": client_ca.issue("conn-1", client=True),
        "rogue_client": stranger.issue("conn-1", client=True),
    }


def _start(tmp_path: Path, server: Issued, client_ca: Path | None = None) -> ControlPlaneThread:
    settings = cp_settings(tmp_path, tls_cert_file=server.cert, tls_key_file=server.key, tls_client_ca_file=client_ca)
    cp = ControlPlaneThread(settings)
    cp.start()
    return cp


def _tls_env(cp: ControlPlaneThread, ca: Path, host: str = "127.0.0.1", **extra: str) -> dict[str, str]:
    env = agent_env(cp.address, CONTROL_PLANE_URL=f"https://{host}:{cp.port}", CONNECTOR_TLS_CA_FILE=str(ca))
    env.pop("CONNECTOR_ALLOW_INSECURE_LOOPBACK")
    return env | extra


def _run_one_job(cp: ControlPlaneThread, admin: AdminClient, env: dict[str, str]) -> None:
    with AgentThread(env) as agent:
        assert agent.runtime.health.registered, "the agent did not register over TLS"
        assert not agent.runtime.config.plaintext
        record = admin.enqueue_sync(CONNECTOR_ID, "noop-1", "noop", {"items": 2})
        done = admin.wait(record.job.id, timeout=30)
        assert done.state == admin_pb2.JOB_STATE_SUCCEEDED, done


def _assert_refused_and_retrying(env: dict[str, str], log_path: Path, expect: tuple[str, ...]) -> None:
    """The agent process stays up, reconnects with growing waits, and each reconnect line says why."""
    proc = spawn_agent(env, log_path)
    try:
        wait_for(
            lambda: (
                sum(line.get("event") == "reconnecting" for line in read_lines(log_path)) >= 3
                or proc.poll() is not None
            ),
            60,
            "three reconnect attempts",
        )
        assert proc.poll() is None, f"the agent exited ({proc.returncode}):\n{log_path.read_text()}"
        lines = [line for line in read_lines(log_path) if line.get("event") == "reconnecting"]
        assert not any(line.get("event") == "registered" for line in read_lines(log_path))
        for line in lines:
            reason = line["reason"].lower()
            assert any(word.lower() in reason for word in expect), line
            assert "CONNECTOR_TLS_CA_FILE" in line["reason"], line  # the hint names what to check
            assert line["retry_in_seconds"] > 0
        assert [line["attempt"] for line in lines[:3]] == [1, 2, 3]
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log_path.read_text()  # a clean drain, not a crash
    text = log_path.read_text()
    assert "Traceback" not in text


def test_tls_with_the_right_ca_runs_jobs(tmp_path: Path, pki: dict[str, object]) -> None:
    server, ca = pki["server"], pki["server_ca"]
    assert isinstance(server, Issued) and isinstance(ca, TestCA)
    cp = _start(tmp_path, server)
    try:
        with AdminClient(cp.address, ADMIN_TOKEN, tls_ca_file=ca.path) as admin:
            _run_one_job(cp, admin, _tls_env(cp, ca.path))  # the IP SAN
            _run_one_job(cp, admin, _tls_env(cp, ca.path, host="localhost"))  # the DNS SAN
    finally:
        cp.stop()


def test_wrong_ca_is_refused_and_the_agent_keeps_retrying(tmp_path: Path, pki: dict[str, object]) -> None:
    server, stranger = pki["server"], pki["stranger"]
    assert isinstance(server, Issued) and isinstance(stranger, TestCA)
    cp = _start(tmp_path, server)
    try:
        env = _tls_env(cp, stranger.path)
        _assert_refused_and_retrying(env, tmp_path / "agent.log", ("CERTIFICATE_VERIFY_FAILED", "certificate"))
        assert cp.admin is not None
    finally:
        cp.stop()


def test_hostname_mismatch_is_refused(tmp_path: Path, pki: dict[str, object]) -> None:
    ca = pki["server_ca"]
    assert isinstance(ca, TestCA)
    elsewhere = ca.issue("elsewhere", dns=("cp.elsewhere.example",))  # right CA, wrong name
    cp = _start(tmp_path, elsewhere)
    try:
        env = _tls_env(cp, ca.path)  # dials https://127.0.0.1:PORT, not in the certificate
        _assert_refused_and_retrying(env, tmp_path / "agent.log", ("hostname",))
        # The same server, reached by the name in its certificate, is accepted: it was the name.
        with AdminClient(cp.address, ADMIN_TOKEN, tls_ca_file=ca.path, tls_server_name="cp.elsewhere.example") as admin:
            assert admin.list() is not None
    finally:
        cp.stop()


def test_mtls_refuses_an_agent_without_a_client_certificate(tmp_path: Path, pki: dict[str, object]) -> None:
    server, ca, client_ca, rogue = pki["server"], pki["server_ca"], pki["client_ca"], pki["rogue_client"]
    assert isinstance(server, Issued) and isinstance(ca, TestCA) and isinstance(client_ca, TestCA)
    assert isinstance(rogue, Issued)
    cp = _start(tmp_path, server, client_ca=client_ca.path)
    try:
        env = _tls_env(cp, ca.path)
        _assert_refused_and_retrying(
            env, tmp_path / "no-cert.log", ("handshake", "ssl", "tls", "certificate", "closed")
        )
        # A certificate from a CA the control plane does not trust for clients is refused too.
        rogue_env = env | {
            "CONNECTOR_TLS_CLIENT_CERT_FILE": str(rogue.cert),
            "CONNECTOR_TLS_CLIENT_KEY_FILE": str(rogue.key),
        }
        _assert_refused_and_retrying(
            rogue_env, tmp_path / "rogue.log", ("handshake", "ssl", "tls", "certificate", "closed")
        )
        # The operator API sits behind the same requirement.
        with AdminClient(cp.address, ADMIN_TOKEN, tls_ca_file=ca.path) as anonymous, pytest.raises(grpc.RpcError):
            anonymous.list()
    finally:
        cp.stop()


def test_mtls_accepts_an_agent_with_a_client_certificate(tmp_path: Path, pki: dict[str, object]) -> None:
    server, ca, client_ca, client = pki["server"], pki["server_ca"], pki["client_ca"], pki["client"]
    assert isinstance(server, Issued) and isinstance(ca, TestCA) and isinstance(client_ca, TestCA)
    assert isinstance(client, Issued)
    cp = _start(tmp_path, server, client_ca=client_ca.path)
    try:
        operator = client_ca.issue("operator", client=True)
        with AdminClient(
            cp.address,
            ADMIN_TOKEN,
            tls_ca_file=ca.path,
            tls_client_cert_file=operator.cert,
            tls_client_key_file=operator.key,
        ) as admin:
            env = _tls_env(
                cp,
                ca.path,
                CONNECTOR_TLS_CLIENT_CERT_FILE=str(client.cert),
                CONNECTOR_TLS_CLIENT_KEY_FILE=str(client.key),
            )
            _run_one_job(cp, admin, env)
    finally:
        cp.stop()


def test_client_ca_without_server_tls_is_a_settings_error(tmp_path: Path, pki: dict[str, object]) -> None:
    client_ca = pki["client_ca"]
    assert isinstance(client_ca, TestCA)
    with pytest.raises(SettingsError, match="--tls-client-ca"):
        cp_settings(tmp_path, tls_client_ca_file=client_ca.path).validate()


@pytest.mark.parametrize("url", ["http://10.0.0.5:50051", "http://controlplane.example.com:443", "http://[fd00::1]:80"])
def test_plaintext_to_a_non_loopback_url_is_refused_at_config_time(url: str) -> None:
    env = agent_env("127.0.0.1:1", CONTROL_PLANE_URL=url)  # even with CONNECTOR_ALLOW_INSECURE_LOOPBACK=true
    with pytest.raises(ConfigError, match="CONTROL_PLANE_URL") as excinfo:
        load_config(env)
    assert "https://" in str(excinfo.value)


def test_plaintext_loopback_needs_the_explicit_opt_in() -> None:
    env = agent_env("127.0.0.1:1")
    env.pop("CONNECTOR_ALLOW_INSECURE_LOOPBACK")
    with pytest.raises(ConfigError, match="CONNECTOR_ALLOW_INSECURE_LOOPBACK"):
        load_config(env)


def test_connector_run_refuses_plaintext_off_loopback_before_dialling(tmp_path: Path) -> None:
    env = agent_env("127.0.0.1:1", CONTROL_PLANE_URL="http://192.0.2.10:50051")
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "run"],
        env={"PATH": "/usr/bin:/bin"} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "CONTROL_PLANE_URL" in proc.stderr and "plaintext" in proc.stderr
    assert "connecting" not in proc.stderr and "Traceback" not in proc.stderr
