"""Fan-out: the control plane splits a full sync into per-account jobs that two agents share; the inventory
is the same as one full sync's."""

from __future__ import annotations

from google.protobuf import json_format

from connector.v1 import admin_pb2
from tests.agent.agent_harness import CONNECTOR_ID, AgentThread, agent_env, cp_settings, start_cp

from .conftest import base_settings

TYPES = ["organization", "eks_cluster", "identity_center"]
INVENTORY_TYPES = (
    "aws.organization",
    "aws.root",
    "aws.ou",
    "aws.account",
    "eks.cluster",
    "eks.access_entry",
    "sso.instance",
    "sso.permission_set",
    "sso.user",
    "sso.group",
    "error",
)


def snapshot(admin, integration_id):
    items = {}
    for type_ in INVENTORY_TYPES:
        for item in admin.inventory(integration_id=integration_id, type=type_, limit=1000).items:
            items[(item.type, item.id)] = (
                item.name,
                item.account_id,
                item.region,
                item.parent_id,
                json_format.MessageToDict(item.attributes),
            )
    return items


def test_split_sync_by_two_agents_equals_one_full_sync(sandbox, tmp_path):
    info = sandbox.seed_info
    settings = base_settings(sandbox, regions=["us-east-1"], external_id=info.external_id)
    with start_cp(cp_settings(tmp_path, lease_seconds=30.0)) as cp:
        env = agent_env(cp.address, CONNECTOR_CONCURRENCY="1")
        with AgentThread(env | {"CONNECTOR_HOST_ID": "replica-a"}):
            full = cp.admin.enqueue_sync(CONNECTOR_ID, "org-full", "aws_organization", settings, resource_types=TYPES)
            full = cp.admin.wait(full.job.id, timeout=180)
            assert full.state == admin_pb2.JOB_STATE_SUCCEEDED, full

        with (
            AgentThread(env | {"CONNECTOR_HOST_ID": "replica-a"}),
            AgentThread(env | {"CONNECTOR_HOST_ID": "replica-b"}),
        ):
            parent = cp.admin.enqueue_sync(
                CONNECTOR_ID, "org-split", "aws_organization", settings, resource_types=TYPES, split_accounts_per_job=5
            )
            parent = cp.admin.wait(parent.job.id, timeout=120)
            assert parent.state == admin_pb2.JOB_STATE_SUCCEEDED, parent
            active = [a for a in info.accounts if a.state == "ACTIVE"]
            assert len(parent.child_job_ids) == -(-len(active) // 5)
            children = [cp.admin.wait(child, timeout=180) for child in parent.child_job_ids]
        assert all(c.state == admin_pb2.JOB_STATE_SUCCEEDED for c in children), [c.error for c in children]
        assert {c.leased_by for c in children} == {"replica-a", "replica-b"}  # the replicas shared the work
        covered = sorted(a for c in children for a in c.job.sync.account_ids)
        assert covered == sorted(a.id for a in active)  # every active account exactly once

        full_items, split_items = snapshot(cp.admin, "org-full"), snapshot(cp.admin, "org-split")
        assert len(full_items) > 60
        assert split_items.keys() == full_items.keys()
        assert split_items == full_items
        print(
            f"split sync: {len(children)} child jobs over 2 replicas, {len(split_items)} items, same as the full sync"
        )
