"""Job state in SQLite. Every state transition is one transaction, so a lease expiry and a FinishJob
for the same attempt can never both win, and a restarted server carries on from the same file.

States: QUEUED -> LEASED -> SUCCEEDED | FAILED | CANCELLED, and LEASED -> QUEUED (attempt + 1) after a
lease expiry or a retryable failure. Each method returns the `Change`s it made, for logs and wake-ups.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from connector.controlplane.db import Database
from connector.v1 import admin_pb2, connector_pb2

QUEUED = admin_pb2.JOB_STATE_QUEUED
LEASED = admin_pb2.JOB_STATE_LEASED
SUCCEEDED = admin_pb2.JOB_STATE_SUCCEEDED
FAILED = admin_pb2.JOB_STATE_FAILED
CANCELLED = admin_pb2.JOB_STATE_CANCELLED
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
LEASE_EXPIRED = "LEASE_EXPIRED"


class RefusalCode(enum.Enum):
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"


class Refused(Exception):
    """A request the store will not apply; the servicer turns `code` into the gRPC status."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Change:
    """One job state change: logged as one line, and used to wake polls / waiters / timers."""

    event: str  # enqueued, leased, requeued, succeeded, failed, cancelled, cancel_requested, released
    job_id: str
    connector_id: str
    state: admin_pb2.JobState.ValueType
    attempt: int
    available_at: float | None = None  # requeued: when it may be leased again
    lease_expires: float | None = None  # leased: when the lease ends
    error_code: str = ""
    error_message: str = ""
    host_id: str = ""  # leased: the replica that took it


class FinishStatus(enum.Enum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    STALE = "stale"


@dataclass(frozen=True)
class FinishResult:
    status: FinishStatus
    current_attempt: int
    changes: list[Change]


@dataclass(frozen=True)
class HeartbeatResult:
    renewed: list[tuple[str, int]]
    cancelled: list[str]
    lost: list[str]


TOO_LARGE = "TOO_LARGE"


def _varint_bytes(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _attempt_bytes(attempt: int) -> int:
    return 1 + _varint_bytes(attempt) if attempt else 0  # Job.attempt: a 1-byte tag and a varint; absent when 0


def delivered_size(job: connector_pb2.Job, attempt: int | None = None) -> int:
    """The bytes `job` adds to a PollJobsResponse as sent on `attempt` (default: its own): its serialised size,
    its field tag (1 byte) and its length varint."""
    size = job.ByteSize()
    if attempt is not None:
        size += _attempt_bytes(attempt) - _attempt_bytes(job.attempt)
    return 1 + _varint_bytes(size) + size


def to_timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


# SQL below is built only from these constant column names and fixed WHERE fragments; every value is a
# bound parameter (hence the S608 noqa marks).
_JOB_COLUMNS = (
    "id, connector_id, state, attempt, job, leased_by, lease_expires, error_code, error_message, "
    "error_retryable, result, finished, inventory_items, stale_finishes_refused"
)


def insert_job(
    conn: sqlite3.Connection,
    connector_id: str,
    job: connector_pb2.Job,
    idempotency_key: str,
    now: float,
    deadline: float,
) -> None:
    conn.execute(
        "INSERT INTO jobs (id, connector_id, idempotency_key, state, attempt, job, kind, integration_id, "
        "integration_type, created, deadline, available_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
        (
            job.id,
            connector_id,
            idempotency_key or None,
            QUEUED,
            job.SerializeToString(deterministic=True),
            job.WhichOneof("kind") or "",
            job.integration.id,
            job.integration.type,
            now,
            deadline,
            now,
        ),
    )


def record_from_row(row: sqlite3.Row) -> admin_pb2.JobRecord:
    job = connector_pb2.Job.FromString(row["job"])
    job.attempt = row["attempt"]
    record = admin_pb2.JobRecord(
        job=job,
        connector_id=row["connector_id"],
        state=row["state"],
        leased_by=row["leased_by"],
        inventory_items=row["inventory_items"],
        stale_finishes_refused=row["stale_finishes_refused"],
    )
    if row["lease_expires"] is not None:
        record.lease_expires.CopyFrom(to_timestamp(row["lease_expires"]))
    if row["error_code"] or row["error_message"]:
        record.error.code = row["error_code"]
        record.error.message = row["error_message"]
        record.error.retryable = bool(row["error_retryable"])
    if row["result"] is not None:
        record.result.CopyFrom(struct_pb2.Struct.FromString(row["result"]))
    if row["finished"] is not None:
        record.finished.CopyFrom(to_timestamp(row["finished"]))
    return record


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- reads ---------------------------------------------------------------------------------

    def get(self, job_id: str) -> admin_pb2.JobRecord | None:
        row = self.db.conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()  # noqa: S608
        return record_from_row(row) if row else None

    def list_jobs(self, connector_id: str, state: int, limit: int) -> list[admin_pb2.JobRecord]:
        where: list[str] = []
        args: list[Any] = []
        if connector_id:
            where.append("connector_id = ?")
            args.append(connector_id)
        if state:
            where.append("state = ?")
            args.append(state)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs {clause} ORDER BY created DESC, rowid DESC LIMIT ?",  # noqa: S608
            (*args, limit),
        ).fetchall()
        return [record_from_row(r) for r in rows]

    def leases(self) -> list[tuple[str, int, float]]:
        """(job id, attempt, lease expiry) of every leased job: the timers to re-arm after a restart."""
        rows = self.db.conn.execute("SELECT id, attempt, lease_expires FROM jobs WHERE state = ?", (LEASED,))
        return [(r["id"], r["attempt"], r["lease_expires"]) for r in rows]

    def delayed(self, now: float) -> list[tuple[str, float]]:
        """(connector id, available_at) of queued jobs held back by a retry backoff."""
        rows = self.db.conn.execute(
            "SELECT connector_id, available_at FROM jobs WHERE state = ? AND available_at > ?", (QUEUED, now)
        )
        return [(r["connector_id"], r["available_at"]) for r in rows]

    # -- transitions ---------------------------------------------------------------------------

    def enqueue(
        self,
        connector_id: str,
        job: connector_pb2.Job,
        idempotency_key: str,
        now: float,
        deadline: float,
        split: tuple[int, float] | None = None,
    ) -> tuple[admin_pb2.JobRecord, list[Change]]:
        """Stores a new job (or returns the one with the same idempotency key). `split` = (accounts per child
        job, child timeout) registers the job as the discovery job of a split sync, in the same transaction."""
        with self.db.transaction() as conn:
            if idempotency_key:
                row = conn.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE connector_id = ? AND idempotency_key = ?",  # noqa: S608
                    (connector_id, idempotency_key),
                ).fetchone()
                if row is not None:
                    return record_from_row(row), []
            insert_job(conn, connector_id, job, idempotency_key, now, deadline)
            if split is not None:
                conn.execute(
                    "INSERT INTO sync_splits (parent_job_id, connector_id, accounts_per_job, timeout) VALUES (?, ?, ?, ?)",
                    (job.id, connector_id, split[0], split[1]),
                )
            row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job.id,)).fetchone()  # noqa: S608
        return record_from_row(row), [Change("enqueued", job.id, connector_id, QUEUED, 1)]

    def lease(
        self, connector_id: str, host_id: str, max_jobs: int, now: float, lease_seconds: float, max_bytes: int
    ) -> tuple[list[connector_pb2.Job], list[Change]]:
        """Leases up to max_jobs queued jobs, oldest first, while the answer stays within max_bytes (see
        delivered_size): the job that would overflow it is not leased and leads the next poll. Jobs whose
        deadline already passed fail with TIMEOUT, and a job too large for any answer with TOO_LARGE, instead
        of being handed out."""
        jobs: list[connector_pb2.Job] = []
        changes: list[Change] = []
        used = 0
        expires = now + lease_seconds
        with self.db.transaction() as conn:
            while len(jobs) < max_jobs:
                # Without the job blobs: each is read only when its turn comes, so a poll never loads more
                # than one job past its budget.
                rows = conn.execute(
                    "SELECT id, attempt, deadline FROM jobs WHERE connector_id = ? AND state = ? "
                    "AND available_at <= ? ORDER BY available_at, rowid LIMIT ?",
                    (connector_id, QUEUED, now, max_jobs - len(jobs)),
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    if row["deadline"] <= now:
                        message = f"the job's deadline passed before a connector started attempt {row['attempt']}"
                        changes.append(
                            self._final(conn, row["id"], connector_id, row["attempt"], FAILED, now, "TIMEOUT", message)
                        )
                        continue
                    job = self._queued_job(conn, row["id"], row["attempt"])
                    size = delivered_size(job)
                    if size > max_bytes:  # stored before the limit was enforced, or the limit was lowered
                        changes.append(self._too_large(conn, connector_id, job, size, max_bytes, now))
                        continue
                    if used + size > max_bytes:
                        return jobs, changes  # it stays queued, attempt untouched; leaving the block commits
                    used += size
                    jobs.append(job)
                    changes.append(self._lease_one(conn, job, connector_id, host_id, expires))
        return jobs, changes

    @staticmethod
    def _queued_job(conn: sqlite3.Connection, job_id: str, attempt: int) -> connector_pb2.Job:
        job = connector_pb2.Job.FromString(conn.execute("SELECT job FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])
        job.attempt = attempt
        return job

    @staticmethod
    def _lease_one(
        conn: sqlite3.Connection, job: connector_pb2.Job, connector_id: str, host_id: str, expires: float
    ) -> Change:
        conn.execute(
            "UPDATE jobs SET state = ?, leased_by = ?, lease_expires = ? WHERE id = ?",
            (LEASED, host_id, expires, job.id),
        )
        return Change("leased", job.id, connector_id, LEASED, job.attempt, lease_expires=expires, host_id=host_id)

    def _too_large(
        self, conn: sqlite3.Connection, connector_id: str, job: connector_pb2.Job, size: int, max_bytes: int, now: float
    ) -> Change:
        message = (
            f"the job is {size} bytes, more than the {max_bytes} bytes one PollJobs answer may carry, so no "
            "connector can receive it; enqueue it again with smaller settings / target, or split it"
        )
        return self._final(conn, job.id, connector_id, job.attempt, FAILED, now, TOO_LARGE, message)

    def release(self, leased: Sequence[tuple[str, int]]) -> list[Change]:
        """Puts jobs leased to a poll whose caller went away back in the queue, same attempt."""
        changes = []
        with self.db.transaction() as conn:
            for job_id, attempt in leased:
                cur = conn.execute(
                    "UPDATE jobs SET state = ?, leased_by = '', lease_expires = NULL "
                    "WHERE id = ? AND attempt = ? AND state = ? RETURNING connector_id",
                    (QUEUED, job_id, attempt, LEASED),
                )
                for row in cur.fetchall():
                    changes.append(Change("released", job_id, row["connector_id"], QUEUED, attempt))
        return changes

    def heartbeat(
        self, connector_id: str, leases: Sequence[tuple[str, int]], now: float, lease_seconds: float
    ) -> HeartbeatResult:
        renewed: list[tuple[str, int]] = []
        cancelled: list[str] = []
        lost: list[str] = []
        with self.db.transaction() as conn:
            for job_id, attempt in leases:
                row = conn.execute(
                    "SELECT state, attempt, cancel_requested FROM jobs WHERE id = ? AND connector_id = ?",
                    (job_id, connector_id),
                ).fetchone()
                if row is None or row["state"] != LEASED or row["attempt"] != attempt:
                    lost.append(job_id)
                    continue
                conn.execute("UPDATE jobs SET lease_expires = ? WHERE id = ?", (now + lease_seconds, job_id))
                renewed.append((job_id, attempt))
                if row["cancel_requested"]:
                    cancelled.append(job_id)
        return HeartbeatResult(renewed, cancelled, lost)

    def finish(
        self,
        connector_id: str,
        request: connector_pb2.FinishJobRequest,
        now: float,
        max_attempts: int,
        retry_backoff: float,
    ) -> FinishResult:
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT state, attempt, cancel_requested FROM jobs WHERE id = ? AND connector_id = ?",
                (request.job_id, connector_id),
            ).fetchone()
            if row is None:
                raise Refused(RefusalCode.NOT_FOUND, f"unknown job {request.job_id!r} for this connector")
            current = row["attempt"]
            if row["state"] != LEASED or current != request.attempt:
                done = conn.execute(
                    "SELECT 1 FROM job_attempts WHERE job_id = ? AND attempt = ?", (request.job_id, request.attempt)
                ).fetchone()
                if done is not None:
                    return FinishResult(FinishStatus.DUPLICATE, current, [])
                conn.execute(
                    "UPDATE jobs SET stale_finishes_refused = stale_finishes_refused + 1 WHERE id = ?",
                    (request.job_id,),
                )
                return FinishResult(FinishStatus.STALE, current, [])
            conn.execute(
                "INSERT INTO job_attempts (job_id, attempt, outcome, host_id, finished) VALUES (?, ?, ?, ?, ?)",
                (request.job_id, current, request.outcome, request.host_id, now),
            )
            change = self._apply_outcome(conn, connector_id, request, row, now, max_attempts, retry_backoff)
        return FinishResult(FinishStatus.RECORDED, current, [change])

    def _apply_outcome(
        self,
        conn: sqlite3.Connection,
        connector_id: str,
        request: connector_pb2.FinishJobRequest,
        row: sqlite3.Row,
        now: float,
        max_attempts: int,
        retry_backoff: float,
    ) -> Change:
        job_id, attempt = request.job_id, row["attempt"]
        result = request.result.SerializeToString(deterministic=True) if request.HasField("result") else None
        if request.outcome == connector_pb2.OUTCOME_SUCCEEDED:
            conn.execute("UPDATE jobs SET result = ? WHERE id = ?", (result, job_id))
            return self._final(conn, job_id, connector_id, attempt, SUCCEEDED, now, "", "")
        if request.outcome == connector_pb2.OUTCOME_CANCELLED:
            code = request.error.code or "CANCELLED"
            message = request.error.message or "the connector stopped the job after a cancel request"
            conn.execute("UPDATE jobs SET result = ? WHERE id = ?", (result, job_id))
            return self._final(conn, job_id, connector_id, attempt, CANCELLED, now, code, message)
        code = request.error.code or "INTERNAL"
        message = request.error.message or "the connector reported a failure without an error"
        conn.execute("UPDATE jobs SET result = ? WHERE id = ?", (result, job_id))
        if request.error.retryable and attempt < max_attempts and not row["cancel_requested"]:
            return self._requeue(conn, job_id, connector_id, attempt, now + retry_backoff, code, message, True)
        return self._final(conn, job_id, connector_id, attempt, FAILED, now, code, message, request.error.retryable)

    def expire(self, job_id: str, attempt: int, now: float, max_attempts: int) -> tuple[float | None, list[Change]]:
        """Handles a lease that may have expired. Returns (the lease's real expiry if it was renewed, changes)."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT connector_id, lease_expires, leased_by, cancel_requested FROM jobs "
                "WHERE id = ? AND state = ? AND attempt = ?",
                (job_id, LEASED, attempt),
            ).fetchone()
            if row is None:
                return None, []
            if row["lease_expires"] > now:
                return row["lease_expires"], []
            connector_id = row["connector_id"]
            who = f"lease of attempt {attempt} expired (leased by {row['leased_by'] or 'unknown host'})"
            if row["cancel_requested"]:
                change = self._final(
                    conn, job_id, connector_id, attempt, CANCELLED, now, "CANCELLED", f"cancel requested; {who}"
                )
            elif attempt >= max_attempts:
                message = f"{who}; reached max attempts ({max_attempts})"
                change = self._final(conn, job_id, connector_id, attempt, FAILED, now, LEASE_EXPIRED, message)
            else:
                change = self._requeue(conn, job_id, connector_id, attempt, now, LEASE_EXPIRED, who, True)
        return None, [change]

    def cancel(self, job_id: str, now: float) -> tuple[admin_pb2.JobRecord, list[Change]]:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT connector_id, state, attempt FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise Refused(RefusalCode.NOT_FOUND, f"unknown job {job_id!r}")
            changes = []
            if row["state"] == QUEUED:
                message = "cancelled by an operator before a connector started it"
                changes.append(
                    self._final(conn, job_id, row["connector_id"], row["attempt"], CANCELLED, now, "CANCELLED", message)
                )
            elif row["state"] == LEASED:
                cur = conn.execute(
                    "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND cancel_requested = 0", (job_id,)
                )
                if cur.rowcount:
                    changes.append(Change("cancel_requested", job_id, row["connector_id"], LEASED, row["attempt"]))
            record = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()  # noqa: S608
        return record_from_row(record), changes

    # -- helpers (inside a transaction) --------------------------------------------------------

    def _final(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        connector_id: str,
        attempt: int,
        state: admin_pb2.JobState.ValueType,
        now: float,
        code: str,
        message: str,
        retryable: bool = False,
    ) -> Change:
        conn.execute(
            "UPDATE jobs SET state = ?, lease_expires = NULL, finished = ?, error_code = ?, error_message = ?, "
            "error_retryable = ? WHERE id = ?",
            (state, now, code, message, int(retryable), job_id),
        )
        # An upload that never completed is of no further use.
        conn.execute("DELETE FROM upload_items WHERE job_id = ?", (job_id,))
        event = {SUCCEEDED: "succeeded", FAILED: "failed", CANCELLED: "cancelled"}[state]
        return Change(event, job_id, connector_id, state, attempt, error_code=code, error_message=message)

    def _requeue(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        connector_id: str,
        attempt: int,
        available_at: float,
        code: str,
        message: str,
        retryable: bool,
    ) -> Change:
        # The last error stays on the record so an operator can see why the job is on attempt N.
        conn.execute(
            "UPDATE jobs SET state = ?, attempt = attempt + 1, available_at = ?, leased_by = '', "
            "lease_expires = NULL, inventory_items = 0, error_code = ?, error_message = ?, error_retryable = ? "
            "WHERE id = ?",
            (QUEUED, available_at, code, message, int(retryable), job_id),
        )
        conn.execute("DELETE FROM upload_items WHERE job_id = ? AND attempt <= ?", (job_id, attempt))
        return Change(
            "requeued",
            job_id,
            connector_id,
            QUEUED,
            attempt + 1,
            available_at=available_at,
            error_code=code,
            error_message=message,
        )
