"""The README's demo path: `connector demo` in its own process, exit 0, every check passed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


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
    assert "Traceback" not in out
