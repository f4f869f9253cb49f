"""The README's demo path: `connector demo` in its own process, exit 0, every check passed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from connector.sandbox.postgres import NoPostgres, find_binaries


@pytest.mark.timeout(240)
def test_connector_demo_runs_end_to_end():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {"AWS_CONFIG_FILE": os.devnull}
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "demo"], env=env, capture_output=True, text=True, timeout=220
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "all checks passed" in out
    for step in (
        "sync succeeded",
        "grant succeeded",
        "revoke succeeded",
        "access entry is gone after the revoke",
        "the sync says which instance a session reaches and why the other is not",
        "the requester opens a session on the granted instance",
        "one drift item: access added to a connector-made policy",
        "the session is terminated and the policy is gone",
        "the control plane holds only ciphertext",
        "the requester opens them with their private key",
    ):
        assert f"[ok] {step}" in out, out
    try:
        find_binaries()
    except NoPostgres:
        assert "database part skipped" in out, out
    else:  # the database part: discovered by its tags, granted, read as the requester, revoked
        for step in (
            "the tagged instance's tables are in the inventory",
            "database grant succeeded",
            "the requester reads sales.orders and nothing else",
            "database revoke succeeded",
            "the login is refused after the revoke",
        ):
            assert f"[ok] {step}" in out, out
    assert "Traceback" not in out


@pytest.mark.timeout(240)
@pytest.mark.parametrize("partition", ["aws-us-gov", "aws-cn"])
def test_connector_demo_in_another_partition(partition: str):
    """The same flow with the organisation in GovCloud or China: every ARN the connector builds (roles it
    assumes, access policies it associates) and every region carries that partition; the sandbox refuses
    an `arn:aws:` access policy there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {"AWS_CONFIG_FILE": os.devnull}
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "demo", "--partition", partition, "--accounts", "6"],
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "all checks passed" in out and f"(partition {partition})" in out
    for step in (
        "sync succeeded",
        f"every cluster ARN is in the organisation's partition ({partition})",
        "grant succeeded",
        f"the access policy is named in the cluster's partition ({partition})",
        "revoke succeeded",
        "access entry is gone after the revoke",
        "the requester opens them with their private key",
    ):
        assert f"[ok] {step}" in out, out
    assert "arn:aws:" not in out.split("== jobs")[0], out
