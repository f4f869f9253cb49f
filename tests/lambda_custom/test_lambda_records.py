"""The Lambda grant ledger: one SSM parameter per grant beside the function, written before grant-access, read by
the expiry loop, removed after revoke-access.

Red-team finding: Lambda grants were never revoked on expiry. Now the records live in SSM and
LambdaGrants.expired lists them; an undecodable record counts as expired (fail closed)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nacl.public import PrivateKey

from connector.errors import ErrorCode, InvalidJob
from connector.integrations.base import GrantRequest, Services
from connector.integrations.capabilities import ExpiryScan
from connector.jobs.dispatcher import Dispatcher
from connector.jobs.expiry import ExpirySweeper
from connector.jobs.registry import build_registry
from connector.sandbox import CredentialsFunction, LambdaContext, Sandbox
from tests.lambda_custom.helpers import (
    CONNECTOR_ID,
    CUSTOM,
    REGION,
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
    run,
)

pytestmark = pytest.mark.timeout(120)


def soon(seconds: int = 30) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)


def epoch(when: datetime) -> int:
    return int(when.timestamp())


def test_an_expired_grant_is_found_and_revoked_with_its_recorded_params(sb: Sandbox) -> None:
    fn = CredentialsFunction()
    sb.lambdas.register("access-fn", fn)
    kind = kind_of(integration(integration_id="lambda-exp"))
    expires = soon()
    target = {"resources": ["resource3", "resource1"], "permission": "admin", "credentials": "create"}
    key = bytes(PrivateKey.generate().public_key)
    grant(kind, GrantRequest("g-exp", "carol", target, expires_at=expires, requester_public_key=key))
    ledger = records(sb, "lambda-exp")
    assert ledger.marker("g-exp") is not None
    assert list(kind.expired(ExpiryScan(now=epoch(expires) - 1, full=True))) == []  # not yet
    [found] = list(kind.expired(ExpiryScan(now=epoch(expires) + 1, full=True)))
    assert found.expires_epoch == epoch(expires) and found.problem == "" and found.place == ledger.name("g-exp")
    assert found.request is not None
    assert (found.request.grant_id, found.request.principal) == ("g-exp", "carol")
    assert found.request.target == {
        "resource_type": "lambda_custom",
        "resources": ["resource3", "resource1"],
        "permission": "admin",
    }
    kind.revoke(found.request, Ctx())
    [call] = sb.lambdas.invocations("access-fn", event_type="revoke-access")
    assert call.event["params"] == {
        "username": "carol",
        "grant_id": "g-exp",
        "resources": ["resource3", "resource1"],
        "permission": "admin",
        "custom_parameters": CUSTOM,
    }
    assert fn.grants() == {} and fn.live_credentials("carol") == []
    assert parameter(sb, ledger.name("g-exp")) is None and ledger.marker("g-exp") is None
    assert list(kind.expired(ExpiryScan(now=epoch(expires) + 1, full=True))) == []


def test_the_expiry_loop_revokes_an_expired_lambda_grant(sb: Sandbox) -> None:
    # The customer-visible path: a grant job through the Dispatcher, then the one expiry loop, no revoke job.
    fn = CredentialsFunction()
    sb.lambdas.register("access-fn", fn)
    registry = build_registry(["lambda_custom"])
    services = Services(connector_id=CONNECTOR_ID)
    sweeper = ExpirySweeper(registry, services)
    d = Dispatcher(registry, services, listener=sweeper)
    expires = soon(5)
    out = run(d, grant_job("g-loop", "dave", TARGET, expires_at=expires, integration_id="lambda-loop"))
    assert out.outcome == "succeeded", out.error
    assert sweeper.sweep(now=expires - timedelta(seconds=2)) == [] and "dave" in fn.grants()
    [event] = sweeper.sweep(now=expires + timedelta(seconds=1))
    assert (event.outcome, event.grant_id) == ("succeeded", "g-loop")
    assert fn.grants() == {} and records(sb, "lambda-loop").get("g-loop") is None
    assert sweeper.sweep(now=expires + timedelta(seconds=2)) == []


def _write(sb: Sandbox, name: str, value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    sb.client("ssm", REGION).put_parameter(Name=name, Value=text, Type="String", Overwrite=True)


def test_undecodable_records_count_as_expired(sb: Sandbox) -> None:
    fn = CredentialsFunction()
    sb.lambdas.register("access-fn", fn)
    ledger = records(sb, "lambda-junk")
    now = int(time.time())
    fields = {"username": "bob", "resources": ["resource1"], "permission": "reader", "function": "access-fn"}
    _write(sb, ledger.name("g-junk-json"), "{not json")
    _write(sb, ledger.name("g-junk-exp"), {"exp": "soon", "grant_id": "g-junk-exp", **fields})
    _write(sb, ledger.name("g-no-exp"), {"grant_id": "g-no-exp", **fields})
    _write(sb, ledger.name("g-nameless"), {"exp": "100"})  # expired, and says nothing to revoke
    _write(sb, ledger.name("g-future"), {"exp": str(now + 3600), "grant_id": "g-future", **fields})
    _write(sb, ledger.name("g-never"), {"exp": "never", "grant_id": "g-never", **fields})
    _write(sb, ledger.name("g-future") + ".create", "garbage marker")  # markers are no records
    kind = kind_of(integration(integration_id="lambda-junk"))
    found = {g.place: g for g in kind.expired(ExpiryScan(now=now, full=True))}
    assert set(found) == {ledger.name(g) for g in ("g-junk-json", "g-junk-exp", "g-no-exp", "g-nameless")}
    junk = found[ledger.name("g-junk-json")]
    assert junk.expires_epoch is None and junk.problem and junk.request is None
    bad_exp = found[ledger.name("g-junk-exp")]
    assert bad_exp.expires_epoch is None and "soon" in bad_exp.problem
    assert bad_exp.request is not None and bad_exp.request.principal == "bob"
    assert found[ledger.name("g-no-exp")].problem == "the record has no expiry"
    nameless = found[ledger.name("g-nameless")]
    assert nameless.expires_epoch == 100 and nameless.problem == "" and nameless.request is None
    # the undecodable expiry still names what to revoke: revoked, and its record removed
    kind.revoke(bad_exp.request, Ctx())
    assert events(sb) == ["revoke-access"] and parameter(sb, ledger.name("g-junk-exp")) is None


def test_the_record_is_written_before_grant_access(sb: Sandbox) -> None:
    ledger = records(sb, "lambda-first")
    seen: list[str | None] = []

    def handler(event: Any, context: LambdaContext) -> Any:
        if event["event_type"] == "grant-access":
            seen.append(parameter(sb, ledger.name(event["params"]["grant_id"])))  # what SSM holds right now
            raise RuntimeError("the customer's backend is down, after it granted")
        return {"status": "ok"}

    sb.lambdas.register("access-fn", handler)
    expires = soon()
    out = run(dispatcher(), grant_job("g-first", "erin", TARGET, expires_at=expires, integration_id="lambda-first"))
    assert out.error is not None and out.error.code == ErrorCode.INTERNAL
    [record] = seen
    assert record is not None and json.loads(record)["exp"] == str(epoch(expires))
    assert json.loads(record)["username"] == "erin"
    # the failed grant-access may have given access: the record stays, and expiry takes it back
    kind = kind_of(integration(integration_id="lambda-first"))
    [found] = list(kind.expired(ExpiryScan(now=epoch(expires) + 1, full=True)))
    assert found.request is not None and found.request.grant_id == "g-first"
    kind.revoke(found.request, Ctx())
    assert events(sb) == ["grant-access", "revoke-access"] and ledger.get("g-first") is None


def test_a_grant_whose_record_would_not_fit_is_refused_before_anything(sb: Sandbox) -> None:
    sb.lambdas.register("access-fn", CredentialsFunction())
    many = {"resources": [f"resource-{i:03d}-" + "x" * 30 for i in range(100)], "permission": "reader"}
    out = run(dispatcher(), grant_job("g-big", "frank", many))
    assert out.error is not None and out.error.code == ErrorCode.INVALID_JOB
    assert "where 4096 fit" in out.error.message and "split it into several grants" in out.error.message
    with pytest.raises(InvalidJob):  # a dry run is refused the same way: it could never be applied
        kind_of(integration()).describe(GrantRequest("g-big", "frank", many, dry_run=True), Ctx())
    assert sb.lambdas.invocations() == []
    assert sb.faults.calls("ssm", "PutParameter") == 0 and sb.faults.calls("lambda", "Invoke") == 0
    # the same grant with fewer resources fits
    fewer = {"resources": many["resources"][:50], "permission": "reader"}
    assert run(dispatcher(), grant_job("g-big", "frank", fewer)).outcome == "succeeded"
