"""Fault injection and call counting, driven from Python and over HTTP."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from connector.sandbox import Sandbox, SeedInfo, SeedSpec
from tests.sandbox.sandbox_helpers import NO_RETRIES

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox.start(seed=SeedSpec(identity_center=False)) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def clean(sb: Sandbox) -> Iterator[None]:
    sb.faults.clear()
    sb.faults.reset_counts()
    yield
    sb.faults.clear()


def _info(sb: Sandbox) -> SeedInfo:
    return sb.seed_info


def _http(sb: Sandbox, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(sb.endpoint + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_latency_is_applied(sb: Sandbox) -> None:
    orgs = sb.client("organizations", config=NO_RETRIES)
    sb.faults.latency(0.4, service="organizations", operation="DescribeOrganization")
    started = time.perf_counter()
    orgs.describe_organization()
    assert time.perf_counter() - started >= 0.4
    orgs.list_roots()  # another operation: not delayed by the 0.4 s rule (no speed assert, just the rule scope)
    assert sb.faults.counts()["by_operation"]["organizations:ListRoots"] == 1


def test_throttle_n_then_success(sb: Sandbox) -> None:
    orgs = sb.client("organizations", config=NO_RETRIES)
    eks = sb.client("eks", config=NO_RETRIES)
    sb.faults.throttle(count=2, service="organizations")
    sb.faults.throttle(count=1, service="eks")
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            orgs.list_roots()
        assert exc.value.response["Error"]["Code"] == "TooManyRequestsException"  # Organizations' own code
    assert orgs.list_roots()["Roots"]
    with pytest.raises(ClientError) as exc:
        eks.list_clusters()
    assert exc.value.response["Error"]["Code"] == "ThrottlingException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    eks.list_clusters()
    # botocore's standard retry mode recognises the code and retries through a throttle by itself
    sb.faults.throttle(count=1, service="organizations")
    assert sb.client("organizations", retries=3).list_roots()["Roots"]
    assert sb.faults.counts()["faulted"]["organizations:ListRoots"] == 3


def test_throttle_fraction_is_seeded(sb: Sandbox) -> None:
    sts = sb.client("sts", config=NO_RETRIES)

    def run() -> list[bool]:
        sb.faults.clear()
        sb.faults.throttle(fraction=0.5, seed=7, service="sts", operation="GetCallerIdentity")
        outcome = []
        for _ in range(30):
            try:
                sts.get_caller_identity()
                outcome.append(True)
            except ClientError as err:
                assert err.response["Error"]["Code"] == "Throttling"
                outcome.append(False)
        return outcome

    first = run()
    assert 5 < first.count(False) < 25
    assert run() == first  # same seed, same sequence


def test_server_errors(sb: Sandbox) -> None:
    sb.faults.error(fraction=1.0, service="eks", operation="ListClusters")
    with pytest.raises(ClientError) as exc:
        sb.client("eks", config=NO_RETRIES).list_clusters()
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert sb.faults.counts()["faulted"] == {"eks:ListClusters": 1}


def test_scp_deny(sb: Sandbox) -> None:
    info = _info(sb)
    account = info.clusters[0].account
    eks = sb.account_session(account, "eu-west-1").client("eks", endpoint_url=sb.endpoint, config=NO_RETRIES)
    sb.faults.scp_deny("eks", account=account, region="eu-west-1")
    with pytest.raises(ClientError) as exc:
        eks.list_clusters()
    assert exc.value.response["Error"]["Code"] == "AccessDeniedException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    message = exc.value.response["Error"]["Message"]
    assert message.startswith(
        f"User: arn:aws:sts::{account}:assumed-role/OrganizationAccountAccessRole/sandbox-admin is not authorized "
        "to perform: eks:ListClusters on resource: "
    )
    assert message.endswith("with an explicit deny in a service control policy")
    # other regions of the account are unaffected
    sb.account_session(account, "us-east-1").client("eks", endpoint_url=sb.endpoint).list_clusters()


def test_rate_limit(sb: Sandbox) -> None:
    sb.faults.rate_limit(rate=2.0, burst=3, service="sts")
    sts = sb.client("sts", config=NO_RETRIES)
    outcomes = []
    for _ in range(6):
        try:
            sts.get_caller_identity()
            outcomes.append("ok")
        except ClientError as err:
            outcomes.append(err.response["Error"]["Code"])
    assert outcomes[:3] == ["ok", "ok", "ok"] and "Throttling" in outcomes[3:]
    time.sleep(1.1)  # the bucket refills at 2/s
    sts.get_caller_identity()


def test_hang_is_bounded_and_times_out_the_client(sb: Sandbox) -> None:
    sb.faults.hang(1.5, service="organizations", count=1)
    slow = sb.client(
        "organizations", config=Config(read_timeout=0.5, connect_timeout=2, retries={"total_max_attempts": 1})
    )
    with pytest.raises(ReadTimeoutError):
        slow.list_roots()
    slow.list_roots()  # count=1: the next call goes through
    with pytest.raises(ValueError):
        sb.faults.hang(0)


def test_call_counting(sb: Sandbox) -> None:
    info = _info(sb)
    orgs = sb.client("organizations")
    pages = list(orgs.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 5}))
    counts = sb.faults.counts()
    assert counts["by_operation"]["organizations:ListAccounts"] == len(pages) == -(-len(info.accounts) // 5)
    assert counts["by_target"][f"{info.management_account_id}/us-east-1/organizations"] == len(pages)
    assert sb.faults.calls("organizations", "ListAccounts") == len(pages)


def test_http_control_api(sb: Sandbox) -> None:
    status, body = _http(sb, "POST", "/_sandbox/faults", {"kind": "throttle", "service": "sts", "count": 1})
    assert status == 201
    rule_id = body["id"]
    assert [r["id"] for r in _http(sb, "GET", "/_sandbox/faults")[1]["rules"]] == [rule_id]
    with pytest.raises(ClientError):
        sb.client("sts", config=NO_RETRIES).get_caller_identity()
    assert _http(sb, "GET", "/_sandbox/calls")[1]["faulted"] == {"sts:GetCallerIdentity": 1}
    status, body = _http(sb, "POST", "/_sandbox/faults", {"kind": "explode"})
    assert status == 400 and "unknown fault kind" in body["error"]
    assert _http(sb, "DELETE", f"/_sandbox/faults/{rule_id}")[0] == 200
    assert _http(sb, "DELETE", "/_sandbox/faults")[0] == 200
    assert _http(sb, "GET", "/_sandbox/seed")[1]["organization_id"] == _info(sb).organization_id
    # moto's own API stays reachable
    with urllib.request.urlopen(sb.endpoint + "/moto-api/data.json", timeout=10) as response:
        assert response.status == 200


def test_lambda_simple_backend_returns_queued_response(sb: Sandbox) -> None:
    account = _info(sb).management_account_id
    iam = sb.client("iam")
    role = iam.create_role(
        RoleName="lambda-exec", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )
    lam = sb.client("lambda")
    lam.create_function(
        FunctionName="custom-integration",
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="index.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
    )
    queued = json.dumps({"statusCode": 200, "body": "granted"})
    request = urllib.request.Request(
        sb.endpoint + "/moto-api/static/lambda-simple/response",
        data=json.dumps({"account_id": account, "region": "us-east-1", "results": [queued]}).encode(),
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()
    out = lam.invoke(FunctionName="custom-integration", Payload=b'{"event": "grant-access"}')
    assert out["Payload"].read().decode() == queued
    echo = lam.invoke(FunctionName="custom-integration", Payload=b'{"event": "list-resources"}')
    assert echo["Payload"].read() == b'{"event": "list-resources"}'  # nothing queued: echoes the event
