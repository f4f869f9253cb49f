"""The dispatcher turns every malformed job into a typed, non-retryable result and never raises."""

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import struct_pb2

from connector.errors import ErrorCode
from connector.integrations import noop
from connector.integrations.base import JobContext, Services
from connector.integrations.capabilities import Integration, IntegrationSpec, KindSpec
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


def _broken_registry() -> Registry:
    class Broken(Integration):
        type_id = "broken"

    class BrokenSync:
        def __init__(self, integration: Broken) -> None:
            self.integration = integration

        def sync(self, request, ctx):
            raise KeyError("secret-ish detail Bearer abc.def")

    registry = Registry()
    registry.add(IntegrationSpec(Broken, syncer=BrokenSync))
    return registry


def test_bug_in_integration_becomes_internal_error():
    job = pb.Job(id="j1", attempt=1, integration=pb.Integration(id="i1", type="broken"), sync=pb.SyncJob())
    out = Dispatcher(_broken_registry(), Services(connector_id="c1")).execute(job, _ctx())
    assert out.error is not None and out.error.code == ErrorCode.INTERNAL
    assert "abc.def" not in out.error.message


def test_registry_refuses_duplicates():
    registry = Registry()
    registry.add(noop.INTEGRATION)
    with pytest.raises(ValueError, match="twice"):
        registry.add(noop.INTEGRATION)
    registry.add(noop.KIND)
    with pytest.raises(ValueError, match="twice"):
        registry.add(noop.KIND)


class _Grants:
    def __init__(self, integration: Integration) -> None:
        self.integration = integration

    def describe(self, request, ctx):
        raise AssertionError

    def grant(self, request, effect, ctx):
        raise AssertionError

    def revoke(self, request, ctx):
        raise AssertionError


class _GrantsThatExpire(_Grants):
    def expired(self, scan):
        return iter(())


def test_registry_checks_capabilities_at_registration():
    registry = Registry()
    registry.add(noop.INTEGRATION)
    # A kind that changes something but never looks for its expired grants is refused: they would never expire.
    with pytest.raises(ValueError, match="never expire"):
        registry.add(KindSpec("noop", "forgetful", _Grants))
    with pytest.raises(ValueError, match="not a Provisioner"):
        registry.add(KindSpec("noop", "half", _NotAProvisioner))
    with pytest.raises(ValueError, match="not registered"):
        registry.add(KindSpec("mainframe", "x", _GrantsThatExpire))
    with pytest.raises(ValueError, match="not a Syncer"):
        registry.add(IntegrationSpec(_OtherIntegration, syncer=_Grants))
    registry.add(KindSpec("noop", "careful", _GrantsThatExpire))
    assert registry.resource_types("noop") == ["careful"]


class _NotAProvisioner:
    def __init__(self, integration: Integration) -> None: ...

    def grant(self, request, effect, ctx): ...


class _OtherIntegration(Integration):
    type_id = "other"


def test_every_shipped_kind_is_registered_with_its_scanner():
    registry = build_registry()
    kinds = {t: registry.resource_types(t) for t in registry.types()}
    assert kinds == {
        "aws_organization": [
            "ec2_ssm_session",
            "eks_cluster",
            "iam_resource_access",
            "identity_center_assignment",
            "rds_database",
        ],
        "eks_aws_auth": ["aws_auth_mapping"],
        "kubernetes": ["kubernetes_rbac"],
        "lambda_custom": ["lambda_custom"],
        "mysql": ["database"],
        "noop": ["noop"],
        "postgresql": ["database"],
        "redshift": ["database"],
    }


def test_unknown_resource_type_names_the_supported_ones():
    out = _dispatcher().execute(
        _job(grant=pb.GrantJob(grant_id="g", principal="p", target=_target(resource_type="eks_cluster"))), _ctx()
    )
    assert out.error is not None and out.error.code == ErrorCode.INVALID_JOB
    assert "resource_type 'eks_cluster'" in out.error.message and "noop" in out.error.message


@pytest.mark.parametrize(
    ("when", "words"),
    [
        (datetime.now(UTC) - timedelta(minutes=5), "not in the future"),
        (datetime(1969, 7, 20, tzinfo=UTC), "before 1970"),
    ],
)
def test_an_expiry_that_is_not_a_sane_future_time_is_refused(when, words):
    grant = pb.GrantJob(grant_id="g", principal="p", target=_target(sleep_seconds=0))
    grant.expires_at.FromDatetime(when.replace(tzinfo=None))
    out = _dispatcher().execute(_job(grant=grant), _ctx())
    assert out.error is not None and out.error.code == ErrorCode.INVALID_JOB and not out.error.retryable
    assert "grant.expires_at" in out.error.message and words in out.error.message


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


class _Listener:
    def __init__(self) -> None:
        self.offered: list[tuple[str, dict]] = []
        self.confirmed: list[str] = []

    def offer(self, integration: Integration) -> None:
        self.offered.append((integration.integration_id, dict(integration.settings)))

    def confirm(self, integration: Integration) -> None:
        self.confirmed.append(integration.integration_id)


def test_the_expiry_loop_hears_only_of_settings_that_validated_and_worked():
    listener = _Listener()
    d = Dispatcher(build_registry(), Services(connector_id="c1"), listener=listener)

    def org_job(job_id: str, settings: dict, **kind: object) -> pb.Job:
        job = pb.Job(id=job_id, attempt=1, integration=pb.Integration(id="org", type="aws_organization"))
        job.integration.settings.update(settings)
        for name, value in kind.items():
            getattr(job, name).CopyFrom(value)
        return job

    nan = org_job("j-nan", {"region": float("nan")}, sync=pb.SyncJob())
    bad = org_job("j-bad", {"region": "mars-north-9"}, sync=pb.SyncJob())
    for job in (nan, bad):
        out = d.execute(job, _ctx(job.id))
        assert out.error is not None and out.error.code in (ErrorCode.INVALID_JOB, ErrorCode.INVALID_SETTINGS)
    assert listener.offered == []  # the sweeper never sees them

    ok = _job(grant=pb.GrantJob(grant_id="g", principal="p", target=_target(sleep_seconds=0)))
    ok.integration.settings.update({"note": "works"})
    assert d.execute(ok, _ctx()).outcome == "succeeded"
    assert listener.offered == [("i1", {"note": "works"})] and listener.confirmed == ["i1"]
    failing = _job(grant=pb.GrantJob(grant_id="g", principal="p", target=_target(fail_with="ACCESS_DENIED")))
    failing.integration.settings.update({"note": "fails"})
    assert d.execute(failing, _ctx()).outcome == "failed"
    assert listener.offered[-1] == ("i1", {"note": "fails"}) and listener.confirmed == ["i1"]  # offered, unproven
    dry = _job(grant=pb.GrantJob(grant_id="g", principal="p", target=_target(sleep_seconds=0), dry_run=True))
    dry.integration.settings.update({"note": "dry"})
    assert d.execute(dry, _ctx()).outcome == "succeeded"
    assert listener.confirmed == ["i1"]  # a dry run proves nothing about the settings


def test_a_listener_that_fails_never_fails_the_job():
    class Broken:
        def offer(self, integration: Integration) -> None:
            raise OSError("No space left on device")

        def confirm(self, integration: Integration) -> None:
            raise OSError("No space left on device")

    d = Dispatcher(build_registry(["noop"]), Services(connector_id="c1"), listener=Broken())
    out = d.execute(_job(grant=pb.GrantJob(grant_id="g", principal="p", target=_target(sleep_seconds=0))), _ctx())
    assert out.outcome == "succeeded", out.error
