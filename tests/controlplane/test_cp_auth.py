"""Bearer tokens: unknown -> UNAUTHENTICATED, another connector's id -> PERMISSION_DENIED, admin token separate,
and no token in any log line."""

from __future__ import annotations

import io

import grpc
import pytest

from connector.controlplane.client import AdminClient
from connector.controlplane.server import ControlPlaneThread
from connector.logging import configure_logging
from tests.controlplane.cp_helpers import (
    ADMIN_TOKEN,
    CONNECTOR_ID,
    CONNECTOR_TOKEN,
    OTHER_ID,
    Connector,
    rpc_code,
    rpc_details,
)

pytestmark = pytest.mark.timeout(60)


def test_unknown_or_missing_token_is_unauthenticated(channel: grpc.Channel) -> None:
    for token in ("wrong-token", ""):
        conn = Connector(channel, token=token)
        with pytest.raises(grpc.RpcError) as excinfo:
            conn.hello()
        assert rpc_code(excinfo) == grpc.StatusCode.UNAUTHENTICATED
        assert rpc_details(excinfo) == "invalid connector token"
        with pytest.raises(grpc.RpcError) as excinfo:
            conn.upload([])
        assert rpc_code(excinfo) == grpc.StatusCode.UNAUTHENTICATED


def test_a_token_for_another_connector_is_permission_denied(channel: grpc.Channel) -> None:
    conn = Connector(channel, connector_id=OTHER_ID, token=CONNECTOR_TOKEN)
    for call in (conn.hello, lambda: conn.poll(1, 0.1), lambda: conn.heartbeat(("j", 1)), lambda: conn.finish("j", 1)):
        with pytest.raises(grpc.RpcError) as excinfo:
            call()
        assert rpc_code(excinfo) == grpc.StatusCode.PERMISSION_DENIED
        assert CONNECTOR_TOKEN not in rpc_details(excinfo)


def test_admin_and_connector_tokens_are_not_interchangeable(cp: ControlPlaneThread, channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        Connector(channel, token=ADMIN_TOKEN).hello()
    assert rpc_code(excinfo) == grpc.StatusCode.UNAUTHENTICATED
    with AdminClient(cp.address, CONNECTOR_TOKEN) as admin, pytest.raises(grpc.RpcError) as excinfo:
        admin.list()
    assert rpc_code(excinfo) == grpc.StatusCode.UNAUTHENTICATED
    assert rpc_details(excinfo) == "invalid admin token"
    assert cp.admin.list() == []


def test_no_token_reaches_the_logs(channel: grpc.Channel, cp: ControlPlaneThread) -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    try:
        conn = Connector(channel)
        conn.hello()
        cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization")
        [job] = conn.poll(1, 1.0)
        conn.finish(job.id, job.attempt)
        for bad in (Connector(channel, token="bad-token-value-123"), Connector(channel, OTHER_ID, CONNECTOR_TOKEN)):
            with pytest.raises(grpc.RpcError):
                bad.hello()
    finally:
        configure_logging("info", "console")
    text = stream.getvalue()
    assert "job succeeded" in text and "connector hello" in text
    for secret in (CONNECTOR_TOKEN, ADMIN_TOKEN, "bad-token-value-123"):
        assert secret not in text
