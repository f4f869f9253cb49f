"""Lambda functions run by Python handlers in the sandbox's process: real botocore over HTTP, from this process
and from another one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from nacl.public import PrivateKey

from connector.integrations.base import GrantRequest, JobContext, RevokeRequest, Services
from connector.integrations.lambda_custom import LambdaCustomIntegration
from connector.jobs.registry import build_registry
from connector.sandbox import CredentialsFunction, LambdaContext, Sandbox
from connector.sealing import open_sealed
from tests.sandbox.sandbox_helpers import NO_RETRIES

pytestmark = pytest.mark.timeout(120)

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # the admin credentials' account
EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18
GRANT_PARAMS = {"username": "alice", "grant_id": "g-1", "resources": ["resource1"], "permission": "reader"}


def _create(sb: Sandbox, name: str, *, timeout: int = 3, session: Any = None, **extra: Any) -> str:
    iam = session.client("iam", endpoint_url=sb.endpoint) if session else sb.client("iam", REGION)
    trust = {"Version": "2012-10-17", "Statement": []}
    try:
        role = iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    except ClientError:
        role = iam.get_role(RoleName="fn-role")["Role"]["Arn"]
    lam = session.client("lambda", endpoint_url=sb.endpoint) if session else sb.client("lambda", REGION)
    fn = lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="h.h",
        Code={"ZipFile": EMPTY_ZIP},
        Timeout=timeout,
        **extra,
    )
    return str(fn["FunctionArn"])


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox.start() as sb:
        for name, timeout in (("echo-fn", 3), ("real-fn", 3), ("slow-fn", 1), ("creds-fn", 2)):
            _create(sb, name, timeout=timeout, Tags={"apono-connector-access": "true"})
        yield sb


@pytest.fixture
def sb(sandbox: Sandbox) -> Iterator[Sandbox]:
    sandbox.lambdas.clear_invocations()
    yield sandbox
    for name in ("real-fn", "slow-fn", "creds-fn", "ghost-fn"):
        sandbox.lambdas.unregister(name)


def _invoke(sb: Sandbox, name: str, event: Any, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    answer = sb.client("lambda", REGION, config=NO_RETRIES).invoke(
        FunctionName=name, Payload=json.dumps(event).encode(), **kwargs
    )
    raw = answer["Payload"].read()
    return answer, json.loads(raw) if raw else None


def _http(sb: Sandbox, method: str, path: str) -> Any:
    with urllib.request.urlopen(urllib.request.Request(sb.endpoint + path, method=method), timeout=10) as response:
        return json.loads(response.read())


def test_a_registered_handler_answers_by_name_arn_and_qualifier(sb: Sandbox) -> None:
    seen: list[LambdaContext] = []

    def handler(event: Any, context: LambdaContext) -> Any:
        seen.append(context)
        return {"echo": event, "thread": threading.current_thread().name}

    sb.lambdas.register("real-fn", handler)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:real-fn"
    for name, kwargs in (("real-fn", {}), (arn, {}), ("real-fn:$LATEST", {}), (arn, {"Qualifier": "$LATEST"})):
        answer, payload = _invoke(sb, name, {"n": 1}, **kwargs)
        assert answer["StatusCode"] == 200 and "FunctionError" not in answer
        assert answer["ExecutedVersion"] == "$LATEST"
        assert payload == {"echo": {"n": 1}, "thread": "lambda:real-fn"}  # ran in the sandbox's process
    assert {c.function_name for c in seen} == {"real-fn"}
    assert seen[0].invoked_function_arn == arn and seen[-1].invoked_function_arn == arn + ":$LATEST"
    assert 0 < seen[0].get_remaining_time_in_millis() <= 3000 and seen[0].memory_limit_in_mb == 128
    assert seen[0].aws_request_id == sb.lambdas.invocations("real-fn")[0].request_id


def test_versions_and_aliases_resolve_to_the_handler(sb: Sandbox) -> None:
    seen: list[LambdaContext] = []

    def handler(event: Any, context: LambdaContext) -> str:
        seen.append(context)
        return context.function_version

    sb.lambdas.register("versioned-fn", handler)
    _create(sb, "versioned-fn")
    lam = sb.client("lambda", REGION)
    version = lam.publish_version(FunctionName="versioned-fn")["Version"]
    lam.create_alias(FunctionName="versioned-fn", Name="live", FunctionVersion=version)
    for name, kwargs in (("versioned-fn", {"Qualifier": version}), ("versioned-fn:live", {})):
        answer, payload = _invoke(sb, name, {}, **kwargs)
        assert answer["ExecutedVersion"] == version and payload == version
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:versioned-fn"
    assert [c.invoked_function_arn for c in seen] == [f"{arn}:{version}", f"{arn}:live"]
    assert [i.qualifier for i in sb.lambdas.invocations("versioned-fn")] == [version, "live"]
    sb.lambdas.unregister("versioned-fn")


def test_event_and_dry_run_invocations(sb: Sandbox) -> None:
    ran = threading.Event()
    sb.lambdas.register("real-fn", lambda event, context: ran.set())
    answer, _ = _invoke(sb, "real-fn", {}, InvocationType="DryRun")
    assert answer["StatusCode"] == 204 and not ran.is_set() and sb.lambdas.invocations() == []
    answer, _ = _invoke(sb, "real-fn", {"event_type": "grant-access"}, InvocationType="Event")
    assert answer["StatusCode"] == 202
    assert ran.wait(5)
    deadline = time.monotonic() + 5
    while sb.lambdas.invocations()[0].outcome == "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    [record] = sb.lambdas.invocations()
    assert (record.invocation_type, record.outcome, record.event_type) == ("Event", "ok", "grant-access")


def test_an_exception_is_an_unhandled_function_error(sb: Sandbox) -> None:
    def handler(event: Any, context: LambdaContext) -> Any:
        raise ValueError(f"no such user {event['params']['username']}")

    sb.lambdas.register("real-fn", handler)
    answer, payload = _invoke(sb, "real-fn", {"event_type": "grant-access", "params": GRANT_PARAMS})
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    assert set(payload) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert payload["errorMessage"] == "no such user alice" and payload["errorType"] == "ValueError"
    assert payload["requestId"] == answer["ResponseMetadata"]["RequestId"]
    assert len(payload["stackTrace"]) == 1 and "in handler" in payload["stackTrace"][0]
    assert "raise ValueError" in payload["stackTrace"][0]
    [record] = sb.lambdas.invocations("real-fn")
    assert (record.outcome, record.error_type, record.error_message) == ("error", "ValueError", "no such user alice")
    # an answer that is not JSON: the runtime's marshal error
    sb.lambdas.register("real-fn", lambda event, context: object())
    answer, payload = _invoke(sb, "real-fn", {})
    assert answer["FunctionError"] == "Unhandled" and payload["errorType"] == "Runtime.MarshalError"
    assert payload["errorMessage"].startswith("Unable to marshal response: Object of type object")


def test_longer_than_the_timeout_is_task_timed_out(sb: Sandbox) -> None:
    release = threading.Event()
    sb.lambdas.register("slow-fn", lambda event, context: release.wait(30) or {"late": True})
    started = time.monotonic()
    try:
        answer, payload = _invoke(sb, "slow-fn", {"event_type": "revoke-access"})
    finally:
        release.set()
    assert 1.0 <= time.monotonic() - started < 2.5  # the function's Timeout is 1 s
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    assert set(payload) == {"errorType", "errorMessage"} and payload["errorType"] == "Sandbox.Timedout"
    request_id = answer["ResponseMetadata"]["RequestId"]
    assert payload["errorMessage"] == f"RequestId: {request_id} Error: Task timed out after 1.00 seconds"
    [record] = sb.lambdas.invocations("slow-fn")
    assert record.outcome == "timeout" and record.duration is not None and record.duration >= 1.0


def test_invocations_are_recorded_and_readable_over_http(sb: Sandbox) -> None:
    def handler(event: Any, context: LambdaContext) -> Any:
        event["params"]["username"] = "changed by the handler"
        return {"status": "ok"}

    sb.lambdas.register("real-fn", handler)
    _invoke(sb, "real-fn", {"event_type": "grant-access", "params": dict(GRANT_PARAMS)})
    _invoke(sb, "real-fn", {"event_type": "revoke-access", "params": dict(GRANT_PARAMS)})
    _invoke(sb, "echo-fn", ["not", "an", "object"])
    first, second = sb.lambdas.invocations("real-fn")
    assert (first.function, first.account, first.region) == ("real-fn", ACCOUNT, REGION)
    assert first.event == {"event_type": "grant-access", "params": GRANT_PARAMS}  # a copy: as sent
    assert (first.event_type, first.outcome, first.handler, first.invocation_type) == (
        "grant-access",
        "ok",
        True,
        "RequestResponse",
    )
    assert second.event_type == "revoke-access" and first.started <= second.started
    assert [i.event_type for i in sb.lambdas.invocations(event_type="revoke-access")] == ["revoke-access"]
    [echo] = sb.lambdas.invocations("echo-fn")
    assert (echo.event, echo.event_type, echo.handler) == (["not", "an", "object"], None, False)

    over_http = _http(sb, "GET", "/_sandbox/lambda/invocations?function=real-fn")["invocations"]
    assert over_http == [json.loads(json.dumps(i.to_dict())) for i in (first, second)]
    assert len(_http(sb, "GET", "/_sandbox/lambda/invocations")["invocations"]) == 3
    assert len(_http(sb, "GET", "/_sandbox/lambda/invocations?event_type=grant-access")["invocations"]) == 1
    assert _http(sb, "DELETE", "/_sandbox/lambda/invocations") == {"cleared": True}
    assert sb.lambdas.invocations() == []


def test_functions_without_a_handler_keep_moto_behaviour(sb: Sandbox) -> None:
    answer, payload = _invoke(sb, "echo-fn", {"event_type": "list-resources"})
    assert answer["StatusCode"] == 200 and payload == {"event_type": "list-resources"}  # moto echoes
    queued = {"account_id": ACCOUNT, "region": REGION, "results": [json.dumps({"status": "queued"})]}
    request = urllib.request.Request(
        sb.endpoint + "/moto-api/static/lambda-simple/response", data=json.dumps(queued).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=10).close()
    assert _invoke(sb, "echo-fn", {"event_type": "grant-access"})[1] == {"status": "queued"}
    assert [(i.event_type, i.outcome, i.handler) for i in sb.lambdas.invocations("echo-fn")] == [
        ("list-resources", "ok", False),
        ("grant-access", "ok", False),
    ]
    # An unknown function (even with a handler registered under its name) is ResourceNotFoundException.
    called: list[Any] = []
    sb.lambdas.register("ghost-fn", lambda event, context: called.append(event))
    for name in ("ghost-fn", "never-made-fn", "echo-fn:7"):
        with pytest.raises(ClientError) as info:
            _invoke(sb, name, {})
        assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert called == [] and sb.lambdas.invocations("ghost-fn") == []


def test_handlers_are_keyed_by_account_and_region(sb: Sandbox) -> None:
    orgs = sb.client("organizations", REGION)
    orgs.create_organization(FeatureSet="ALL")
    member = orgs.create_account(AccountName="member", Email="member@example.com")["CreateAccountStatus"]["AccountId"]
    session = sb.account_session(member, REGION)
    member_arn = _create(sb, "real-fn", session=session)
    assert f":{member}:" in member_arn
    sb.lambdas.register("real-fn", lambda event, context: {"who": "management"}, account=ACCOUNT)
    sb.lambdas.register("real-fn", lambda event, context: {"who": "anyone else"})
    assert _invoke(sb, "real-fn", {})[1] == {"who": "management"}
    member_lambda = session.client("lambda", endpoint_url=sb.endpoint)
    answer = member_lambda.invoke(FunctionName="real-fn", Payload=b"{}")
    assert json.loads(answer["Payload"].read()) == {"who": "anyone else"}
    assert [i.account for i in sb.lambdas.invocations("real-fn")] == [ACCOUNT, member]
    assert [i.account for i in sb.lambdas.invocations(account=member)] == [member]
    # an ARN sets account and region; a qualified name is refused (handlers are per function)
    sb.lambdas.register(member_arn, lambda event, context: {"who": "member"})
    assert json.loads(member_lambda.invoke(FunctionName="real-fn")["Payload"].read()) == {"who": "member"}
    assert sb.lambdas.unregister(member_arn) and sb.lambdas.unregister("real-fn", account=ACCOUNT)
    with pytest.raises(ValueError):
        sb.lambdas.register("real-fn:1", lambda event, context: None)


def _event(event_type: str, **params: Any) -> dict[str, Any]:
    return {"event_type": event_type, "params": {**GRANT_PARAMS, **params}}


def test_credentials_function_create_reset_revoke(sb: Sandbox) -> None:
    fn = CredentialsFunction()
    sb.lambdas.register("creds-fn", fn)
    listed = _invoke(sb, "creds-fn", {"event_type": "list-resources", "params": {}})[1]
    assert [r["id"] for r in listed["resources"]] == ["resource1", "resource2", "resource3"]
    assert [p["id"] for p in listed["permissions"]] == ["admin", "reader"]
    assert _invoke(sb, "creds-fn", _event("grant-access"))[1] == {"status": "ok"}
    assert fn.grants()["alice"].resources == ("resource1",) and fn.grants()["alice"].permission == "reader"

    first = _invoke(sb, "creds-fn", _event("create-credentials"))[1]
    assert first["status"] == "ok" and first["username"] == "alice" and len(first["password"]) >= 20
    assert fn.live_credentials("alice") == [first["password"]] and fn.check("alice", first["password"])
    assert fn.orphans() == {}
    # Asked again for the same grant it issues another one: the orphan is visible.
    second = _invoke(sb, "creds-fn", _event("create-credentials"))[1]
    assert second["password"] != first["password"]
    assert fn.live_credentials("alice") == [first["password"], second["password"]]
    assert fn.orphans() == {"alice": [first["password"], second["password"]]}

    reset = _invoke(sb, "creds-fn", _event("reset-credentials"))[1]
    assert fn.live_credentials("alice") == [reset["password"]]  # exactly one live
    assert not fn.check("alice", first["password"]) and not fn.check("alice", second["password"])
    assert fn.check("alice", reset["password"]) and not fn.check("bob", reset["password"]) and fn.orphans() == {}

    assert _invoke(sb, "creds-fn", _event("revoke-access"))[1] == {"status": "ok"}
    assert fn.live_credentials("alice") == [] and "alice" not in fn.grants() and fn.orphans() == {}
    assert [c.live for c in fn.credentials("alice")] == [False, False, False]
    assert fn.counts() == {
        "list-resources": 1,
        "grant-access": 1,
        "create-credentials": 2,
        "reset-credentials": 1,
        "revoke-access": 1,
    }
    # credentials without a grant are orphans too
    _invoke(sb, "creds-fn", _event("create-credentials", username="bob"))
    assert list(fn.orphans()) == ["bob"]
    answer, payload = _invoke(sb, "creds-fn", {"event_type": "steal-everything", "params": GRANT_PARAMS})
    assert answer["FunctionError"] == "Unhandled" and "unknown event_type" in payload["errorMessage"]


def test_credentials_function_injected_failures(sb: Sandbox) -> None:
    fn = CredentialsFunction()
    sb.lambdas.register("creds-fn", fn)  # Timeout 2 s
    _invoke(sb, "creds-fn", _event("grant-access"))
    fn.inject("create-credentials", raises="directory unavailable")
    answer, payload = _invoke(sb, "creds-fn", _event("create-credentials"))
    assert answer["FunctionError"] == "Unhandled" and payload["errorType"] == "RuntimeError"
    assert payload["errorMessage"] == "directory unavailable" and fn.live_credentials("alice") == []
    fn.inject("grant-access", status="denied by policy")
    assert _invoke(sb, "creds-fn", _event("grant-access"))[1] == {"status": "denied by policy"}
    # slow before any effect, past the Timeout: a timeout, and nothing was issued (AWS stopped it)
    fn.inject("create-credentials", delay=5)
    _, payload = _invoke(sb, "creds-fn", _event("create-credentials"))
    assert payload["errorType"] == "Sandbox.Timedout"
    # slow after the effect: the caller sees a timeout, but a credential exists
    fn.inject("create-credentials", delay=5, after_effect=True)
    _, payload = _invoke(sb, "creds-fn", _event("create-credentials"))
    assert payload["errorType"] == "Sandbox.Timedout"
    time.sleep(0.2)
    assert len(fn.live_credentials("alice")) == 1 and [c.event_type for c in fn.credentials()] == ["create-credentials"]
    # slow but within the Timeout: just a slow answer, with its effect
    fn.inject("reset-credentials", delay=0.3)
    started = time.monotonic()
    reset = _invoke(sb, "creds-fn", _event("reset-credentials"))[1]
    assert time.monotonic() - started >= 0.3 and fn.live_credentials("alice") == [reset["password"]]
    assert [i.outcome for i in sb.lambdas.invocations("creds-fn")] == [
        "ok",
        "error",
        "ok",
        "timeout",
        "timeout",
        "ok",
    ]
    with pytest.raises(ValueError):
        fn.inject("create-credentials")


def test_credentials_function_gate_holds_a_call_in_flight(sb: Sandbox) -> None:
    gate = threading.Event()
    fn = CredentialsFunction(gate=gate)
    sb.lambdas.register("creds-fn", fn)
    answers: list[Any] = []
    caller = threading.Thread(target=lambda: answers.append(_invoke(sb, "creds-fn", _event("create-credentials"))))
    caller.start()
    assert fn.at_gate.wait(5)
    assert fn.live_credentials("alice") == [] and sb.lambdas.invocations("creds-fn")[0].outcome == "running"
    gate.set()
    caller.join(10)
    assert fn.live_credentials("alice") == [answers[0][1]["password"]]
    # never released: the call times out (Timeout 2 s) and issues nothing
    gate.clear()
    fn.at_gate.clear()
    _, payload = _invoke(sb, "creds-fn", _event("create-credentials", username="bob"))
    assert payload["errorType"] == "Sandbox.Timedout" and fn.at_gate.is_set()
    gate.set()
    time.sleep(0.1)
    assert fn.live_credentials("bob") == []


class _Ctx(JobContext):
    def __init__(self) -> None:
        super().__init__(job_id="j", attempt=1, connector_id="c-1", integration_id="lambda-1")


def test_the_connector_integration_against_real_state(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in sb.env(REGION).items():
        monkeypatch.setenv(key, value)
    fn = CredentialsFunction()
    sb.lambdas.register("creds-fn", fn)
    integration = LambdaCustomIntegration(
        "lambda-1", {"function_name": "creds-fn", "region": REGION}, Services(connector_id="c-1")
    )
    kind = build_registry(["lambda_custom"]).provisioner(integration, "lambda_custom")
    assert kind is not None
    requester = PrivateKey.generate()
    target = {"resources": ["resource1"], "permission": "reader", "credentials": "create"}
    request = GrantRequest(
        grant_id="g-1", principal="alice", target=target, requester_public_key=bytes(requester.public_key)
    )
    result = kind.grant(request, kind.describe(request, _Ctx()), _Ctx())
    opened = open_sealed(bytes(requester), result["credentials"])
    assert fn.check("alice", opened["password"]) and fn.live_credentials("alice") == [opened["password"]]
    kind.revoke(RevokeRequest(grant_id="g-1", principal="alice", target=target), _Ctx())  # the grant's own target
    assert fn.live_credentials("alice") == [] and fn.grants() == {}
    assert [i.event_type for i in sb.lambdas.invocations("creds-fn")] == [
        "grant-access",
        "create-credentials",
        "revoke-access",
    ]


def test_an_invoke_from_another_process_reaches_the_handler(sb: Sandbox) -> None:
    fn = CredentialsFunction()
    sb.lambdas.register("creds-fn", fn)
    script = (
        "import json, boto3\n"
        "lam = boto3.client('lambda')\n"
        "for event_type in ('grant-access', 'create-credentials'):\n"
        "    event = {'event_type': event_type, 'params': {'username': 'carol', 'grant_id': 'g-9'}}\n"
        "    answer = lam.invoke(FunctionName='creds-fn', Payload=json.dumps(event).encode())\n"
        "    print(answer['Payload'].read().decode())\n"
    )
    env = {**os.environ, **sb.env(REGION)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    granted, created = (json.loads(line) for line in done.stdout.splitlines())
    assert granted == {"status": "ok"} and fn.check("carol", created["password"])
    assert [(i.event_type, i.handler) for i in sb.lambdas.invocations("creds-fn")] == [
        ("grant-access", True),
        ("create-credentials", True),
    ]
    assert re.fullmatch(r"[\w-]+", created["password"])
