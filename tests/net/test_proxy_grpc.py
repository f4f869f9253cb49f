"""The agent reaches the control plane through a real HTTPS proxy (tinyproxy) when only the upper-case
HTTPS_PROXY is set (gRPC's core reads only lower-case names), NO_PROXY bypasses it, and a proxy that refuses
CONNECT or is down is named in the reconnect line, not blamed on TLS. Real agent processes, real TLS."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.controlplane.server import ControlPlaneThread
from connector.v1 import admin_pb2
from tests.agent.agent_harness import CONNECTOR_ID, TOKEN, cp_settings, spawn_agent, wait_log
from tests.certs import server_tls
from tests.net.tinyproxy import Tinyproxy, free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tls_cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlaneThread, Path]]:
    tmp = tmp_path_factory.mktemp("cp")
    ca, cert, key = server_tls(tmp / "tls")
    cp = ControlPlaneThread(cp_settings(tmp, tls_cert_file=str(cert), tls_key_file=str(key)), tls_ca_file=ca).start()
    yield cp, ca
    cp.stop()


def _env(tls_cp: tuple[ControlPlaneThread, Path], **extra: str) -> dict[str, str]:
    cp, ca = tls_cp
    return {
        "CONNECTOR_ID": CONNECTOR_ID,
        "CONTROL_PLANE_URL": f"https://localhost:{cp.address.rpartition(':')[2]}",
        "CONNECTOR_TLS_CA_FILE": str(ca),
        "CONNECTOR_TOKEN": TOKEN,
        "CONNECTOR_HEALTH_ADDR": "127.0.0.1:0",
        "CONNECTOR_LOG_FORMAT": "json",
        "CONNECTOR_DRAIN_GRACE_SECONDS": "5",
        **extra,
    }


def _stop(proc: object) -> None:
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    proc.wait(30)  # type: ignore[attr-defined]


def test_upper_case_https_proxy_carries_the_agent_and_its_jobs(tls_cp, tinyproxy: Tinyproxy, tmp_path: Path) -> None:
    cp, _ = tls_cp
    authority = f"localhost:{cp.address.rpartition(':')[2]}"
    before = tinyproxy.connects(authority)
    log = tmp_path / "agent.log"
    proc = spawn_agent(_env(tls_cp, HTTPS_PROXY=tinyproxy.url), log)
    try:
        line = wait_log(log, "control_plane_proxy", 20)
        assert line["variable"] == "HTTPS_PROXY" and line["proxy"] == tinyproxy.url
        wait_log(log, "registered", 30)
        record = cp.admin.enqueue_grant(CONNECTOR_ID, "noop-1", "noop", grant_id="g-proxy", principal="alice")
        assert cp.admin.wait(record.job.id, timeout=30).state == admin_pb2.JOB_STATE_SUCCEEDED
    finally:
        _stop(proc)
    assert tinyproxy.connects(authority) > before, tinyproxy.requests()


def test_no_proxy_bypasses_the_proxy(tls_cp, tinyproxy: Tinyproxy, tmp_path: Path) -> None:
    cp, _ = tls_cp
    authority = f"localhost:{cp.address.rpartition(':')[2]}"
    before = tinyproxy.connects(authority)
    log = tmp_path / "agent.log"
    proc = spawn_agent(_env(tls_cp, HTTPS_PROXY=tinyproxy.url, NO_PROXY="example.com,localhost"), log)
    try:
        wait_log(log, "registered", 30)
    finally:
        _stop(proc)
    assert tinyproxy.connects(authority) == before
    assert "control_plane_proxy" not in log.read_text()


@pytest.mark.parametrize("which", ["refuses_connect", "down"])
def test_a_failing_proxy_is_named_not_tls(which: str, tls_cp, strict_proxy: Tinyproxy, tmp_path: Path) -> None:
    cp, _ = tls_cp
    port = cp.address.rpartition(":")[2]
    url = strict_proxy.url if which == "refuses_connect" else f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "agent.log"
    proc = spawn_agent(_env(tls_cp, HTTPS_PROXY=url), log)
    try:
        line = wait_log(log, "reconnecting", 30)
    finally:
        _stop(proc)
    reason = line["reason"]
    assert "HTTPS_PROXY" in reason and url in reason, reason
    assert "CONNECTOR_TLS_CA_FILE" not in reason and "TLS to the control plane failed" not in reason, reason
    if which == "refuses_connect":
        assert "403" in reason
        assert port in strict_proxy.refused_connects()
    else:
        assert "refused" in reason.lower()
