from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import structlog

from connector.logging import configure_logging
from connector.sandbox import Sandbox
from tests.lambda_custom.helpers import fresh, start_sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    yield from start_sandbox()


@pytest.fixture
def sb(sandbox: Sandbox) -> Iterator[Sandbox]:
    yield from fresh(sandbox)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Every structlog line of the test, as JSON, at debug level."""
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    try:
        yield stream
    finally:
        structlog.reset_defaults()
