"""An agent SIGKILLed in the middle of an EKS grant: the lease expires, a second agent finishes the job at
attempt 2, the first attempt's late FinishJob is refused, and the grant exists exactly once in EKS."""

from __future__ import annotations

import grpc
import pytest

from connector.demo import member_eks
from connector.integrations.eks_access.entries import GRANT_PREFIX, MANAGED_BY_KEY, POLICY_PREFIX
from connector.v1 import admin_pb2, connector_pb2, connector_pb2_grpc
from tests.agent.agent_harness import (
    CONNECTOR_ID,
    TOKEN,
    AgentThread,
    agent_env,
    cp_settings,
    spawn_agent,
    start_cp,
    wait_for,
    wait_log,
)

ROLE = "role/e2e-developers"


def settings_for(sandbox):
    info = sandbox.seed_info
    return {
        "management_account_role_arn": info.management_role_arn,
        "member_role_name": info.member_role_name,
        "external_id": info.external_id,
        "regions": ["us-east-1"],
    }


@pytest.mark.timeout(180)
def test_sigkill_mid_grant_second_agent_finishes_grant_exists_once(sandbox, tmp_path):
    info = sandbox.seed_info
    cluster = next(c for c in info.clusters if c.mode in ("API", "API_AND_CONFIG_MAP"))
    principal = f"arn:aws:iam::{cluster.account}:{ROLE}"
    target = {
        "resource_type": "eks_cluster",
        "account_id": cluster.account,
        "region": cluster.region,
        "cluster": cluster.name,
        "access_policies": ["AmazonEKSEditPolicy"],
        "scope": "namespace",
        "namespaces": ["payments"],
    }
    aws_env = {k: v for k, v in sandbox.env().items()} | {"AWS_CONFIG_FILE": "/dev/null"}
    log = tmp_path / "agent-a.log"
    # Hold the association call long enough to kill the agent while it waits for it.
    slow = sandbox.faults.latency(4.0, service="eks", operation="AssociateAccessPolicy", count=1)
    sandbox.faults.reset_counts()
    with start_cp(cp_settings(tmp_path, lease_seconds=3.0, heartbeat_interval=1.0)) as cp:
        proc = spawn_agent(agent_env(cp.address) | aws_env, log)
        try:
            wait_log(log, "registered", 30)
            record = cp.admin.enqueue_grant(
                CONNECTOR_ID,
                "org",
                "aws_organization",
                grant_id="e2e-kill-1",
                principal=principal,
                target=target,
                settings=settings_for(sandbox),
                expires_in=3600,
            )
            wait_for(
                lambda: sandbox.faults.calls("eks", "AssociateAccessPolicy") >= 1,
                30,
                "grant reached AssociateAccessPolicy",
            )
            proc.kill()
            proc.wait(timeout=10)
        finally:
            proc.kill()
        sandbox.faults.remove(slow)
        with AgentThread(agent_env(cp.address)):
            done = cp.admin.wait(record.job.id, timeout=60)
        assert done.state == admin_pb2.JOB_STATE_SUCCEEDED, done
        assert done.job.attempt == 2

        # The first attempt's result arrives late: the fence refuses it.
        channel = grpc.insecure_channel(cp.address)
        stub = connector_pb2_grpc.ControlPlaneStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.FinishJob(
                connector_pb2.FinishJobRequest(
                    connector_id=CONNECTOR_ID,
                    host_id="agent-a",
                    job_id=record.job.id,
                    attempt=1,
                    outcome=connector_pb2.OUTCOME_SUCCEEDED,
                ),
                metadata=[("authorization", f"Bearer {TOKEN}")],
                timeout=10,
            )
        channel.close()
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert cp.admin.get(record.job.id).stale_finishes_refused == 1

    # Exactly one effect in EKS: one entry for the principal, one association with the grant's scope.
    eks = member_eks(sandbox, cluster.account, cluster.region)
    entries = [
        p
        for page in eks.get_paginator("list_access_entries").paginate(clusterName=cluster.name)
        for p in page["accessEntries"]
    ]
    assert entries.count(principal) == 1
    policies = eks.list_associated_access_policies(clusterName=cluster.name, principalArn=principal)[
        "associatedAccessPolicies"
    ]
    assert [(p["policyArn"].rsplit("/", 1)[-1], p["accessScope"]) for p in policies] == [
        ("AmazonEKSEditPolicy", {"type": "namespace", "namespaces": ["payments"]})
    ]
    tags = eks.describe_access_entry(clusterName=cluster.name, principalArn=principal)["accessEntry"]["tags"]
    assert tags[MANAGED_BY_KEY] == "access-connector"
    assert tags[POLICY_PREFIX + "AmazonEKSEditPolicy"] == "owned"
    assert [k for k in tags if k.startswith(GRANT_PREFIX)] == [GRANT_PREFIX + "e2e-kill-1"]
    assert sandbox.faults.calls("eks", "CreateAccessEntry") == 1  # the second attempt found it
