"""The SQLite database behind the control plane: connection, schema and one-transaction-per-change.

Times are stored as float epoch seconds (wall clock), so leases and backoffs survive a restart.
A file database uses WAL journaling; ":memory:" is for tests. All access goes through one thread
(see engine.py), so the connection is never shared concurrently.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    connector_id TEXT NOT NULL,
    idempotency_key TEXT,
    state INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    job BLOB NOT NULL,
    kind TEXT NOT NULL,
    integration_id TEXT NOT NULL,
    integration_type TEXT NOT NULL,
    created REAL NOT NULL,
    deadline REAL NOT NULL,
    available_at REAL NOT NULL,
    leased_by TEXT NOT NULL DEFAULT '',
    lease_expires REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error_code TEXT NOT NULL DEFAULT '',
    error_message TEXT NOT NULL DEFAULT '',
    error_retryable INTEGER NOT NULL DEFAULT 0,
    result BLOB,
    finished REAL,
    inventory_items INTEGER NOT NULL DEFAULT 0,
    stale_finishes_refused INTEGER NOT NULL DEFAULT 0,
    UNIQUE (connector_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (connector_id, state, available_at);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);

-- Every attempt that finished, so a repeated FinishJob for it is recognised as harmless.
CREATE TABLE IF NOT EXISTS job_attempts (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    outcome INTEGER NOT NULL,
    host_id TEXT NOT NULL,
    finished REAL NOT NULL,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE IF NOT EXISTS connector_tokens (
    token_sha256 TEXT PRIMARY KEY,
    connector_id TEXT NOT NULL,
    created REAL NOT NULL
);

-- Upload progress per (job, attempt).
CREATE TABLE IF NOT EXISTS uploads (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    items_received INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    digest_ok INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, attempt)
);

-- Items of an upload in progress, in upload order (the digest is computed over them); merged into
-- `inventory` once the final chunk's digest matches, then deleted.
CREATE TABLE IF NOT EXISTS upload_items (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    account_id TEXT NOT NULL,
    region TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    item BLOB NOT NULL,
    PRIMARY KEY (job_id, attempt, pos)
);

CREATE TABLE IF NOT EXISTS inventory (
    integration_id TEXT NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    account_id TEXT NOT NULL,
    region TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    item BLOB NOT NULL,
    job_id TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (integration_id, type, id)
);
CREATE INDEX IF NOT EXISTS inventory_account ON inventory (integration_id, account_id);

-- A split sync: once the discovery job (parent) succeeds, its ACTIVE accounts are spread over child jobs.
CREATE TABLE IF NOT EXISTS sync_splits (
    parent_job_id TEXT PRIMARY KEY,
    connector_id TEXT NOT NULL,
    accounts_per_job INTEGER NOT NULL,
    timeout REAL NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    child_job_ids TEXT NOT NULL DEFAULT '[]'
);

-- What connectors did on their own (ReportEvents), idempotent by (connector, event id).
CREATE TABLE IF NOT EXISTS events (
    connector_id TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    time REAL NOT NULL,
    grant_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    event BLOB NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (connector_id, id)
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
"""


class Database:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves, one transaction per change.
        # check_same_thread=False: opened by the caller, then used only by the engine's single DB thread.
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA busy_timeout = 5000")
        if self.path != ":memory:":
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
