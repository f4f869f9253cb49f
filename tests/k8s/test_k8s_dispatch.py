"""Kubernetes jobs through the real dispatcher (proto job -> decode -> integration -> fake API server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fake_apiserver import FakeApiServer
from google.protobuf import struct_pb2
from k8s_helpers import ADMIN_ALLOWED, EXPIRES_AT, STAR_RULES, RecordingContext, cluster_role, namespace

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


def grant_job(
    grant_id: str, principal: str, target: struct_pb2.Struct, expires_at: datetime = EXPIRES_AT
) -> pb.GrantJob:
    """A grant that expires within the default policy's 12 h."""
    message = pb.GrantJob(grant_id=grant_id, principal=principal, target=target)
    message.expires_at.FromDatetime(expires_at.astimezone(UTC).replace(tzinfo=None))
    return message


def job(server: FakeApiServer, kind: str, message: Any, type_id: str = "kubernetes", **settings: Any) -> pb.Job:
    integration = pb.Integration(
        id="k8s-1", type=type_id, settings=struct(connection="host", host=server.url, **settings)
    )
    return pb.Job(id=f"job-{kind}", attempt=1, integration=integration, **{kind: message})


def test_grant_sync_revoke_through_the_dispatcher(api: FakeApiServer) -> None:
    dispatcher = Dispatcher(build_registry(), Services(connector_id="c-1"))
    assert {"kubernetes", "eks_aws_auth"} <= set(dispatcher.capabilities())
    target = struct(scope="namespace", namespaces=["dev"], role="view", subject_kind="Group")
    never = pb.GrantJob(grant_id="grant-77", principal="developers", target=target)  # no expiry
    out = dispatcher.execute(job(api, "grant", never, page_size=2.0), RecordingContext())
    assert out.error is not None and out.error.code == "GUARDRAIL_DENIED" and "max_duration" in out.error.message
    assert api.writes() == []
    grant = grant_job("grant-77", "developers", target)
    out = dispatcher.execute(job(api, "grant", grant, page_size=2.0), RecordingContext())
    assert out.outcome == "succeeded", out.error
    assert out.result["bindings"][0]["name"] == "ac-grant-grant-77"
    assert out.effect is not None and out.effect["level"] == "read"
    assert out.effect["cluster"] == f"//{api.url}" and out.effect["kubernetes_groups"] == ["developers"]
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

    grant = grant_job("g", "alice", struct(scope="galaxy", role="view"))
    out = dispatcher.execute(job(api, "grant", grant), RecordingContext())
    assert out.error is not None and out.error.code == "INVALID_JOB" and "target.scope" in out.error.message

    aws_auth = grant_job("g", "arn:aws:iam::111122223333:role/x", struct(groups=["a"]))
    out = dispatcher.execute(job(api, "grant", aws_auth, type_id="eks_aws_auth"), RecordingContext())
    # no kube-system namespace / aws-auth in this fake: a clear precondition failure
    assert out.error is not None and out.error.code == "PRECONDITION_FAILED" and "aws-auth" in out.error.message


def test_a_cluster_admin_level_role_under_another_name_is_refused_by_the_default_policy(api: FakeApiServer) -> None:
    api.seed(cluster_role("view-ish", rules=STAR_RULES))
    target = struct(scope="namespace", namespaces=["dev"], role="view-ish")
    out = Dispatcher(build_registry(), Services(connector_id="c-1")).execute(
        job(api, "grant", grant_job("g-viewish", "alice", target)), RecordingContext()
    )
    assert out.outcome == "failed" and out.error is not None and out.error.code == "GUARDRAIL_DENIED"
    assert "allow_cluster_admin" in out.error.message and out.effect is not None and out.effect["level"] == "admin"
    assert api.writes() == []
    allowed = Dispatcher(build_registry(), Services(connector_id="c-1", guardrails=ADMIN_ALLOWED))
    out = allowed.execute(job(api, "grant", grant_job("g-viewish", "alice", target)), RecordingContext())
    assert out.outcome == "succeeded", out.error
    assert api.names("rolebindings") == [("dev", "ac-grant-g-viewish")]


def test_a_decoy_cluster_in_the_target_is_invalid_and_nothing_is_created(api: FakeApiServer) -> None:
    dispatcher = Dispatcher(build_registry(), Services(connector_id="c-1"))
    target = struct(scope="namespace", namespaces=["dev"], role="view", cluster="sandbox")
    out = dispatcher.execute(job(api, "grant", grant_job("g-decoy", "alice", target)), RecordingContext())
    assert out.error is not None and out.error.code == "INVALID_JOB" and "target.cluster" in out.error.message
    assert not out.error.retryable and api.writes() == []


def test_aws_auth_system_masters_through_the_dispatcher(api: FakeApiServer) -> None:
    api.seed(namespace("kube-system"))
    api.seed(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "aws-auth", "namespace": "kube-system"},
            "data": {"mapRoles": ""},
        }
    )
    masters = grant_job("g-m", "arn:aws:iam::111122223333:role/x", struct(groups=["system:masters"]))
    dispatcher = Dispatcher(build_registry(), Services(connector_id="c-1"))
    out = dispatcher.execute(job(api, "grant", masters, type_id="eks_aws_auth"), RecordingContext())
    assert out.error is not None and out.error.code == "GUARDRAIL_DENIED" and "allow_cluster_admin" in out.error.message
    # the setting that once unlocked system groups is refused, naming it
    unlocked = job(api, "grant", masters, type_id="eks_aws_auth", allow_system_groups=True)
    out = dispatcher.execute(unlocked, RecordingContext())
    assert out.error is not None and out.error.code == "INVALID_SETTINGS" and "allow_system_groups" in out.error.message
    assert api.writes() == []
    allowed = Dispatcher(build_registry(), Services(connector_id="c-1", guardrails=ADMIN_ALLOWED))
    out = allowed.execute(job(api, "grant", masters, type_id="eks_aws_auth"), RecordingContext())
    assert out.outcome == "succeeded", out.error
    stored = api.get("configmaps", "aws-auth", "kube-system")
    assert stored is not None and "system:masters" in stored["data"]["mapRoles"]
