"""doctor takes the agent's path to the control plane: through the proxy HTTPS_PROXY names (a real tinyproxy),
and says so; a proxy that refuses the tunnel is a failed check naming the variable, not a TLS failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.doctor import EXIT_FAILED
from tests.doctor.conftest import run_doctor
from tests.net.tinyproxy import Tinyproxy

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Tinyproxy, Tinyproxy]]:
    directory = tmp_path_factory.mktemp("doctor-proxies")
    with Tinyproxy(directory) as open_proxy, Tinyproxy(directory, connect_ports=(443,)) as strict:
        yield open_proxy, strict


def test_through_the_proxy(sandbox, control_plane, proxies, capsys, tmp_path: Path) -> None:
    proxy, _ = proxies
    env = control_plane.env(HTTPS_PROXY=proxy.url)
    _, _, checks = run_doctor(capsys, tmp_path, env, None)
    for check_id in ("control_plane.proxy", "control_plane.reachable", "control_plane.tls", "control_plane.token"):
        assert checks[check_id]["status"] == "pass", checks[check_id]
    assert "(from HTTPS_PROXY)" in checks["control_plane.proxy"]["message"]
    # Two tunnels: the TLS check's and the Hello's (gRPC, with the same proxy decision as the agent).
    assert proxy.connects(f"localhost:{control_plane.port}") >= 2, proxy.requests()


def test_a_proxy_refusing_connect(sandbox, control_plane, proxies, capsys, tmp_path: Path) -> None:
    _, strict = proxies
    env = control_plane.env(HTTPS_PROXY=strict.url)
    code, _, checks = run_doctor(capsys, tmp_path, env, None)
    assert code == EXIT_FAILED
    check = checks["control_plane.proxy"]
    assert check["status"] == "fail" and "403" in check["message"] and "HTTPS_PROXY" in check["fix"], check
    assert "control_plane.tls" not in checks
