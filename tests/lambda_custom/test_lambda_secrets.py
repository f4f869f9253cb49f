"""Nothing the customer's function says is repeated: not its status text, errorMessage, errorType, nor any field of
a credentials answer, in an error message, a job result, the Effect or a log line.

Red-team finding: a secret in a Lambda function's `status` text reached the error message, the logs and the
control plane's SQLite (which stores the job's error and result as the agent reports them: the JobOutcome
checked here). Every case runs a real proto Job through the Dispatcher (which also writes the audit line) to a
handler that answers over HTTP, with every structlog line captured."""

from __future__ import annotations

import io
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from nacl.public import PrivateKey

from connector.jobs.dispatcher import JobOutcome
from connector.sandbox import LambdaContext, Sandbox
from connector.sealing import open_sealed
from connector.v1 import connector_pb2 as pb
from tests.lambda_custom.helpers import (
    INTEGRATION_ID,
    TARGET,
    dispatcher,
    grant_job,
    revoke_job,
    run,
    settings,
    struct,
)

pytestmark = pytest.mark.timeout(120)

SECRET = "Pl4nted-lambda-secret-91c2e"
SECRET_ID = "Pl4ntedLambdaSecret91c2e"  # looks like a class name: what an errorType check would let through
SecretClass = type(SECRET_ID, (Exception,), {})
_ids = itertools.count(1)


def answers(**by_event: Any) -> Callable[[Any, LambdaContext], Any]:
    """A handler: per event type, a value to answer or an exception to raise; ok otherwise."""

    def handler(event: Any, context: LambdaContext) -> Any:
        what = by_event.get(event["event_type"].replace("-", "_"), {"status": "ok"})
        if isinstance(what, BaseException):
            raise what
        return what

    return handler


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    # job kind, handler behaviour
    "status-text": ("grant", {"grant_access": {"status": SECRET}}),
    "status-error-with-detail": ("grant", {"grant_access": {"status": "error", "detail": SECRET}}),
    "error-message": ("grant", {"grant_access": RuntimeError(f"db url postgres://admin:{SECRET}@db")}),
    "error-type": ("grant", {"grant_access": SecretClass("boom")}),
    "error-message-says-timed-out": ("grant", {"grant_access": RuntimeError(f"Task timed out {SECRET}")}),
    "refused-create-with-a-password": ("create", {"create_credentials": {"status": "denied", "password": SECRET}}),
    "create-without-status": ("create", {"create_credentials": {"password": SECRET}}),
    "create-answers-a-list": ("create", {"create_credentials": [SECRET]}),
    "create-answers-a-string": ("create", {"create_credentials": SECRET}),
    "create-raises-with-the-secret": ("create", {"create_credentials": SecretClass(SECRET)}),
    "reset-status-is-the-secret": ("reset", {"reset_credentials": {"status": SECRET, "password": SECRET}}),
    "rollback-fails-with-the-secret": (
        "create",
        {"create_credentials": RuntimeError(SECRET), "revoke_access": {"status": SECRET}},
    ),
    "revoke-raises": ("revoke", {"revoke_access": SecretClass(SECRET)}),
    "revoke-status": ("revoke", {"revoke_access": {"status": SECRET}}),
    "sync-raises": ("sync", {"list_resources": SecretClass(SECRET)}),
    "sync-bad-item": ("sync", {"list_resources": {"resources": [{"id": 7, "name": SECRET}]}}),
    "sync-bad-shape": ("sync", {"list_resources": {"resources": SECRET}}),
}


def sync_job() -> pb.Job:
    j = pb.Job(
        id=f"sync-{next(_ids)}",
        attempt=1,
        integration=pb.Integration(id=INTEGRATION_ID, type="lambda_custom", settings=struct(settings())),
    )
    j.sync.CopyFrom(pb.SyncJob())
    return j


def job_for(kind: str, key: bytes) -> pb.Job:
    grant_id = f"g-secret-{next(_ids)}"
    if kind == "revoke":
        return revoke_job(grant_id, "alice", TARGET)
    if kind == "sync":
        return sync_job()
    target = TARGET if kind == "grant" else {**TARGET, "credentials": kind}
    return grant_job(grant_id, "alice", target, public_key=key)


def everything_said(out: JobOutcome, stream: io.StringIO, caplog: pytest.LogCaptureFixture) -> list[str]:
    texts = [json.dumps(out.result, default=str), json.dumps(out.effect, default=str), stream.getvalue(), caplog.text]
    if out.error is not None:
        texts += [str(out.error), out.error.message, repr(out.error)]
    return texts


@pytest.mark.parametrize("case", sorted(CASES))
def test_nothing_the_function_says_is_repeated(
    sb: Sandbox, case: str, log_stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kind, behaviour = CASES[case]
    sb.lambdas.register("access-fn", answers(**behaviour))
    out = run(dispatcher(), job_for(kind, bytes(PrivateKey.generate().public_key)))
    assert out.outcome == "failed" and out.error is not None
    assert sb.lambdas.invocations("access-fn"), "the function was invoked"
    assert "access-fn" in out.error.message  # the failure still names the function
    for text in everything_said(out, log_stream, caplog):
        assert SECRET not in text and SECRET_ID not in text
    if kind != "sync":
        assert '"audit"' in log_stream.getvalue()  # the audit line was written (and checked) too


def test_a_credential_that_worked_leaves_only_sealed(
    sb: Sandbox, log_stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sb.lambdas.register("access-fn", answers(create_credentials={"status": "ok", "token": SECRET}))
    requester = PrivateKey.generate()
    out = run(dispatcher(), job_for("create", bytes(requester.public_key)))
    assert out.outcome == "succeeded", out.error
    assert open_sealed(bytes(requester), out.result["credentials"]) == {"token": SECRET}
    for text in everything_said(out, log_stream, caplog):
        assert SECRET not in text
