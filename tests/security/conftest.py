"""The hostile suite's shared world: one seeded sandbox for the package (moto's state is process-global) and
the two Kubernetes API servers, the Lambda functions, permission sets and roles of tests/security/world.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from connector.sandbox import Sandbox
from tests.k8s.fake_apiserver import FakeApiServer
from tests.sandbox_env import sandbox_as_aws
from tests.security import world


@pytest.fixture(scope="package")
def sandbox() -> Iterator[Sandbox]:
    with sandbox_as_aws(world.SPEC) as sb:
        yield sb


@pytest.fixture(scope="package")
def hostile_world(sandbox: Sandbox) -> Iterator[world.World]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request to the fake API servers
    with FakeApiServer() as prod, FakeApiServer() as other:
        yield world.build(sandbox, prod, other)
