"""Transport and credentials: TLS with a private CA, and a token file re-read on every call."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.controlplane.server import ControlPlaneThread

from .agent_harness import (
    CONNECTOR_ID,
    TOKEN,
    AgentThread,
    agent_env,
    cp_settings,
    make_tls_files,
    start_cp,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    settings = cp_settings(tmp_path, tls_cert_file=str(cert), tls_key_file=str(key))
    with ControlPlaneThread(settings, tls_ca_file=ca).start() as cp:
        port = cp.port
        env = agent_env("unused", CONTROL_PLANE_URL=f"https://localhost:{port}", CONNECTOR_TLS_CA_FILE=str(ca))
        del env["CONNECTOR_ALLOW_INSECURE_LOOPBACK"]
        with AgentThread(env) as agent:
            assert agent.runtime.health.registered
            assert not agent.runtime.config.plaintext
            job = cp.admin.enqueue_grant(CONNECTOR_ID, "noop-1", "noop", grant_id="g-tls", principal="p")
            assert cp.admin.wait(job.job.id, timeout=30).result["grant_id"] == "g-tls"


def test_a_server_the_ca_does_not_vouch_for_is_not_trusted(tmp_path: Path) -> None:
    _, cert, key = make_tls_files(tmp_path)
    (tmp_path / "other").mkdir()
    other_ca, _, _ = make_tls_files(tmp_path / "other")
    settings = cp_settings(tmp_path, tls_cert_file=str(cert), tls_key_file=str(key))
    with start_cp(settings) as cp:
        env = agent_env("unused", CONTROL_PLANE_URL=f"https://localhost:{cp.port}", CONNECTOR_TLS_CA_FILE=str(other_ca))
        agent = AgentThread(env)
        agent._thread.start()
        # The handshake fails: a connection error, retried with backoff (never registered, never fatal).
        wait_for(lambda: agent.runtime.reconnects >= 2, 30, "reconnect attempts")
        assert not agent.runtime.health.registered
        assert agent.stop() == 0


def test_token_file_is_re_read_on_every_call(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)  # connector run refuses a token file every user can read
    with start_cp(cp_settings(tmp_path, poll_wait=1.0)) as cp:
        env = agent_env(cp.address, CONNECTOR_TOKEN_FILE=str(token_file))
        del env["CONNECTOR_TOKEN"]
        agent = AgentThread(env).start()
        job = cp.admin.enqueue_grant(CONNECTOR_ID, "noop-1", "noop", grant_id="g-file", principal="p")
        assert cp.admin.wait(job.job.id, timeout=30).result["grant_id"] == "g-file"
        token_file.write_text("revoked-token-value-123\n")  # rotated to a token the server does not know
        assert agent.join(30) == 3
        assert agent.runtime.fatal_error is not None
        assert "CONNECTOR_TOKEN_FILE" in str(agent.runtime.fatal_error)
