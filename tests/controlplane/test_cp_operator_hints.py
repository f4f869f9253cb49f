"""The operator commands say what is going on: a job for a connector that never said Hello, or that no live
replica can run, is warned about at once (and while --wait waits); a cancel says it reaches the replica with
its next heartbeat, and --wait waits for it; a TLS control plane reached without --tls-ca says to pass it.
A real control plane, a real agent (in-process), the CLI's own main()."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.config import ENV_DEFAULTS, ENV_VARS
from connector.controlplane import cli
from connector.controlplane.server import ControlPlaneThread
from connector.jobs.registry import build_registry
from connector.v1 import admin_pb2
from tests.agent.agent_harness import ADMIN_TOKEN, CONNECTOR_ID, AgentThread, agent_env, cp_settings, wait_for
from tests.certs import server_tls

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneThread]:
    tmp = tmp_path_factory.mktemp("hints")
    with ControlPlaneThread(cp_settings(tmp, heartbeat_interval=0.5, poll_wait=1.0)) as server:
        yield server


@pytest.fixture(scope="module")
def admin_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("admin") / "admin.token"
    path.write_text(ADMIN_TOKEN)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def agent(cp: ControlPlaneThread) -> Iterator[AgentThread]:
    with AgentThread(agent_env(cp.address)) as running:
        yield running


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _grant(cp: ControlPlaneThread, admin_file: Path, connector: str, itype: str, *extra: str) -> list[str]:
    return [
        "dispatch", "grant", "--server", cp.address, "--admin-token-file", str(admin_file),
        "--connector-id", connector, "--integration-id", "i-1", "--integration-type", itype,
        "--grant-id", "g-hint", "--principal", "alice", *extra,
    ]  # fmt: skip


def test_run_help_lists_every_variable_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    from connector.agent.main import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name in ENV_VARS:
        line = next((line for line in text.splitlines() if line.strip().startswith(name + " ")), "")
        assert f"[{ENV_DEFAULTS[name]}]" in line, (name, line)
    assert "[4]" in text and "[127.0.0.1:8080]" in text and "HTTPS_PROXY" in text


def test_integration_type_examples_exist() -> None:
    assert set(cli.INTEGRATION_TYPE_EXAMPLES) <= set(build_registry().types())


def test_never_said_hello_warns_at_once_and_while_waiting(cp, admin_file, capsys) -> None:
    code, _, err = _run(capsys, *_grant(cp, admin_file, "conn-typo", "noop"))
    assert code == cli.EXIT_OK
    assert "connector 'conn-typo' has never said Hello" in err and "CONNECTOR_ID" in err
    code, _, err = _run(capsys, *_grant(cp, admin_file, "conn-typo", "noop", "--wait", "--timeout", "2"))
    assert code == cli.EXIT_WAIT_TIMEOUT and err.count("never said Hello") == 1, err


def test_a_type_no_replica_runs_is_warned(cp, admin_file, agent, capsys) -> None:
    code, out, err = _run(capsys, *_grant(cp, admin_file, CONNECTOR_ID, "eks", "--wait", "--timeout", "20"))
    assert "do not run integration type 'eks'" in err and "aws_organization" in err, err
    assert code == cli.EXIT_JOB_FAILED and "UNSUPPORTED" in out
    code, out, err = _run(capsys, *_grant(cp, admin_file, CONNECTOR_ID, "noop", "--wait", "--timeout", "20"))
    assert code == cli.EXIT_OK and "warning" not in err, err
    code, out, _ = _run(capsys, "connectors", "--server", cp.address, "--admin-token-file", str(admin_file))
    assert f"{CONNECTOR_ID}  " in out and "live" in out and "noop" in out


def test_cancel_says_it_reaches_the_replica_with_its_next_heartbeat(cp, admin_file, agent, capsys) -> None:
    record = cp.admin.enqueue_grant(
        CONNECTOR_ID, "noop-1", "noop", grant_id="g-cancel", principal="p", target={"sleep_seconds": 30}
    )
    wait_for(lambda: cp.admin.get(record.job.id).state == admin_pb2.JOB_STATE_LEASED, 20, "leased")
    server = ["--server", cp.address, "--admin-token-file", str(admin_file)]
    code, out, err = _run(capsys, "jobs", "cancel", record.job.id, *server, "--wait", "--timeout", "30")
    assert "learns it with its next heartbeat (every 0.5 s)" in err, err
    assert code == cli.EXIT_OK and "CANCELLED" in out, out


def test_tls_control_plane_without_tls_ca(tmp_path: Path, admin_file: Path, capsys) -> None:
    ca, cert, key = server_tls(tmp_path / "tls")
    settings = cp_settings(tmp_path, tls_cert_file=str(cert), tls_key_file=str(key))
    with ControlPlaneThread(settings, tls_ca_file=ca) as tls_cp:
        server = ["--server", tls_cp.address.replace("127.0.0.1", "localhost"), "--admin-token-file", str(admin_file)]
        code, _, err = _run(capsys, "jobs", "list", *server)
        assert code == cli.EXIT_RPC and "serves TLS: pass --tls-ca" in err, err
        code, _, err = _run(capsys, "jobs", "list", *server, "--tls")
        assert code == cli.EXIT_RPC and "pass --tls-ca with the CA that issued it" in err, err
        code, _, _ = _run(capsys, "jobs", "list", *server, "--tls-ca", str(ca))
        assert code == cli.EXIT_OK
