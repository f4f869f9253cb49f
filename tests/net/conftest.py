"""Proxies, endpoints and partitions: a real tinyproxy, a TLS control plane, the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net.tinyproxy import Tinyproxy


@pytest.fixture(scope="package")
def proxy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxies")


@pytest.fixture(scope="package")
def tinyproxy(proxy_dir: Path) -> Iterator[Tinyproxy]:
    """A proxy that tunnels to any port."""
    with Tinyproxy(proxy_dir) as proxy:
        yield proxy


@pytest.fixture(scope="package")
def strict_proxy(proxy_dir: Path) -> Iterator[Tinyproxy]:
    """A proxy that refuses CONNECT to anything but port 443 (as many corporate proxies do)."""
    with Tinyproxy(proxy_dir, connect_ports=(443,)) as proxy:
        yield proxy


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable of this machine leaks into a test; the test sets its own."""
    for name in (
        "grpc_proxy",
        "https_proxy",
        "HTTPS_PROXY",
        "http_proxy",
        "HTTP_PROXY",
        "no_proxy",
        "NO_PROXY",
        "no_grpc_proxy",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch
