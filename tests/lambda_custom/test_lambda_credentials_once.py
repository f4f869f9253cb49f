"""create-credentials runs at most once per grant, and no live credential is left undelivered (an orphan).

Red-team finding: the control plane was down longer than a lease while a Lambda create-credentials ran; the job
was delivered again, the function ran create twice, and one live credential never reached anyone. Here every
delivery goes through the Dispatcher on a real proto Job (attempt 2 = the re-delivery after a lost result), to
CredentialsFunction over HTTP, which keeps real credentials and counts orphans."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from nacl.public import PrivateKey

from connector.errors import ErrorCode
from connector.integrations.capabilities import ExpiryScan
from connector.jobs.dispatcher import JobOutcome
from connector.sandbox import CredentialsFunction, Sandbox
from connector.sealing import open_sealed
from tests.lambda_custom.helpers import (
    TARGET,
    Ctx,
    dispatcher,
    events,
    grant_job,
    in_thread,
    integration,
    kind_of,
    records,
    revoke_job,
    run,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)

CREATE = {**TARGET, "credentials": "create"}


def ok(out: JobOutcome) -> dict[str, Any]:
    assert out.outcome == "succeeded", out.error
    return out.result


def password(requester: PrivateKey, result: dict[str, Any]) -> str:
    return str(open_sealed(bytes(requester), result["credentials"])["password"])


def test_a_redelivered_create_resets_and_leaves_no_orphan(sb: Sandbox) -> None:
    fn = CredentialsFunction()
    sb.lambdas.register("access-fn", fn)
    requester = PrivateKey.generate()
    key = bytes(requester.public_key)
    d = dispatcher()
    first = ok(run(d, grant_job("g-lost", "alice", CREATE, public_key=key, attempt=1)))
    # ... its result never reached the control plane, which leased the job again:
    second = ok(run(d, grant_job("g-lost", "alice", CREATE, public_key=key, attempt=2)))
    assert (first["credentials_event"], second["credentials_event"]) == ("create-credentials", "reset-credentials")
    assert "did not reach you" in second["credentials_note"]
    assert fn.counts() == {"grant-access": 2, "create-credentials": 1, "reset-credentials": 1}
    assert fn.orphans() == {}
    delivered, lost = password(requester, second), password(requester, first)
    assert fn.check("alice", delivered) and not fn.check("alice", lost)
    assert fn.live_credentials("alice") == [delivered]
    # a third delivery (another lost result) resets again: still one live, the newest
    third = ok(run(d, grant_job("g-lost", "alice", CREATE, public_key=key, attempt=3)))
    assert fn.live_credentials("alice") == [password(requester, third)] and fn.count("create-credentials") == 1


def test_racing_deliveries_create_once_and_reset_after_the_create(sb: Sandbox) -> None:
    # The first delivery is held inside create-credentials (the function's gate) when the job is re-leased; the
    # second must neither create again nor reset before that create is over (its credential would outlive the
    # reset: an orphan).
    gate = threading.Event()
    fn = CredentialsFunction(gate=gate)
    sb.lambdas.register("long-fn", fn)  # Timeout 30 s: the gate can hold a call that long
    requester = PrivateKey.generate()
    key = bytes(requester.public_key)
    d = dispatcher()
    a, a_out = in_thread(lambda: run(d, grant_job("g-race", "alice", CREATE, public_key=key, function="long-fn")))
    assert fn.at_gate.wait(10)
    b, b_out = in_thread(
        lambda: run(d, grant_job("g-race", "alice", CREATE, public_key=key, function="long-fn", attempt=2))
    )
    wait_for(lambda: fn.count("grant-access") == 2, 10, "the second delivery's grant-access")
    time.sleep(2.5)  # the second delivery reads the marker every second meanwhile
    assert fn.count("reset-credentials") == 0 and fn.count("create-credentials") == 1 and b.is_alive()
    gate.set()
    a.join(20)
    b.join(20)
    first, second = ok(a_out[0]), ok(b_out[0])
    assert (first["credentials_event"], second["credentials_event"]) == ("create-credentials", "reset-credentials")
    assert fn.counts() == {"grant-access": 2, "create-credentials": 1, "reset-credentials": 1}
    assert fn.orphans() == {}
    assert fn.live_credentials("alice") == [password(requester, second)]
    assert not fn.check("alice", password(requester, first))


def test_a_burst_of_deliveries_creates_once(sb: Sandbox) -> None:
    # Five replicas handed the same grant at the same moment: one creates, the others reset after it.
    fn = CredentialsFunction()
    sb.lambdas.register("access-fn", fn)
    requester = PrivateKey.generate()
    key = bytes(requester.public_key)
    d = dispatcher()
    start = threading.Barrier(5)

    def deliver(attempt: int) -> JobOutcome:
        job = grant_job("g-burst", "alice", CREATE, public_key=key, attempt=attempt)
        start.wait()
        return run(d, job)

    threads = [in_thread(lambda n=n: deliver(n)) for n in range(1, 6)]
    for thread, _ in threads:
        thread.join(30)
    results = [ok(box[0]) for _, box in threads]
    assert sorted(r["credentials_event"] for r in results) == ["create-credentials"] + ["reset-credentials"] * 4
    assert fn.count("create-credentials") == 1 and fn.orphans() == {}
    # resets racing each other: the one that ran last holds the single live credential
    assert sum(fn.check("alice", password(requester, r)) for r in results) == 1


def test_a_delivery_that_cannot_wait_for_a_running_create_gives_up_and_takes_nothing_back(sb: Sandbox) -> None:
    gate = threading.Event()
    fn = CredentialsFunction(gate=gate)
    sb.lambdas.register("long-fn", fn)
    requester = PrivateKey.generate()
    key = bytes(requester.public_key)
    d = dispatcher()
    a, a_out = in_thread(lambda: run(d, grant_job("g-near", "alice", CREATE, public_key=key, function="long-fn")))
    try:
        assert fn.at_gate.wait(10)
        job = grant_job("g-near", "alice", CREATE, public_key=key, function="long-fn", attempt=2)
        out = run(d, job, deadline=time.monotonic() + 4)
        assert out.error is not None and out.error.code == ErrorCode.CONFLICT and out.error.retryable
        assert "may still be running" in out.error.message
        # it granted (idempotent) but neither reset nor revoked: the running create's access stays whole
        assert events(sb, "long-fn") == ["grant-access", "create-credentials", "grant-access"]
        assert "alice" in fn.grants()
    finally:
        gate.set()
        a.join(20)
    first = ok(a_out[0])
    assert fn.live_credentials("alice") == [password(requester, first)] and fn.orphans() == {}
    # the retry, once the create is over, resets straight away
    third = ok(run(d, grant_job("g-near", "alice", CREATE, public_key=key, function="long-fn", attempt=3)))
    assert third["credentials_event"] == "reset-credentials"
    assert fn.live_credentials("alice") == [password(requester, third)] and fn.count("create-credentials") == 1


def test_a_create_the_function_refuses_removes_the_marker_so_a_retry_creates(sb: Sandbox) -> None:
    fn = CredentialsFunction()
    sb.lambdas.register("access-fn", fn)
    fn.inject("create-credentials", raises="directory unavailable")  # FunctionError: Unhandled, made nothing
    requester = PrivateKey.generate()
    key = bytes(requester.public_key)
    d = dispatcher()
    out = run(d, grant_job("g-refused", "alice", CREATE, public_key=key))
    assert out.error is not None and out.error.code == ErrorCode.INTERNAL and not out.error.retryable
    assert events(sb) == ["grant-access", "create-credentials", "revoke-access"]  # no access without credentials
    assert records(sb).marker("g-refused") is None and fn.grants() == {}
    retry = ok(run(d, grant_job("g-refused", "alice", CREATE, public_key=key, attempt=2)))
    assert retry["credentials_event"] == "create-credentials" and "credentials_note" not in retry
    assert fn.count("create-credentials") == 2 and fn.count("reset-credentials") == 0
    assert fn.live_credentials("alice") == [password(requester, retry)] and fn.orphans() == {}


def test_a_status_refusal_also_removes_the_marker(sb: Sandbox) -> None:
    fn = CredentialsFunction()
    sb.lambdas.register("access-fn", fn)
    fn.inject("create-credentials", status="quota exceeded")
    key = bytes(PrivateKey.generate().public_key)
    d = dispatcher()
    assert run(d, grant_job("g-status", "alice", CREATE, public_key=key)).outcome == "failed"
    assert records(sb).marker("g-status") is None
    assert ok(run(d, grant_job("g-status", "alice", CREATE, public_key=key, attempt=2)))["credentials_event"] == (
        "create-credentials"
    )


@pytest.mark.parametrize("after_effect", [False, True], ids=["nothing-made", "made-then-timed-out"])
def test_a_create_that_times_out_keeps_the_marker_takes_access_back_and_the_retry_resets(
    sb: Sandbox, after_effect: bool
) -> None:
    fn = CredentialsFunction()
    sb.lambdas.register("quick-fn", fn)  # Timeout 2 s
    fn.inject("create-credentials", delay=5, after_effect=after_effect)  # Lambda stops it: Sandbox.Timedout
    requester = PrivateKey.generate()
    key = bytes(requester.public_key)
    d = dispatcher()
    out = run(d, grant_job(f"g-slow-{after_effect}", "alice", CREATE, public_key=key, function="quick-fn"))
    assert out.error is not None and out.error.code == ErrorCode.TIMEOUT and out.error.retryable
    assert events(sb, "quick-fn") == ["grant-access", "create-credentials", "revoke-access"]
    marker = records(sb).marker(f"g-slow-{after_effect}")
    assert marker is not None and marker.settled(time.time())  # kept, and the invocation is known to be over
    assert fn.grants() == {} and fn.orphans() == {}
    retry = ok(
        run(d, grant_job(f"g-slow-{after_effect}", "alice", CREATE, public_key=key, function="quick-fn", attempt=2))
    )
    assert retry["credentials_event"] == "reset-credentials"
    assert fn.count("create-credentials") == 1 and fn.count("reset-credentials") == 1
    assert fn.live_credentials("alice") == [password(requester, retry)] and fn.orphans() == {}


def test_a_revoke_while_a_create_runs_revokes_again_once_it_is_over(sb: Sandbox) -> None:
    gate = threading.Event()
    fn = CredentialsFunction(gate=gate)
    sb.lambdas.register("long-fn", fn)
    key = bytes(PrivateKey.generate().public_key)
    d = dispatcher()
    a, a_out = in_thread(lambda: run(d, grant_job("g-rv", "alice", CREATE, public_key=key, function="long-fn")))
    assert fn.at_gate.wait(10)
    revoked = ok(run(d, revoke_job("g-rv", "alice", TARGET, function="long-fn")))
    assert "revoke_again" in revoked and fn.grants() == {}
    gate.set()
    a.join(20)
    ok(a_out[0])
    assert list(fn.orphans()) == ["alice"]  # the create finished after the revoke: a live credential, no grant
    # the record stayed, expired: the expiry loop revokes again, and this time forgets it
    kind = kind_of(integration("long-fn"))
    [found] = list(kind.expired(ExpiryScan(now=int(datetime.now(UTC).timestamp()) + 1, full=True)))
    assert found.request is not None and found.request.grant_id == "g-rv"
    kind.revoke(found.request, Ctx())
    assert fn.orphans() == {} and fn.live_credentials("alice") == []
    assert records(sb).get("g-rv") is None and records(sb).marker("g-rv") is None
