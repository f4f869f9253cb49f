"""No secret reaches a log line, a metric, an error or a result: the real processes, fully secured.

`connector controlplane serve` (TLS, client certificates required, jobs signed) and `connector run` (mTLS,
pinned signing key, token from a file) run as subprocesses; jobs take the paths where a secret could slip
out (settings holding secret-looking values, a cluster URL with a password, a refused job, a wrong token).
Everything the processes print, the /metrics page and every job record are grepped for every secret.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from google.protobuf import json_format

from connector.controlplane.client import AdminClient
from connector.controlplane.signing import create_key_file, seed_from_bytes
from connector.v1 import admin_pb2
from tests.agent.agent_harness import read_lines, wait_for, wait_log
from tests.certs import TestCA

pytestmark = pytest.mark.timeout(180)

CONNECTOR_TOKEN = "conn-tok-SECRET-3f9a1c77e0b24d5e"
ADMIN_TOKEN = "admin-tok-SECRET-a41e9b0c7d3f2286"
SETTING_SECRET = "setting-SECRET-5c2e8a91f04b"
URL_PASSWORD = "urlpw-SECRET-77b1e2"


def _secret_file(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def _pem_body(path: Path) -> list[str]:
    """The base64 lines of a PEM private key: any one of them in the output would be a leak."""
    return [line for line in path.read_text().splitlines() if line and not line.startswith("-----")]


def test_no_secret_in_logs_metrics_errors_or_results(tmp_path: Path) -> None:
    server_ca, client_ca = TestCA(tmp_path, "server"), TestCA(tmp_path, "client")
    server = server_ca.issue("cp", dns=("localhost",), ips=("127.0.0.1",))
    agent_cert, operator_cert = client_ca.issue("conn-1", client=True), client_ca.issue("operator", client=True)
    signer = create_key_file(tmp_path / "signing.pem")
    seed = seed_from_bytes((tmp_path / "signing.pem").read_bytes())

    secrets = {
        "connector token": CONNECTOR_TOKEN,
        "admin token": ADMIN_TOKEN,
        "setting value": SETTING_SECRET,
        "url password": URL_PASSWORD,
        "signing seed (base64)": base64.b64encode(seed).decode(),
        "signing seed (hex)": seed.hex(),
    }
    for name, path in (("signing", tmp_path / "signing.pem"), ("tls", server.key), ("mtls", agent_cert.key)):
        for i, line in enumerate(_pem_body(path)):
            secrets[f"{name} key PEM line {i}"] = line

    cp_log = tmp_path / "cp.log"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}
    serve = [
        sys.executable,
        "-m",
        "connector",
        "controlplane",
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--db",
        str(tmp_path / "cp.sqlite"),
        "--admin-token-file",
        str(_secret_file(tmp_path / "admin.token", ADMIN_TOKEN)),
        "--connector-token",
        f"conn-1={_secret_file(tmp_path / 'conn.token', CONNECTOR_TOKEN)}",
        "--tls-cert",
        str(server.cert),
        "--tls-key",
        str(server.key),
        "--tls-client-ca",
        str(client_ca.path),
        "--job-signing-key",
        str(tmp_path / "signing.pem"),
        "--poll-wait",
        "2",
        "--lease-seconds",
        "20",
        "--heartbeat-interval",
        "1",
        "--retry-backoff",
        "0.2",
        "--log-format",
        "json",
    ]
    with open(cp_log, "wb") as out:
        cp = subprocess.Popen(serve, env=env, stdout=out, stderr=out)
    agents: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(lambda: "listening on" in cp_log.read_text() or cp.poll() is not None, 60, "control plane up")
        assert cp.poll() is None, cp_log.read_text()
        address = re.search(r"listening on (\S+)", cp_log.read_text()).group(1)  # type: ignore[union-attr]
        port = address.rsplit(":", 1)[1]

        agent_env = env | {
            "CONNECTOR_ID": "conn-1",
            "CONTROL_PLANE_URL": f"https://localhost:{port}",
            "CONNECTOR_TOKEN_FILE": str(tmp_path / "conn.token"),
            "CONNECTOR_TLS_CA_FILE": str(server_ca.path),
            "CONNECTOR_TLS_CLIENT_CERT_FILE": str(agent_cert.cert),
            "CONNECTOR_TLS_CLIENT_KEY_FILE": str(agent_cert.key),
            "CONNECTOR_JOB_SIGNING_KEYS": signer.public_key_b64,
            "CONNECTOR_HEALTH_ADDR": "127.0.0.1:0",
            "CONNECTOR_LOG_FORMAT": "json",
            "CONNECTOR_LOG_LEVEL": "debug",
            "CONNECTOR_DRAIN_GRACE_SECONDS": "10",
        }
        agent_log = tmp_path / "agent.log"
        with open(agent_log, "wb") as out:
            agents.append(
                subprocess.Popen([sys.executable, "-m", "connector", "run"], env=agent_env, stdout=out, stderr=out)
            )
        wait_log(agent_log, "registered", 60)
        health = wait_log(agent_log, "health_listening", 10)["address"]

        # A second replica with a wrong token: refused (exit 3), and its message must not echo either token.
        wrong_log = tmp_path / "wrong-token.log"
        _secret_file(tmp_path / "wrong.token", CONNECTOR_TOKEN[::-1])
        secrets["wrong token"] = CONNECTOR_TOKEN[::-1]
        with open(wrong_log, "wb") as out:
            wrong = subprocess.Popen(
                [sys.executable, "-m", "connector", "run"],
                env=agent_env | {"CONNECTOR_TOKEN_FILE": str(tmp_path / "wrong.token")},
                stdout=out,
                stderr=out,
            )
        assert wrong.wait(timeout=60) == 3, wrong_log.read_text()

        records = []
        with AdminClient(
            f"localhost:{port}",
            ADMIN_TOKEN,
            tls_ca_file=server_ca.path,
            tls_client_cert_file=operator_cert.cert,
            tls_client_key_file=operator_cert.key,
        ) as admin:
            secret_settings = {"password": SETTING_SECRET, "api_token": SETTING_SECRET, "items": 2}
            records.append(admin.enqueue_sync("conn-1", "noop-1", "noop", secret_settings))
            records.append(
                admin.enqueue_grant(
                    "conn-1",
                    "noop-1",
                    "noop",
                    settings=secret_settings,
                    grant_id="g-1",
                    principal="alice",
                    target={"client_secret": SETTING_SECRET, "sleep_seconds": 0},
                    expires_in=600,
                )
            )
            k8s = {"connection": "host", "host": f"https://admin:{URL_PASSWORD}@127.0.0.1:1"}
            records.append(admin.enqueue_sync("conn-1", "k8s-1", "kubernetes", k8s))
            records.append(
                admin.enqueue_grant(
                    "conn-1",
                    "k8s-1",
                    "kubernetes",
                    settings=k8s,
                    grant_id="g-2",
                    principal="bob",
                    target={"scope": "cluster", "role": "view", "token": SETTING_SECRET},
                )
            )
            records.append(
                admin.enqueue_sync(
                    "conn-1", "org-1", "aws_organization", {"external_id": SETTING_SECRET, "region": "x"}
                )
            )
            done = [admin.wait(r.job.id, timeout=60) for r in records]
            states = [admin_pb2.JobState.Name(d.state) for d in done]
            assert states[:2] == ["JOB_STATE_SUCCEEDED"] * 2, [d.error for d in done]
            # The cluster URL with a password was dialled (retried, then failed); the grant's target holds a field
            # the kind does not take (refused by name, its value not repeated); the org settings were refused.
            assert [d.error.code for d in done[2:]] == ["UNAVAILABLE", "INVALID_JOB", "INVALID_SETTINGS"], states
            assert "target.token: unknown field" in done[3].error.message

        with urllib.request.urlopen(f"http://{health}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert "connector_jobs" in metrics or "jobs_total" in metrics
    finally:
        for proc in [*agents, cp]:
            proc.terminate()
        for proc in [*agents, cp]:
            proc.wait(timeout=60)

    outputs = {
        "control plane log": cp_log.read_text(),
        "agent log": (tmp_path / "agent.log").read_text(),
        "wrong-token agent log": (tmp_path / "wrong-token.log").read_text(),
        "/metrics": metrics,
        # What the connector reported (the job itself carries the settings it was given, by design).
        "job results and errors": "\n".join(
            json.dumps([json_format.MessageToDict(d.error), json_format.MessageToDict(d.result)]) for d in done
        ),
    }
    # The runs did what they were meant to (so the grep below means something).
    assert "job_finished" in outputs["agent log"] and "job enqueued" in outputs["control plane log"]
    assert "refused the connector token" in outputs["wrong-token agent log"]
    assert any(line.get("event") == "audit" for line in read_lines(tmp_path / "agent.log"))
    leaks = [
        f"{secret_name} in {where}"
        for where, text in outputs.items()
        for secret_name, value in secrets.items()
        if value in text
    ]
    assert not leaks, leaks
    for where, text in outputs.items():
        assert "Traceback" not in text, where
