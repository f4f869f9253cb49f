"""End-to-end: real processes, real gRPC on loopback, the real control plane, the sandbox over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.sandbox import Sandbox, SeedSpec
from tests.sandbox_env import sandbox_as_aws

SPEC = SeedSpec(accounts=4, regions=("us-east-1",), cluster_accounts=2, account_without_member_role=None, users=2)


@pytest.fixture(scope="package")
def sandbox() -> Iterator[Sandbox]:
    with sandbox_as_aws(SPEC) as sb:
        yield sb
