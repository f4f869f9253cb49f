"""Kubernetes jobs through the real dispatcher (proto job -> decode -> integration -> fake API server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_apiserver import FakeApiServer
from google.protobuf import struct_pb2
from k8s_helpers import RecordingContext, cluster_role, namespace

from connector.integrations.base import Services
from connector.jobs.dispatcher import Dispatcher
from connector.jobs.registry import build_registry
from connector.v1 import connector_pb2 as pb

pytestmark = pytest.mark.timeout(120)


def struct(**values: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        server.seed(namespace("dev"))
        server.seed(cluster_role("view"))
        yield server


def job(server: FakeApiServer, kind: str, message: Any, type_id: str = "kubernetes", **settings: Any) -> pb.Job:
    integration = pb.Integration(
        id="k8s-1", type=type_id, settings=struct(connection="host", host=server.url, **settings)
    )
    return pb.Job(id=f"job-{kind}", attempt=1, integration=integration, **{kind: message})


def test_grant_sync_revoke_through_the_dispatcher(api: FakeApiServer) -> None:
    dispatcher = Dispatcher(build_registry(), Services(connector_id="c-1"))
    assert {"kubernetes", "eks_aws_auth"} <= set(dispatcher.capabilities())
    target = struct(scope="namespace", namespaces=["dev"], role="view", subject_kind="Group")
    grant = pb.GrantJob(grant_id="grant-77", principal="developers", target=target)
    out = dispatcher.execute(job(api, "grant", grant, page_size=2.0), RecordingContext())
    assert out.outcome == "succeeded", out.error
    assert out.result["bindings"][0]["name"] == "ac-grant-grant-77"
    struct().update(out.result)  # the result fits in a protobuf Struct (what FinishJob carries)

    ctx = RecordingContext()
    out = dispatcher.execute(job(api, "sync", pb.SyncJob(), page_size=2.0), ctx)
    assert out.outcome == "succeeded", out.error
    assert any(i.type == "k8s.binding" and i.attributes["grant_id"] == "grant-77" for i in ctx.items)

    out = dispatcher.execute(
        job(api, "revoke", pb.RevokeJob(grant_id="grant-77", principal="developers", target=target)),
        RecordingContext(),
    )
    assert out.outcome == "succeeded", out.error
    assert api.names("rolebindings") == []


def test_bad_settings_and_targets_become_typed_non_retryable_results(api: FakeApiServer) -> None:
    dispatcher = Dispatcher(build_registry(), Services(connector_id="c-1"))
    bad_host = job(api, "sync", pb.SyncJob())
    bad_host.integration.settings.update({"host": "http://example.com"})
    out = dispatcher.execute(bad_host, RecordingContext())
    assert out.outcome == "failed" and out.error is not None
    assert out.error.code == "INVALID_SETTINGS" and "'host'" in out.error.message and not out.error.retryable

    grant = pb.GrantJob(grant_id="g", principal="alice", target=struct(scope="galaxy", role="view"))
    out = dispatcher.execute(job(api, "grant", grant), RecordingContext())
    assert out.error is not None and out.error.code == "INVALID_JOB" and "target.scope" in out.error.message

    aws_auth = pb.GrantJob(grant_id="g", principal="arn:aws:iam::111122223333:role/x", target=struct(groups=["a"]))
    out = dispatcher.execute(job(api, "grant", aws_auth, type_id="eks_aws_auth"), RecordingContext())
    # no kube-system namespace / aws-auth in this fake: a clear precondition failure
    assert out.error is not None and out.error.code == "PRECONDITION_FAILED" and "aws-auth" in out.error.message
