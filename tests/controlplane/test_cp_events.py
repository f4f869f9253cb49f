"""ReportEvents (what a connector did on its own) and Admin.ListEvents, over real gRPC."""

from __future__ import annotations

import io
import json
from pathlib import Path

import grpc
import pytest

from connector.controlplane.cli import main
from connector.controlplane.server import ControlPlaneThread
from connector.logging import configure_logging
from connector.v1 import connector_pb2
from tests.controlplane.cp_helpers import ADMIN_TOKEN, CONNECTOR_ID, OTHER_ID, Connector, rpc_code, rpc_details

pytestmark = pytest.mark.timeout(60)


def event(
    event_id: str, grant_id: str, seconds: int, outcome: int = connector_pb2.OUTCOME_SUCCEEDED
) -> connector_pb2.ConnectorEvent:
    result = connector_pb2.ConnectorEvent(
        id=event_id,
        type="grant.expired_revoked",
        integration_id="eks-1",
        grant_id=grant_id,
        outcome=outcome,  # type: ignore[arg-type]
    )
    result.time.FromSeconds(seconds)
    result.details.update({"cluster": "prod"})
    return result


def report(conn: Connector, *events: connector_pb2.ConnectorEvent) -> int:
    request = connector_pb2.ReportEventsRequest(connector_id=conn.connector_id, host_id=conn.host_id, events=events)
    return int(conn.stub.ReportEvents(request, metadata=conn.metadata, timeout=10).accepted)


def test_events_are_stored_once_and_listed_newest_first(cp: ControlPlaneThread, conn: Connector) -> None:
    first, second = event("e-1", "g-1", 1_800_000_000), event("e-2", "g-2", 1_800_000_100)
    assert report(conn, first, second) == 2
    assert report(conn, first, second) == 0  # a resend is recognised by event id
    listed = cp.admin.events()
    assert [e.id for e in listed] == ["e-2", "e-1"]
    assert listed[1] == first
    assert [e.id for e in cp.admin.events(grant_id="g-1")] == ["e-1"]
    assert cp.admin.events(connector_id=OTHER_ID) == []
    assert cp.admin.events(type="other.type") == []


def test_invalid_events_and_foreign_connector_ids_are_refused(conn: Connector, channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        report(conn, event("e-1", "g-1", 1), connector_pb2.ConnectorEvent(id="e-2"))
    assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT and "events[1]" in rpc_details(excinfo)
    impostor = Connector(channel, connector_id=OTHER_ID)
    with pytest.raises(grpc.RpcError) as excinfo:
        report(impostor, event("e-1", "g-1", 1))
    assert rpc_code(excinfo) == grpc.StatusCode.PERMISSION_DENIED


def test_events_cli(
    cp: ControlPlaneThread, conn: Connector, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = event("e-9", "g-9", 1_800_000_000, connector_pb2.OUTCOME_FAILED)
    failed.error.code, failed.error.message = "ACCESS_DENIED", "eks:DeleteAccessEntry denied"
    report(conn, failed)
    admin = tmp_path / "admin.token"
    admin.write_text(ADMIN_TOKEN)
    admin.chmod(0o600)
    configure_logging("info", "json", stream=io.StringIO())
    common = ["--server", cp.address, "--admin-token-file", str(admin)]
    assert main(["events", "--grant-id", "g-9", *common]) == 0
    out = capsys.readouterr().out
    assert "grant.expired_revoked  FAILED" in out and "ACCESS_DENIED: eks:DeleteAccessEntry denied" in out
    assert main(["events", "--json", "--connector-id", CONNECTOR_ID, *common]) == 0
    assert [e["id"] for e in json.loads(capsys.readouterr().out)] == ["e-9"]
