"""OpenTelemetry traces end to end: the agent (the `otel` extra, configured only from OTEL_* variables) runs a
sync of the sandbox organisation and exports to a real OTLP/gRPC receiver: one span for the job and one per
sync scope under it; every log line of the job carries its id, the scope lines from the sync's own threads
included. Without the variables, or without the extra, tracing is off and nothing changes."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from connector import telemetry
from connector.controlplane.server import ControlPlaneThread
from connector.logging import configure_logging
from connector.sandbox import Sandbox, SeedSpec
from connector.v1 import admin_pb2
from tests.agent.agent_harness import CONNECTOR_ID, AgentThread, agent_env, cp_settings
from tests.sandbox_env import sandbox_as_aws

pytestmark = pytest.mark.timeout(120)
SPEC = SeedSpec(accounts=5, regions=("us-east-1",), cluster_accounts=1, identity_center=False)


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self.lock:
            for resource_spans in request.resource_spans:
                service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.spans += [(service, span) for span in scope_spans.spans]
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    servicer = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(None)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with sandbox_as_aws(SPEC) as sb:
        yield sb


def _attrs(span: Any) -> dict[str, Any]:
    out = {}
    for a in span.attributes:
        value = a.value
        out[a.key] = value.string_value or value.int_value or value.bool_value
    return out


def test_a_sync_is_traced_job_and_scopes(sandbox: Sandbox, receiver, monkeypatch, tmp_path: Path) -> None:
    servicer, port = receiver
    for name in ("HTTPS_PROXY", "https_proxy", "grpc_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "connector-under-test")
    logs = io.StringIO()
    configure_logging("info", "json", stream=logs)
    assert telemetry.configure()
    info = sandbox.seed_info
    settings = {
        "management_account_role_arn": info.management_role_arn,
        "external_id": info.external_id,
        "member_role_name": info.member_role_name,
        "regions": ["us-east-1"],
        "resource_types": ["organization", "eks_cluster", "iam_role"],
    }
    try:
        with ControlPlaneThread(cp_settings(tmp_path)) as cp, AgentThread(agent_env(cp.address)):
            record = cp.admin.enqueue_sync(CONNECTOR_ID, "org", "aws_organization", settings)
            done = cp.admin.wait(record.job.id, timeout=60)
            assert done.state == admin_pb2.JOB_STATE_SUCCEEDED, done.error
    finally:
        telemetry.shutdown()  # flushes the batch to the receiver
        configure_logging("info", "console")
    job_id = record.job.id
    jobs = [s for svc, s in servicer.spans if s.name == "job"]
    scopes = [s for svc, s in servicer.spans if s.name == "sync.scope"]
    assert len(jobs) == 1 and _attrs(jobs[0])["job.id"] == job_id and _attrs(jobs[0])["job.outcome"] == "succeeded"
    assert {svc["service.name"] for svc, _ in servicer.spans} == {"connector-under-test"}
    result = json_format.MessageToDict(done.result)
    assert len(scopes) == int(result["scopes"]) > 0
    for scope in scopes:  # each scope is a child of the job's span, in its trace
        assert scope.trace_id == jobs[0].trace_id and scope.parent_span_id == jobs[0].span_id
    failed = [s for s in scopes if "error.code" in _attrs(s)]
    # The member role is missing in one account, and (as StackSets leave it) in the management account.
    assert {_attrs(s)["aws.account.id"] for s in failed} == {
        info.account_without_member_role,
        info.management_account_id,
    }
    # The job id is in every line of the job: also those logged from the sync's own worker threads.
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    scope_lines = [line for line in lines if line["event"] == "sync_scope_failed"]
    assert scope_lines and all(line.get("job_id") == job_id for line in scope_lines), scope_lines


def test_off_without_the_variables_or_the_extra(monkeypatch) -> None:
    assert telemetry.wanted({}) is None
    assert telemetry.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_SDK_DISABLED": "true"}) is None
    assert telemetry.wanted({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert not telemetry.configure({})
    with telemetry.span("job", **{"job.id": "j"}) as current:
        assert current is None
    real = telemetry.importlib.import_module

    def missing(name: str, *args: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args)

    monkeypatch.setattr(telemetry.importlib, "import_module", missing)
    assert not telemetry.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert not telemetry.enabled()
