"""Fault 10: the control plane dies, for longer than a lease, while the customer's function is making
credentials for a grant. Attempt 1's result (sealed credentials) can never be delivered, so the control plane
runs the job again. The function must not have made a second live credential that nobody knows of: the
connector runs create-credentials at most once per grant and resets instead, so the requester ends up with
the one credential that works, and no orphan is left in the customer's system."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from nacl.public import PrivateKey

from connector.sandbox import CredentialsFunction, Sandbox
from connector.sealing import open_sealed
from connector.v1 import admin_pb2
from tests.agent.agent_harness import CONNECTOR_ID, wait_for
from tests.faults.conftest import AgentProcess, job_figures, summarize
from tests.sandbox_env import tagged_function

FUNCTION = "fault-credentials"
REGION = "us-east-1"


@pytest.fixture
def function(sandbox: Sandbox) -> Iterator[CredentialsFunction]:
    # Held at the gate for a while: the function's Timeout must outlast that.
    tagged_function(sandbox, FUNCTION, sandbox.seed_info.connector_account_id, timeout=120)
    handler = CredentialsFunction(gate=threading.Event())
    sandbox.lambdas.register(FUNCTION, handler)
    yield handler
    assert handler.gate is not None
    handler.gate.set()


@pytest.mark.timeout(240)
def test_a_control_plane_restart_during_create_credentials_leaves_no_orphan(
    sandbox, control_plane, agents, tmp_path, function
):
    cp = control_plane.start()
    agent = AgentProcess(sandbox, cp.address, tmp_path / "agent.log", CONNECTOR_STATE_DIR=str(tmp_path))
    agents.append(agent)
    agent.wait_event("registered", 60)
    requester = PrivateKey.generate()
    record = cp.admin.enqueue_grant(
        CONNECTOR_ID,
        "lam",
        "lambda_custom",
        grant_id="cred-1",
        principal="dana",
        target={"resources": ["db-1"], "permission": "reader", "credentials": "create"},
        settings={"function_name": FUNCTION, "region": REGION},
        expires_in=3600,
        requester_public_key=bytes(requester.public_key),
    )
    wait_for(function.at_gate.is_set, 60, "create-credentials in flight")
    cp.kill()
    down_at = time.time()
    time.sleep(control_plane.lease_seconds + 2)  # longer than a lease: attempt 1's result has nowhere to go
    assert function.gate is not None
    function.gate.set()  # the function makes the credential now, with nobody to deliver it to
    wait_for(lambda: function.count("create-credentials") == 1 and function.live_credentials("dana"), 30, "created")
    agent.wait_event("job_finished", 30)  # attempt 1 ended, its result undelivered
    cp.start()
    done = cp.admin.wait(record.job.id, timeout=90)
    down_seconds = time.time() - down_at

    assert done.state == admin_pb2.JOB_STATE_SUCCEEDED, done.error
    sealed = dict(done.result["credentials"])
    opened = open_sealed(bytes(requester), sealed)
    live = function.live_credentials("dana")
    counts = function.counts()
    orphans = function.orphans()
    summarize(
        "credentials_controlplane_restart",
        **job_figures([done]),
        create_credentials_calls=counts.get("create-credentials", 0),
        reset_credentials_calls=counts.get("reset-credentials", 0),
        live_credentials=len(live),
        orphan_credentials=sum(len(v) for v in orphans.values()),
        requester_credential_works=function.check("dana", str(opened["password"])),
        down_seconds=round(down_seconds, 1),
    )
    assert done.job.attempt >= 2  # attempt 1's result was lost with the control plane
    assert counts.get("create-credentials") == 1, counts  # at most once per grant
    assert counts.get("reset-credentials", 0) >= 1, counts
    assert len(live) == 1 and not orphans, (live, orphans)
    assert function.check("dana", str(opened["password"]))  # the one credential delivered is the one that works
    assert "dana" in function.grants()
    assert "earlier delivery" in str(done.result["credentials_note"])
    assert str(opened["password"]) not in (tmp_path / "agent.log").read_text()

    revoke = cp.admin.enqueue_revoke(
        CONNECTOR_ID,
        "lam",
        "lambda_custom",
        grant_id="cred-1",
        principal="dana",
        target={"resources": ["db-1"], "permission": "reader"},
        settings={"function_name": FUNCTION, "region": REGION},
    )
    assert cp.admin.wait(revoke.job.id, timeout=60).state == admin_pb2.JOB_STATE_SUCCEEDED
    assert not function.live_credentials("dana") and "dana" not in function.grants()
