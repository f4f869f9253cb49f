"""The dispatcher turns every malformed job into a typed, non-retryable result and never raises."""

from google.protobuf import struct_pb2

from connector.errors import ErrorCode
from connector.integrations.base import JobContext, Services
from connector.jobs.dispatcher import Dispatcher
from connector.jobs.registry import Registry, build_registry
from connector.v1 import connector_pb2 as pb


def _ctx(job_id="j1"):
    return JobContext(job_id=job_id, attempt=1, connector_id="c1", integration_id="i1")


def _dispatcher():
    return Dispatcher(build_registry(["noop"]), Services(connector_id="c1"))


def _job(**kwargs):
    job = pb.Job(id="j1", attempt=1, integration=pb.Integration(id="i1", type="noop"))
    for k, v in kwargs.items():
        getattr(job, k).CopyFrom(v)
    return job


def _target(**values):
    s = struct_pb2.Struct()
    s.update(values)
    return s


def test_success_and_result():
    out = _dispatcher().execute(
        _job(grant=pb.GrantJob(grant_id="g1", principal="p", target=_target(sleep_seconds=0))), _ctx()
    )
    assert out.outcome == "succeeded", out.error
    assert out.result["grant_id"] == "g1"
    assert out.kind == "grant"


def test_malformed_jobs_are_typed_non_retryable():
    d = _dispatcher()
    cases = [
        pb.Job(id="j1", attempt=1, integration=pb.Integration(id="i1", type="noop")),  # no kind
        pb.Job(id="", attempt=1, sync=pb.SyncJob()),  # no id
        pb.Job(id="j1", attempt=1, sync=pb.SyncJob()),  # no integration
        _job(grant=pb.GrantJob(grant_id="", principal="p")),  # no grant id
        _job(grant=pb.GrantJob(grant_id="g", principal="p", target=_target(sleep_seconds=-1))),
        _job(grant=pb.GrantJob(grant_id="g", principal="p", target=_target(sleep_seconds="soon"))),
        _job(revoke=pb.RevokeJob(grant_id="g", principal="x" * 10_000)),
    ]
    for job in cases:
        out = d.execute(job, _ctx())
        assert out.outcome == "failed"
        assert out.error is not None
        assert out.error.code == ErrorCode.INVALID_JOB, (job, out.error)
        assert not out.error.retryable


def test_unknown_integration_type_is_unsupported():
    job = pb.Job(id="j1", attempt=1, integration=pb.Integration(id="i1", type="mainframe"), sync=pb.SyncJob())
    out = _dispatcher().execute(job, _ctx())
    assert out.error is not None and out.error.code == ErrorCode.UNSUPPORTED and not out.error.retryable
    assert "noop" in out.error.message


def test_requested_failure_keeps_code_and_retryability():
    job = _job(grant=pb.GrantJob(grant_id="g", principal="p", target=_target(fail_with="THROTTLED")))
    out = _dispatcher().execute(job, _ctx())
    assert out.error is not None and out.error.code == ErrorCode.THROTTLED and out.error.retryable


def test_cancelled_context():
    ctx = _ctx()
    ctx.cancelled.set()
    out = _dispatcher().execute(
        _job(grant=pb.GrantJob(grant_id="g", principal="p", target=_target(sleep_seconds=5))), ctx
    )
    assert out.outcome == "cancelled"


def test_bug_in_integration_becomes_internal_error():
    from connector.integrations.base import Integration

    class Broken(Integration):
        type_id = "broken"

        def sync(self, request, ctx):
            raise KeyError("secret-ish detail Bearer abc.def")

    registry = Registry()
    registry.register(Broken)
    job = pb.Job(id="j1", attempt=1, integration=pb.Integration(id="i1", type="broken"), sync=pb.SyncJob())
    out = Dispatcher(registry, Services(connector_id="c1")).execute(job, _ctx())
    assert out.error is not None and out.error.code == ErrorCode.INTERNAL
    assert "abc.def" not in out.error.message


def test_registry_refuses_duplicates():
    from connector.integrations.noop import NoopIntegration

    registry = Registry()
    registry.register(NoopIntegration)
    try:
        registry.register(NoopIntegration)
    except ValueError as exc:
        assert "twice" in str(exc)
    else:
        raise AssertionError("duplicate registration accepted")


def test_an_html_404_from_an_endpoint_is_not_found_not_internal():
    from botocore.exceptions import ClientError

    from connector.aws.errors import classify_aws_error

    html = {
        "Error": {"Code": "404", "Message": "<!doctype html><title>404 Not Found</title>"},
        "ResponseMetadata": {"HTTPStatusCode": 404},
    }
    mapped = classify_aws_error(ClientError(html, "DescribeCluster"))
    assert mapped is not None and mapped.code == ErrorCode.NOT_FOUND and not mapped.retryable
    assert "region" in mapped.message
