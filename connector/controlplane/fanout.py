"""Split syncs: several connector replicas share a large organisation.

A split sync starts as one discovery job (SyncJob.discovery_only: the organisation tree, its accounts and the
Identity Center directory). When it succeeds, the ACTIVE accounts it uploaded are spread over child sync jobs
of at most `accounts_per_job` accounts each (fewer when that many would not fit one PollJobs answer), with the
parent's integration and resource types; any replica may lease them. The children are enqueued in the same
transaction that marks the split done, and each has the idempotency key `split:<parent>:<n>`, so a control
plane restarted in between resumes the split on start-up without enqueueing anything twice.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable

from connector.controlplane.db import Database
from connector.controlplane.store import (
    QUEUED,
    SUCCEEDED,
    TERMINAL,
    Change,
    delivered_size,
    insert_job,
    to_timestamp,
)
from connector.v1 import connector_pb2


class SplitStore:
    def __init__(
        self, db: Database, sign: Callable[[connector_pb2.Job], None] | None = None, max_bytes: int | None = None
    ) -> None:
        self.db = db
        self._sign = sign  # children are signed like every enqueued job (see connector.controlplane.signing)
        self._max_bytes = max_bytes  # a child must fit one PollJobs answer (None: no limit)

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
                size, timeout = max(1, int(split["accounts_per_job"])), float(split["timeout"])
                start = 0
                while start < len(accounts):
                    child = self._fitting_child(template, accounts[start : start + size], now, timeout)
                    start += len(child.sync.account_ids)
                    key = f"split:{parent_job_id}:{len(child_ids)}"
                    insert_job(conn, split["connector_id"], child, key, now, now + timeout)
                    child_ids.append(child.id)
                    changes.append(Change("enqueued", child.id, split["connector_id"], QUEUED, 1))
            conn.execute(
                "UPDATE sync_splits SET done = 1, child_job_ids = ? WHERE parent_job_id = ?",
                (json.dumps(child_ids), parent_job_id),
            )
        return changes

    def _fitting_child(
        self, template: connector_pb2.Job, accounts: list[str], now: float, timeout: float
    ) -> connector_pb2.Job:
        """A signed child sync of the first of `accounts`, halving them until it fits one PollJobs answer. Enqueue
        checked that a one-account child fits; if even that does not, leasing fails it with TOO_LARGE."""
        while True:
            child = connector_pb2.Job(
                id=str(uuid.uuid4()),
                integration=template.integration,
                created=to_timestamp(now),
                deadline=to_timestamp(now + timeout),
                sync=connector_pb2.SyncJob(resource_types=template.sync.resource_types, account_ids=accounts),
            )
            if self._sign is not None:
                self._sign(child)
            # attempt=1: any attempt up to max_attempts (<= 100) costs the same 2 bytes.
            if len(accounts) == 1 or self._max_bytes is None or delivered_size(child, attempt=1) <= self._max_bytes:
                return child
            accounts = accounts[: len(accounts) // 2]

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
