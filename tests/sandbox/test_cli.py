"""`connector sandbox serve` as a separate process, steered over HTTP like tests in other processes do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import boto3
import pytest

pytestmark = pytest.mark.timeout(120)


def test_serve_prints_endpoint_is_usable_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "sandbox", "serve", "--accounts", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("endpoint: http://127.0.0.1:"), first
        endpoint = first.split(" ", 1)[1]
        exports: dict[str, str] = {}
        line = ""
        while not line.startswith("serving until"):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            if line.startswith("export "):
                key, value = line[len("export ") :].strip().split("=", 1)
                exports[key] = value
        assert exports["AWS_ENDPOINT_URL"] == endpoint
        session = boto3.Session(
            aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=exports["AWS_SESSION_TOKEN"],
            region_name=exports["AWS_DEFAULT_REGION"],
        )
        me = session.client("sts", endpoint_url=endpoint).get_caller_identity()
        with urllib.request.urlopen(endpoint + "/_sandbox/seed", timeout=10) as response:
            seed = json.loads(response.read())
        assert me["Account"] == seed["connector_account_id"] and len(seed["accounts"]) == 7
        with urllib.request.urlopen(endpoint + "/_sandbox/calls", timeout=10) as response:
            assert json.loads(response.read())["by_operation"] == {"sts:GetCallerIdentity": 1}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "sandbox stopped" in out


def test_serve_rejects_bad_arguments() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "connector", "sandbox", "serve", "--accounts", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "accounts must be >= 4" in result.stderr


def test_serve_in_govcloud_prints_an_admin_profile_per_account(tmp_path, monkeypatch) -> None:
    """`--partition aws-us-gov`: the organisation and its regions are GovCloud's; the printed admin config lets
    the AWS CLI (here boto3, which reads the same file) look into any account as its administrator; the line
    for Lambda invocations names the sandbox's record of them."""
    config = tmp_path / "aws-config"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector",
            "sandbox",
            "serve",
            "--accounts",
            "4",
            "--partition",
            "aws-us-gov",
            "--admin-config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip().split(" ", 1)[1]
        lines = []
        while not (lines and lines[-1].startswith("serving until")):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line.rstrip())
        text = "\n".join(lines)
        assert "partition aws-us-gov, home region us-gov-west-1" in text
        assert f"export AWS_CONFIG_FILE={config}" in text
        assert f"curl -s {endpoint}/_sandbox/lambda/invocations" in text
        with urllib.request.urlopen(endpoint + "/_sandbox/seed", timeout=10) as response:
            seed = json.loads(response.read())
        member = seed["clusters"][0]["account"]
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        session = boto3.Session(profile_name=f"sandbox-{member}")
        me = session.client("sts").get_caller_identity()
        assert me["Account"] == member and me["Arn"].startswith("arn:aws-us-gov:sts::"), me
        clusters = session.client("eks").list_clusters()["clusters"]
        assert clusters and all("us-gov-west-1" in name for name in clusters), clusters
        with urllib.request.urlopen(endpoint + "/_sandbox/lambda/invocations", timeout=10) as response:
            assert json.loads(response.read()) == {"invocations": []}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
