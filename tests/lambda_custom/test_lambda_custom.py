"""The Lambda custom integration against the sandbox: real botocore over HTTP to moto's Lambda ("simple"
backend, answers queued with POST /moto-api/static/lambda-simple/response)."""

from __future__ import annotations

import io
import json
import logging
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber
from nacl.public import PrivateKey

from connector.errors import ConnectorError, ErrorCode, InvalidJob, InvalidSettings
from connector.integrations.base import GrantRequest, InventoryItem, JobContext, RevokeRequest, Services, SyncRequest
from connector.integrations.lambda_custom import LambdaCustomIntegration
from connector.logging import configure_logging
from connector.sandbox import Sandbox
from connector.sealing import open_sealed

pytestmark = pytest.mark.timeout(120)

REGION = "eu-west-1"
ACCOUNT = "123456789012"
PLANTED = "Pl4nted-lambda-secret-91c2e"
TARGET = {"resources": ["resource1", "resource2"], "permission": "reader"}
# The seed's sample handler answers for list-resources:
LIST_RESOURCES = {
    "resources": [
        {"id": f"resource{i}", "name": f"Resource {i}", "type": "app", "metadata": {f"key{i}": f"value{i}"}}
        for i in (1, 2, 3)
    ],
    "permissions": [{"id": "admin", "name": "Admin"}, {"id": "reader", "name": "Reader"}],
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox.start() as sb:
        iam = sb.client("iam", REGION)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        role = iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        fn = sb.client("lambda", REGION)
        for name, tags in (("access-fn", {"apono-connector-access": "true"}), ("other-fn", {"team": "x"})):
            fn.create_function(
                FunctionName=name,
                Runtime="nodejs20.x",
                Role=role,
                Handler="index.handler",
                Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
                Tags=tags,
            )
        yield sb


@pytest.fixture
def sb(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    for key, value in sandbox.env(REGION).items():
        monkeypatch.setenv(key, value)
    sandbox.faults.clear()
    sandbox.faults.reset_counts()
    return sandbox


def answer_with(sb: Sandbox, *results: Any) -> None:
    """Queue what the next Invoke calls answer (in order)."""
    body = json.dumps({"account_id": ACCOUNT, "region": REGION, "results": [json.dumps(r) for r in results]})
    request = urllib.request.Request(
        f"{sb.endpoint}/moto-api/static/lambda-simple/response", data=body.encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201


def integration(function: str = "access-fn", **settings: Any) -> LambdaCustomIntegration:
    base = {"function_name": function, "region": REGION, "custom_parameters": {"param1": "a", "param2": "b"}}
    return LambdaCustomIntegration("lambda-1", {**base, **settings}, Services(connector_id="c-1"))


class Ctx(JobContext):
    def __init__(self) -> None:
        super().__init__(job_id="j", attempt=1, connector_id="c-1", integration_id="lambda-1")
        self.items: list[InventoryItem] = []
        self.emit = self.items.append


def invokes(sb: Sandbox) -> int:
    return sb.faults.calls("lambda", "Invoke")


def test_list_resources_feeds_the_inventory(sb: Sandbox) -> None:
    answer_with(sb, LIST_RESOURCES)
    ctx = Ctx()
    result = integration(resource_type="app").sync(SyncRequest(), ctx)
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


def test_the_event_carries_the_seed_params(sb: Sandbox) -> None:
    # With nothing queued the simple backend echoes the event: exactly what the customer's handler receives.
    k = integration()
    arn = k._checked_function()
    params = k._params("alice@example.com", "grant-9", TARGET, permission=True)
    event = k._invoke(arn, "grant-access", params)
    assert event == {
        "event_type": "grant-access",
        "params": {
            "username": "alice@example.com",
            "grant_id": "grant-9",
            "resources": ["resource1", "resource2"],
            "permission": "reader",
            "custom_parameters": {"param1": "a", "param2": "b"},
        },
    }


def test_grant_and_revoke(sb: Sandbox) -> None:
    answer_with(sb, {"status": "ok"}, {"status": "ok"})
    k = integration()
    out = k.grant(GrantRequest(grant_id="g1", principal="alice", target=TARGET), Ctx())
    assert out["status"] == "ok" and "credentials" not in out
    assert k.revoke(RevokeRequest(grant_id="g1", principal="alice", target=TARGET), Ctx())["status"] == "ok"
    assert invokes(sb) == 2


def test_an_untagged_function_is_refused_and_never_invoked(sb: Sandbox) -> None:
    with pytest.raises(ConnectorError) as info:
        integration("other-fn").grant(GrantRequest(grant_id="g", principal="alice", target=TARGET), Ctx())
    assert info.value.code == ErrorCode.PRECONDITION_FAILED
    assert 'not tagged apono-connector-access: "true"' in info.value.message
    assert invokes(sb) == 0


def test_bad_answers_become_clear_errors(sb: Sandbox) -> None:
    answer_with(sb, {"status": "denied"}, {"resources": [{"name": "no id"}]}, ["not", "an", "object"])
    with pytest.raises(ConnectorError) as info:
        integration().grant(GrantRequest(grant_id="g", principal="alice", target=TARGET), Ctx())
    assert "answered status 'denied'" in info.value.message and not info.value.retryable
    with pytest.raises(ConnectorError) as info:
        integration().sync(SyncRequest(), Ctx())
    assert "resources item 1 has no string id" in info.value.message
    with pytest.raises(ConnectorError) as info:
        integration().revoke(RevokeRequest(grant_id="g", principal="alice", target=TARGET), Ctx())
    assert "answered with a JSON list" in info.value.message


def test_credentials_are_sealed_to_the_requester(sb: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    caplog.set_level(logging.DEBUG)
    requester = PrivateKey.generate()
    answer_with(sb, {"status": "ok"}, {"status": "ok", "secret": PLANTED})
    request = GrantRequest(
        grant_id="g-cred",
        principal="alice",
        target={**TARGET, "credentials": "create"},
        requester_public_key=bytes(requester.public_key),
    )
    result = integration().grant(request, Ctx())
    assert result["credentials_event"] == "create-credentials"
    assert open_sealed(bytes(requester), result["credentials"]) == {"secret": PLANTED}
    # a failing reset whose error text echoes the secret: the message names only the error type
    before = invokes(sb)
    answer_with(
        sb, {"status": "ok"}, {"errorMessage": f"could not reset {PLANTED}", "errorType": "Error"}, {"status": "ok"}
    )
    reset = GrantRequest(
        grant_id="g-cred",
        principal="alice",
        target={**TARGET, "credentials": "reset"},
        requester_public_key=bytes(requester.public_key),
    )
    with pytest.raises(ConnectorError) as info:
        integration().grant(reset, Ctx())
    assert "reset-credentials" in info.value.message and "Error" in info.value.message
    # grant-access, reset-credentials, then revoke-access: no access left behind without credentials
    assert invokes(sb) - before == 3
    for text in (json.dumps(result), str(info.value), stream.getvalue(), caplog.text):
        assert PLANTED not in text


def test_no_requester_key_no_credentials_and_no_call(sb: Sandbox) -> None:
    request = GrantRequest(grant_id="g", principal="alice", target={**TARGET, "credentials": "create"})
    with pytest.raises(ConnectorError) as info:
        integration().grant(request, Ctx())
    assert info.value.code == ErrorCode.INVALID_JOB and "requester_public_key" in info.value.message
    assert invokes(sb) == 0


def test_a_function_that_does_not_answer_in_time(sb: Sandbox) -> None:
    sb.faults.hang(8, service="lambda", operation="Invoke")  # > timeout_seconds + 5 s margin
    with pytest.raises(ConnectorError) as info:
        integration(timeout_seconds=1).revoke(RevokeRequest(grant_id="g", principal="alice", target=TARGET), Ctx())
    assert info.value.code == ErrorCode.TIMEOUT and info.value.retryable
    assert "within 1 s" in info.value.message and invokes(sb) == 1  # not retried by botocore


def test_function_error_header_is_a_clear_error(sb: Sandbox) -> None:
    # moto's simple backend never sets X-Amz-Function-Error; botocore's Stubber supplies that one answer.
    k = integration()
    arn = k._checked_function()
    client = k._invoker()
    with Stubber(client) as stub:
        payload = json.dumps({"errorMessage": "Task timed out after 3.00 seconds", "errorType": "Sandbox.Timedout"})
        stub.add_response(
            "invoke", {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(payload.encode())}
        )
        stub.add_response(
            "invoke",
            {
                "StatusCode": 200,
                "FunctionError": "Handled",
                "Payload": io.BytesIO(b'{"errorMessage": "no such user", "errorType": "UserError"}'),
            },
        )
        with pytest.raises(ConnectorError) as info:
            k._invoke(arn, "grant-access", {})
        assert info.value.code == ErrorCode.TIMEOUT and "Task timed out" in info.value.message
        with pytest.raises(ConnectorError) as info:
            k._invoke(arn, "revoke-access", {})
        assert info.value.code == ErrorCode.INTERNAL and "UserError" in info.value.message
        assert "no such user" in info.value.message and not info.value.retryable


def test_settings_and_targets_are_validated(sb: Sandbox) -> None:
    for settings, name in (
        ({"function_name": "bad name!"}, "function_name"),
        ({"region": "moon"}, "region"),
        ({"custom_parameters": ["a"]}, "custom_parameters"),
        ({"timeout_seconds": 5000}, "timeout_seconds"),
    ):
        with pytest.raises(InvalidSettings) as info:
            integration(**settings)
        assert info.value.setting == name
    for target, fragment in (
        ({"permission": "reader"}, "target.resources"),
        ({"resources": ["r"]}, "target.permission"),
        ({"resources": [f"r{i}" for i in range(101)], "permission": "p"}, "at most 100"),
        ({**TARGET, "credentials": "steal"}, "target.credentials"),
    ):
        with pytest.raises(InvalidJob) as err:
            integration().grant(GrantRequest(grant_id="g", principal="alice", target=target), Ctx())
        assert fragment in err.value.message
    assert invokes(sb) == 0


def test_dry_run_invokes_nothing(sb: Sandbox) -> None:
    out = integration().grant(GrantRequest(grant_id="g", principal="alice", target=TARGET, dry_run=True), Ctx())
    assert out["calls"][0]["event"]["event_type"] == "grant-access" and invokes(sb) == 0
