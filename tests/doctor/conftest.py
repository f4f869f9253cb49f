"""`connector doctor` against the sandbox and a real control plane over TLS: one seeded sandbox (moto state
is process-global) and one control plane for the package; each test plants one fault."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector import doctor
from connector.controlplane.server import ControlPlaneThread
from connector.sandbox import Sandbox, SeedSpec
from tests.agent.agent_harness import CONNECTOR_ID, TOKEN, cp_settings
from tests.certs import server_tls
from tests.sandbox_env import sandbox_as_aws

# Two regions (one gets an SCP deny), clusters in two workload accounts (API and API_AND_CONFIG_MAP), and one
# account without the member role (excluded in the all-green settings).
SPEC = SeedSpec(
    accounts=5,
    regions=("us-east-1", "eu-west-1"),
    cluster_accounts=2,
    modes=("API", "API_AND_CONFIG_MAP"),
    account_without_member_role=3,
    identity_center=False,
)


@pytest.fixture(scope="package")
def sandbox() -> Iterator[Sandbox]:
    with sandbox_as_aws(SPEC) as sb:
        yield sb


@pytest.fixture(autouse=True)
def _clean_faults(sandbox: Sandbox) -> Iterator[None]:
    sandbox.faults.clear()
    yield
    sandbox.faults.clear()


def make_tls(directory: Path, days: int = 90) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1, valid for `days`."""
    return server_tls(directory, days=days)


class TlsControlPlane:
    def __init__(self, cp: ControlPlaneThread, ca: Path) -> None:
        self.cp, self.ca = cp, ca
        self.port = cp.address.rpartition(":")[2]

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            "CONNECTOR_ID": CONNECTOR_ID,
            "CONTROL_PLANE_URL": f"https://localhost:{self.port}",
            "CONNECTOR_TLS_CA_FILE": str(self.ca),
            "CONNECTOR_TOKEN": TOKEN,
        } | overrides


@pytest.fixture(scope="package")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsControlPlane]:
    directory = tmp_path_factory.mktemp("doctor-cp")
    ca, cert, key = make_tls(directory / "tls")
    settings = cp_settings(directory, tls_cert_file=str(cert), tls_key_file=str(key))
    with ControlPlaneThread(settings, tls_ca_file=ca) as cp:
        yield TlsControlPlane(cp, ca)


def good_settings(sb: Sandbox, **overrides: Any) -> dict[str, Any]:
    info = sb.seed_info
    return {
        "management_account_role_arn": info.management_role_arn,
        "external_id": info.external_id,
        "member_role_name": info.member_role_name,
        "regions": list(SPEC.regions),
        "excluded_account_ids": [info.account_without_member_role],
    } | overrides


def run_doctor(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    env: dict[str, str],
    settings: dict[str, Any] | None,
    *extra: str,
) -> tuple[int, dict[str, Any], dict[str, dict[str, Any]]]:
    """Run doctor in-process with --json; returns (exit code, the document, checks by id)."""
    argv = ["--json", "--sample", "10", *extra]
    if settings is not None:
        path = tmp_path / "settings.json"
        path.write_text(json.dumps(settings))
        argv += ["--settings", str(path)]
    capsys.readouterr()
    code = doctor.main(argv, environ=env)
    lines = capsys.readouterr().out.splitlines()
    # The in-process control plane logs to stdout too: the document is the block from "{" to "}".
    start, end = lines.index("{"), len(lines) - lines[::-1].index("}")
    document = json.loads("\n".join(lines[start:end]))
    return code, document, {c["id"]: c for c in document["checks"]}


def failed(checks: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(i for i, c in checks.items() if c["status"] == "fail")
