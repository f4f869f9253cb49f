"""Split syncs: several connector replicas share a large organisation.

A split sync starts as one discovery job (SyncJob.discovery_only: the organisation tree, its accounts and the
Identity Center directory). When it succeeds, the ACTIVE accounts it uploaded are spread over child sync jobs
of at most `accounts_per_job` accounts each, with the parent's integration and resource types; any replica
may lease them. The children are enqueued in the same transaction that marks the split done, and each has
the idempotency key `split:<parent>:<n>`, so a control plane restarted in between resumes the split on
start-up without enqueueing anything twice.
"""

from __future__ import annotations

import json
import sqlite3
import uuid

from connector.controlplane.db import Database
from connector.controlplane.store import QUEUED, SUCCEEDED, TERMINAL, Change, insert_job, to_timestamp
from connector.v1 import connector_pb2


class SplitStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def pending(self) -> list[str]:
        rows = self.db.conn.execute("SELECT parent_job_id FROM sync_splits WHERE done = 0").fetchall()
        return [str(r[0]) for r in rows]

    def children(self, parent_job_id: str) -> list[str]:
        row = self.db.conn.execute(
            "SELECT child_job_ids FROM sync_splits WHERE parent_job_id = ?", (parent_job_id,)
        ).fetchone()
        return list(json.loads(row[0])) if row is not None else []

    def complete(self, parent_job_id: str, now: float) -> list[Change]:
        """Once the discovery job is terminal: enqueue the children (if it succeeded) and mark the split done."""
        changes: list[Change] = []
        with self.db.transaction() as conn:
            split = conn.execute(
                "SELECT connector_id, accounts_per_job, timeout FROM sync_splits WHERE parent_job_id = ? AND done = 0",
                (parent_job_id,),
            ).fetchone()
            if split is None:
                return []
            parent = conn.execute("SELECT state, job FROM jobs WHERE id = ?", (parent_job_id,)).fetchone()
            if parent is None or parent["state"] not in TERMINAL:
                return []
            child_ids: list[str] = []
            if parent["state"] == SUCCEEDED:
                template = connector_pb2.Job.FromString(parent["job"])
                accounts = self._active_accounts(conn, template.integration.id, parent_job_id)
                size = max(1, int(split["accounts_per_job"]))
                for n, start in enumerate(range(0, len(accounts), size)):
                    child = connector_pb2.Job(
                        id=str(uuid.uuid4()),
                        integration=template.integration,
                        created=to_timestamp(now),
                        deadline=to_timestamp(now + float(split["timeout"])),
                        sync=connector_pb2.SyncJob(
                            resource_types=template.sync.resource_types, account_ids=accounts[start : start + size]
                        ),
                    )
                    insert_job(
                        conn,
                        split["connector_id"],
                        child,
                        f"split:{parent_job_id}:{n}",
                        now,
                        now + float(split["timeout"]),
                    )
                    child_ids.append(child.id)
                    changes.append(Change("enqueued", child.id, split["connector_id"], QUEUED, 1))
            conn.execute(
                "UPDATE sync_splits SET done = 1, child_job_ids = ? WHERE parent_job_id = ?",
                (json.dumps(child_ids), parent_job_id),
            )
        return changes

    @staticmethod
    def _active_accounts(conn: sqlite3.Connection, integration_id: str, job_id: str) -> list[str]:
        rows = conn.execute(
            "SELECT item FROM inventory WHERE integration_id = ? AND type = 'aws.account' AND job_id = ?",
            (integration_id, job_id),
        ).fetchall()
        accounts = []
        for row in rows:
            item = connector_pb2.InventoryItem.FromString(row[0])
            if item.attributes.fields["state"].string_value == "ACTIVE":
                accounts.append(item.id)
        return sorted(accounts)
