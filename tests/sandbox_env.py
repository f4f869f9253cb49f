"""A running sandbox that this process's AWS SDK uses as its connector identity (shared by test packages)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from connector.sandbox import Sandbox, SeedSpec


@contextmanager
def sandbox_as_aws(spec: SeedSpec | None) -> Iterator[Sandbox]:
    """Start the sandbox seeded with `spec` and point the default boto3 chain at it (the connector's role
    credentials, no profile or config file of this machine); undo it all on exit."""
    sb = Sandbox.start(seed=spec)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("AWS_PROFILE", raising=False)
            for key, value in sb.env().items():
                mp.setenv(key, value)
            mp.setenv("AWS_CONFIG_FILE", os.devnull)
            mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
            yield sb
    finally:
        sb.stop()
