"""Fixtures for the deployment tests: a moto server over HTTP, and checkov in a venv of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.cloudformation import parsing as cfn_parsing
from moto.server import ThreadedMotoServer

# checkov pins an older boto3 and phones home unless told not to: it lives in its own venv, made once and
# reused (keyed by version, so bumping the pin makes a fresh one).
CHECKOV_VERSION = "3.3.30"
CHECKOV_VENV_ENV = "ACCESS_CONNECTOR_CHECKOV_VENV"
CHECKOV_OFFLINE_ENV = {
    "BC_SKIP_MAPPING": "TRUE",
    "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
    "PYTHONWARNINGS": "ignore",
}


def _checkov_venv() -> Path:
    override = os.environ.get(CHECKOV_VENV_ENV)
    if override:
        return Path(override)
    return Path.home() / ".cache" / "access-connector" / f"checkov-venv-{CHECKOV_VERSION}"


@pytest.fixture(scope="session")
def checkov() -> Path:
    """Path of a checkov executable, installed from PyPI on first use. Fails (never skips) if it cannot be."""
    venv = _checkov_venv()
    exe = venv / "bin" / "checkov"
    marker = venv / ".installed"
    if marker.is_file() and marker.read_text().strip() == CHECKOV_VERSION and exe.is_file():
        return exe
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    steps = (
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"checkov=={CHECKOV_VERSION}"],
    )  # fmt: skip
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            pytest.fail(
                f"could not install checkov {CHECKOV_VERSION} into {venv} (set {CHECKOV_VENV_ENV} to move it):\n"
                f"$ {' '.join(step)}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}",
                pytrace=False,
            )
    marker.write_text(CHECKOV_VERSION)
    print(f"checkov {CHECKOV_VERSION} installed into {venv} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return exe


def run_checkov(exe: Path, directory: Path, framework: str) -> dict[str, Any]:
    """Run checkov offline on a directory; returns its JSON report for that framework."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_"))} | CHECKOV_OFFLINE_ENV
    proc = subprocess.run(
        [str(exe), "-d", str(directory), "--framework", framework, "--skip-download", "-o", "json", "--compact"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    # Exit code 1 means "checks failed": the tests assert on the report. Anything else is a broken run.
    if proc.returncode not in (0, 1):
        pytest.fail(f"checkov crashed (exit {proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    start = proc.stdout.find("{") if proc.stdout.lstrip().startswith("{") else proc.stdout.find("[")
    report = json.loads(proc.stdout[start:])
    reports = report if isinstance(report, list) else [report]
    for item in reports:
        if item.get("check_type") == framework:
            return dict(item)
    # checkov prints a bare summary when it found nothing of that framework to scan.
    pytest.fail(f"checkov found no {framework} files under {directory}: {proc.stdout[:2000]}", pytrace=False)


def _drop_novalue_from_lists() -> Any:
    """moto 5.2.5 turns `!If [cond, item, !Ref AWS::NoValue]` inside a list into a None item (dicts are
    cleaned, lists are not); CloudFormation removes the item. Patch the resolver to do what AWS does, so
    the real template (a conditional init container, a conditional environment entry) can be created."""
    original = cfn_parsing.clean_json

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        if isinstance(resource_json, list):
            cleaned = (original(item, resources_map) for item in resource_json)
            return [item for item in cleaned if item is not None]
        return original(resource_json, resources_map)

    cfn_parsing.clean_json = clean_json
    return original


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1, a free port: real botocore over HTTP."""
    original = _drop_novalue_from_lists()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        cfn_parsing.clean_json = original


@pytest.fixture(scope="session")
def aws(aws_endpoint: str) -> Any:
    """Factory of boto3 clients bound to the moto server (fake credentials, us-east-1)."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=aws_endpoint)

    return client
