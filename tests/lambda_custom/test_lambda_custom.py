"""The Lambda custom integration against the sandbox: real botocore over HTTP to functions whose behaviour is a
registered Python handler (CredentialsFunction, the seed's contract with real state, or a small handler)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from nacl.public import PrivateKey

from connector.errors import ConnectorError, ErrorCode, InvalidJob, InvalidSettings
from connector.integrations.base import GrantRequest, RevokeRequest, SyncRequest
from connector.jobs.registry import build_registry
from connector.sandbox import CredentialsFunction, LambdaContext, Sandbox
from connector.sealing import open_sealed
from tests.lambda_custom.helpers import (
    CUSTOM,
    TARGET,
    Ctx,
    dispatcher,
    events,
    grant,
    grant_job,
    integration,
    kind_of,
    parameter,
    records,
    revoke_job,
    run,
)

pytestmark = pytest.mark.timeout(120)


def invokes(sb: Sandbox) -> int:
    return sb.faults.calls("lambda", "Invoke")


def test_list_resources_feeds_the_inventory(sb: Sandbox) -> None:
    sb.lambdas.register("access-fn", CredentialsFunction())
    it = integration(resource_type="app")
    syncer = build_registry(["lambda_custom"]).syncer(it)
    assert syncer is not None
    ctx = Ctx()
    result = syncer.sync(SyncRequest(), ctx)
    assert result["items"] == {"lambda.permission": 2, "lambda.resource": 3}
    resources = [i for i in ctx.items if i.type == "lambda.resource"]
    assert [(i.id, i.name) for i in resources] == [
        ("resource1", "Resource 1"),
        ("resource2", "Resource 2"),
        ("resource3", "Resource 3"),
    ]
    assert resources[0].attributes == {"resource_type": "app", "metadata": {"key1": "value1"}}
    assert resources[0].parent_id.endswith(":function:access-fn")
    assert {i.id for i in ctx.items if i.type == "lambda.permission"} == {"admin", "reader"}
    [call] = sb.lambdas.invocations("access-fn")
    assert call.event == {
        "event_type": "list-resources",
        "params": {"resource_type": "app", "custom_parameters": CUSTOM},
    }


def test_the_events_carry_the_seed_params(sb: Sandbox) -> None:
    # What the customer's handler receives, exactly, for grant-access, create-credentials and revoke-access.
    sb.lambdas.register("access-fn", CredentialsFunction())
    requester = PrivateKey.generate()
    kind = kind_of(integration())
    target = {**TARGET, "credentials": "create"}
    request = GrantRequest("grant-9", "alice@example.com", target, requester_public_key=bytes(requester.public_key))
    grant(kind, request)
    kind.revoke(RevokeRequest("grant-9", "alice@example.com", TARGET), Ctx())
    params = {
        "username": "alice@example.com",
        "grant_id": "grant-9",
        "resources": ["resource1", "resource2"],
        "permission": "reader",
        "custom_parameters": CUSTOM,
    }
    without_permission = {k: v for k, v in params.items() if k != "permission"}
    assert [i.event for i in sb.lambdas.invocations("access-fn")] == [
        {"event_type": "grant-access", "params": params},
        {"event_type": "create-credentials", "params": without_permission},
        {"event_type": "revoke-access", "params": params},
    ]


def test_grant_and_revoke_through_the_dispatcher(sb: Sandbox) -> None:
    fn = CredentialsFunction()
    sb.lambdas.register("access-fn", fn)
    d = dispatcher()
    out = run(d, grant_job("g1", "alice", TARGET))
    assert out.outcome == "succeeded", out.error
    assert out.result["status"] == "ok" and "credentials" not in out.result
    assert out.result["effect"]["level"] == "custom" and out.result["effect"]["permission"] == "reader"
    assert fn.grants()["alice"].resources == ("resource1", "resource2")
    assert parameter(sb, records(sb).name("g1")) is not None  # the ledger record beside the function
    out = run(d, revoke_job("g1", "alice", TARGET))
    assert out.outcome == "succeeded", out.error
    assert fn.grants() == {} and parameter(sb, records(sb).name("g1")) is None
    assert events(sb) == ["grant-access", "revoke-access"]
    # revoking again is success (idempotent), and calls the function's idempotent revoke-access again
    assert run(d, revoke_job("g1", "alice", TARGET)).outcome == "succeeded"


def test_the_default_policy_refuses_a_grant_that_never_expires(sb: Sandbox) -> None:
    sb.lambdas.register("access-fn", CredentialsFunction())
    out = run(dispatcher(), grant_job("g-forever", "alice", TARGET, expires_at=None))
    assert out.outcome == "failed" and out.error is not None and out.error.code == ErrorCode.GUARDRAIL_DENIED
    assert invokes(sb) == 0 and parameter(sb, records(sb).name("g-forever")) is None


def test_an_untagged_function_is_refused_and_never_invoked(sb: Sandbox) -> None:
    sb.lambdas.register("other-fn", CredentialsFunction())
    out = run(dispatcher(), grant_job("g", "alice", TARGET, function="other-fn"))
    assert out.error is not None and out.error.code == ErrorCode.PRECONDITION_FAILED
    assert 'not tagged apono-connector-access: "true"' in out.error.message
    with pytest.raises(ConnectorError) as info:
        kind_of(integration("other-fn")).revoke(RevokeRequest("g", "alice", TARGET), Ctx())
    assert info.value.code == ErrorCode.PRECONDITION_FAILED
    assert invokes(sb) == 0 and sb.lambdas.invocations("other-fn") == []


def test_bad_answers_become_clear_errors(sb: Sandbox) -> None:
    answers: list[Any] = [{"status": "denied"}, {"resources": [{"name": "no id"}]}, ["not", "an", "object"]]
    sb.lambdas.register("access-fn", lambda event, context: answers.pop(0))
    kind = kind_of(integration())
    with pytest.raises(ConnectorError) as info:
        grant(kind, GrantRequest("g", "alice", TARGET))
    assert "grant-access" in info.value.message and "status other than 'ok' (6 characters" in info.value.message
    assert not info.value.retryable
    syncer = build_registry(["lambda_custom"]).syncer(integration())
    assert syncer is not None
    with pytest.raises(ConnectorError) as info:
        syncer.sync(SyncRequest(), Ctx())
    assert "access-fn answered resources item 1 with no string id" in info.value.message
    with pytest.raises(ConnectorError) as info:
        kind.revoke(RevokeRequest("g", "alice", TARGET), Ctx())
    assert "answered with a JSON list" in info.value.message


def test_credentials_are_sealed_to_the_requester(sb: Sandbox) -> None:
    fn = CredentialsFunction()
    sb.lambdas.register("access-fn", fn)
    requester = PrivateKey.generate()
    target = {**TARGET, "credentials": "create"}
    out = run(dispatcher(), grant_job("g-cred", "alice", target, public_key=bytes(requester.public_key)))
    assert out.outcome == "succeeded", out.error
    assert out.result["credentials_event"] == "create-credentials" and "credentials_note" not in out.result
    opened = open_sealed(bytes(requester), out.result["credentials"])
    assert opened["username"] == "alice" and fn.check("alice", opened["password"])
    assert opened["password"] not in repr(out.result)  # only sealed
    # the requester asks for a reset later: reset-credentials, the old one stops working
    reset = {**TARGET, "credentials": "reset"}
    out = run(dispatcher(), grant_job("g-cred", "alice", reset, public_key=bytes(requester.public_key)))
    again = open_sealed(bytes(requester), out.result["credentials"])
    assert out.result["credentials_event"] == "reset-credentials"
    assert fn.live_credentials("alice") == [again["password"]] and fn.orphans() == {}


def test_a_failing_reset_takes_the_access_back(sb: Sandbox) -> None:
    fn = CredentialsFunction()
    sb.lambdas.register("access-fn", fn)
    fn.inject("reset-credentials", raises="directory unavailable")
    requester = PrivateKey.generate()
    target = {**TARGET, "credentials": "reset"}
    out = run(dispatcher(), grant_job("g-reset", "alice", target, public_key=bytes(requester.public_key)))
    assert out.error is not None and out.error.code == ErrorCode.INTERNAL and not out.error.retryable
    assert "reset-credentials" in out.error.message and "RuntimeError" in out.error.message
    # grant-access, reset-credentials, then revoke-access: no access left behind without credentials
    assert events(sb) == ["grant-access", "reset-credentials", "revoke-access"]
    assert fn.grants() == {} and fn.orphans() == {}


def test_no_requester_key_no_credentials_and_no_call(sb: Sandbox) -> None:
    out = run(dispatcher(), grant_job("g-nokey", "alice", {**TARGET, "credentials": "create"}))
    assert out.error is not None and out.error.code == ErrorCode.INVALID_JOB
    assert "requester_public_key" in out.error.message
    assert invokes(sb) == 0 and parameter(sb, records(sb).name("g-nokey")) is None


def test_a_function_that_does_not_answer_in_time(sb: Sandbox) -> None:
    sb.lambdas.register("access-fn", CredentialsFunction())
    sb.faults.hang(8, service="lambda", operation="Invoke")  # > timeout_seconds + 5 s margin
    with pytest.raises(ConnectorError) as info:
        kind_of(integration(timeout_seconds=1)).revoke(RevokeRequest("g", "alice", TARGET), Ctx())
    assert info.value.code == ErrorCode.TIMEOUT and info.value.retryable
    assert "within 1 s" in info.value.message and invokes(sb) == 1  # not retried by botocore


def test_function_errors_are_clear_errors(sb: Sandbox) -> None:
    # Real FunctionError answers over HTTP: an exception the handler raises, and Lambda's own time-out.
    def handler(event: Any, context: LambdaContext) -> Any:
        if event["event_type"] == "grant-access":
            raise LookupError("no such user alice")
        if event["event_type"] == "revoke-access":
            raise type("UserMissing", (Exception,), {})("no such user alice")
        time.sleep(context.get_remaining_time_in_millis() / 1000 + 0.5)  # past the function's Timeout (2 s)
        return {"status": "ok"}

    sb.lambdas.register("quick-fn", handler)
    kind = kind_of(integration("quick-fn"))
    with pytest.raises(ConnectorError) as info:
        grant(kind, GrantRequest("g", "alice", TARGET))
    assert info.value.code == ErrorCode.INTERNAL and not info.value.retryable
    assert "grant-access" in info.value.message and "Unhandled, error LookupError" in info.value.message
    assert "no such user" not in info.value.message  # the function's words are never repeated
    with pytest.raises(ConnectorError) as info:
        kind.revoke(RevokeRequest("g", "alice", TARGET), Ctx())
    assert "error of the function's own type" in info.value.message and "UserMissing" not in info.value.message
    with pytest.raises(ConnectorError) as info:
        syncer = build_registry(["lambda_custom"]).syncer(integration("quick-fn"))
        assert syncer is not None
        syncer.sync(SyncRequest(), Ctx())
    assert info.value.code == ErrorCode.TIMEOUT and info.value.retryable
    assert "Sandbox.Timedout" in info.value.message


def test_settings_and_targets_are_validated(sb: Sandbox) -> None:
    for extra, name in (
        ({"function_name": "bad name!"}, "function_name"),
        ({"region": "moon"}, "region"),
        ({"custom_parameters": ["a"]}, "custom_parameters"),
        ({"timeout_seconds": 5000}, "timeout_seconds"),
        ({"timeout_seconds": True}, "timeout_seconds"),
    ):
        with pytest.raises(InvalidSettings) as info:
            integration(**extra)
        assert info.value.setting == name
    kind = kind_of(integration())
    for target, fragment in (
        ({"permission": "reader"}, "target.resources"),
        ({"resources": ["r"]}, "target.permission"),
        ({"resources": [f"r{i}" for i in range(101)], "permission": "p"}, "at most 100"),
        ({**TARGET, "credentials": "steal"}, "target.credentials"),
        ({**TARGET, "role_arn": "arn:aws:iam::1:role/x"}, "target.role_arn: unknown field"),
    ):
        with pytest.raises(InvalidJob) as err:
            grant(kind, GrantRequest("g", "alice", target))
        assert fragment in err.value.message
    assert invokes(sb) == 0


def test_a_revoke_carrying_the_grant_target_revokes(sb: Sandbox) -> None:
    # A revoke job often repeats the grant's target, credentials field included: it must never be refused for it.
    fn = CredentialsFunction()
    sb.lambdas.register("access-fn", fn)
    key = bytes(PrivateKey.generate().public_key)
    target = {**TARGET, "credentials": "create"}
    assert run(dispatcher(), grant_job("g-same", "alice", target, public_key=key)).outcome == "succeeded"
    out = run(dispatcher(), revoke_job("g-same", "alice", target))
    assert out.outcome == "succeeded", out.error
    assert fn.grants() == {} and fn.live_credentials("alice") == []
    assert events(sb) == ["grant-access", "create-credentials", "revoke-access"]


def test_dry_run_invokes_and_writes_nothing(sb: Sandbox) -> None:
    sb.lambdas.register("access-fn", CredentialsFunction())
    kind = kind_of(integration())
    out = grant(
        kind,
        GrantRequest(
            "g-dry",
            "alice",
            {**TARGET, "credentials": "reset"},
            dry_run=True,
            requester_public_key=bytes(PrivateKey.generate().public_key),
        ),
    )
    assert [c["event"]["event_type"] for c in out["calls"]] == ["grant-access", "reset-credentials"]
    out = kind.revoke(RevokeRequest("g-dry", "alice", TARGET, dry_run=True), Ctx())
    assert out["calls"][0]["event"]["event_type"] == "revoke-access"
    assert invokes(sb) == 0 and sb.faults.calls("ssm", "PutParameter") == 0
    assert sb.faults.calls("ssm", "DeleteParameter") == 0
