"""The sandbox's HTTP server: connections are kept alive, as AWS endpoints keep them."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from connector.sandbox import Sandbox
from tests.sandbox.sandbox_helpers import NO_RETRIES

pytestmark = pytest.mark.timeout(60)


class _RemotePorts:
    """WSGI middleware that records each request's client port: one port per TCP connection."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.ports: list[int] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.ports.append(int(environ["REMOTE_PORT"]))
        return self.app(environ, start_response)


@pytest.fixture()
def sb() -> Iterator[tuple[Sandbox, _RemotePorts]]:
    with Sandbox.start() as sandbox:
        made: list[_RemotePorts] = []

        def record(app: Callable[..., Iterable[bytes]]) -> _RemotePorts:
            made.append(_RemotePorts(app))
            return made[0]

        sandbox.wrap(record)
        yield sandbox, made[0]


def test_an_aws_client_reuses_one_connection(sb: tuple[Sandbox, _RemotePorts]) -> None:
    sandbox, ports = sb
    sts = sandbox.client("sts", config=NO_RETRIES)
    for _ in range(10):
        assert sts.get_caller_identity()["Account"] == "123456789012"
    assert len(ports.ports) == 10
    assert len(set(ports.ports)) == 1, "every call opened a new connection: the server closed the previous one"


def test_http11_requests_share_a_connection(sb: tuple[Sandbox, _RemotePorts]) -> None:
    sandbox, _ = sb
    conn = http.client.HTTPConnection(sandbox.host, sandbox.port, timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/_sandbox/health")
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read()) == {"status": "ok"}
            assert (response.getheader("Connection") or "").lower() != "close"
        first = conn.sock
        conn.request("POST", "/_sandbox/faults", body=b"[1]", headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 400  # a bad body is answered and the connection stays usable
        response.read()
        conn.request("GET", "/_sandbox/health")
        assert conn.getresponse().status == 200
        assert conn.sock is first
    finally:
        conn.close()


def test_stop_closes_kept_alive_connections() -> None:
    sandbox = Sandbox.start()
    conn = http.client.HTTPConnection(sandbox.host, sandbox.port, timeout=10)
    conn.request("GET", "/_sandbox/health")
    conn.getresponse().read()
    sandbox.stop()
    sandbox.stop()  # harmless
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        conn.request("GET", "/_sandbox/health")
        conn.getresponse()
    conn.close()
    with Sandbox.start() as again:  # the process may start a new sandbox at once
        assert again.client("sts", config=NO_RETRIES).get_caller_identity()["Account"] == "123456789012"


def test_stop_does_not_depend_on_the_loops_wake_up_pipe() -> None:
    # CI once saw the trigger pipe (waitress's wake-up for its loop) already closed when stop() wrote to it:
    # stop() raised, the process-wide "running" slot stayed taken, and every later sandbox failed to start.
    sandbox = Sandbox.start()
    sandbox._server.trigger.close()
    sandbox.stop()  # the loop still sees the stop flag within its poll timeout
    assert not sandbox._thread.is_alive()
    with Sandbox.start() as again:
        assert again.client("sts", config=NO_RETRIES).get_caller_identity()["Account"] == "123456789012"
