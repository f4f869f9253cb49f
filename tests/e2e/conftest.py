"""End-to-end: real processes, real gRPC on loopback, the real control plane, the sandbox over HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from connector.sandbox import Sandbox, SeedSpec

SPEC = SeedSpec(accounts=4, regions=("us-east-1",), cluster_accounts=2, account_without_member_role=None, users=2)


@pytest.fixture(scope="package")
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox.start(seed=SPEC)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in sb.env().items():
            mp.setenv(key, value)
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.delenv("AWS_PROFILE", raising=False)
        yield sb
    sb.stop()
