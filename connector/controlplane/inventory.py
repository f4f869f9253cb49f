"""Inventory uploads and queries.

An upload is per (job, attempt): chunks numbered 0, 1, 2, ...; a chunk already stored is ignored (an
idempotent resend), a gap is refused with the expected seq, a chunk for a stale attempt is refused.
Items are staged in upload order; when the final chunk (the one with the digest) arrives, the SHA-256 over
the staged items' deterministic serialisations is checked, and only a matching upload is merged into the
inventory (per integration id, (type, id) unique, last writer wins). So a partial or corrupt upload, or an
older attempt's items, never reach the inventory.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass

from connector.controlplane.db import Database
from connector.controlplane.store import LEASED, RefusalCode, Refused
from connector.v1 import admin_pb2, connector_pb2

MAX_ITEMS_PER_CHUNK = 500
MAX_CHUNK_BYTES = 1024 * 1024
MAX_CHUNKS_PER_STREAM = 16


@dataclass(frozen=True)
class ChunkStatus:
    items_received: int
    next_seq: int
    digest_ok: bool
    stored: bool  # False when the chunk was an already-stored resend
    complete: bool  # the final (digest) chunk has arrived
    merged: int = 0  # items merged into the inventory by this chunk


def validate_chunk(chunk: connector_pb2.InventoryChunk) -> None:
    """Shape checks that need no database: sizes and item identity."""
    if not chunk.job_id:
        raise Refused(RefusalCode.INVALID_ARGUMENT, "InventoryChunk.job_id is empty")
    if chunk.attempt < 1:
        raise Refused(RefusalCode.INVALID_ARGUMENT, "InventoryChunk.attempt must be >= 1")
    if len(chunk.items) > MAX_ITEMS_PER_CHUNK:
        raise Refused(
            RefusalCode.INVALID_ARGUMENT,
            f"chunk seq {chunk.seq} has {len(chunk.items)} items; at most {MAX_ITEMS_PER_CHUNK} per chunk",
        )
    size = chunk.ByteSize()
    if size > MAX_CHUNK_BYTES:
        raise Refused(
            RefusalCode.INVALID_ARGUMENT, f"chunk seq {chunk.seq} is {size} bytes; at most {MAX_CHUNK_BYTES} per chunk"
        )
    for index, item in enumerate(chunk.items):
        if not item.type or not item.id:
            raise Refused(
                RefusalCode.INVALID_ARGUMENT, f"chunk seq {chunk.seq} item {index}: type and id must be non-empty"
            )


class InventoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def upload(self, connector_id: str, chunk: connector_pb2.InventoryChunk, now: float) -> ChunkStatus:
        job_id, attempt = chunk.job_id, chunk.attempt
        with self.db.transaction() as conn:
            job = conn.execute(
                "SELECT state, attempt, kind, integration_id FROM jobs WHERE id = ? AND connector_id = ?",
                (job_id, connector_id),
            ).fetchone()
            if job is None:
                raise Refused(RefusalCode.NOT_FOUND, f"unknown job {job_id!r} for this connector")
            if job["kind"] != "sync":
                raise Refused(
                    RefusalCode.FAILED_PRECONDITION,
                    f"job {job_id} is a {job['kind']} job; only sync jobs upload inventory",
                )
            if attempt != job["attempt"]:
                raise Refused(RefusalCode.FAILED_PRECONDITION, f"stale attempt {attempt}, current is {job['attempt']}")
            row = conn.execute(
                "SELECT next_seq, items_received, complete, digest_ok FROM uploads WHERE job_id = ? AND attempt = ?",
                (job_id, attempt),
            ).fetchone()
            next_seq, received = (row["next_seq"], row["items_received"]) if row else (0, 0)
            complete, digest_ok = (bool(row["complete"]), bool(row["digest_ok"])) if row else (False, False)
            if chunk.seq < next_seq:
                return ChunkStatus(received, next_seq, digest_ok, stored=False, complete=complete)
            if job["state"] != LEASED:
                raise Refused(RefusalCode.FAILED_PRECONDITION, f"job {job_id} attempt {attempt} is no longer leased")
            if complete:
                raise Refused(
                    RefusalCode.FAILED_PRECONDITION,
                    f"the upload of job {job_id} attempt {attempt} is complete (its digest chunk was seq {next_seq - 1})",
                )
            if chunk.seq > next_seq:
                raise Refused(
                    RefusalCode.FAILED_PRECONDITION,
                    f"chunk seq {chunk.seq} out of order: expected seq {next_seq} for job {job_id} attempt {attempt}",
                )
            if chunk.seq == 0:
                # Items of an older attempt of this job are discarded.
                conn.execute("DELETE FROM upload_items WHERE job_id = ? AND attempt <> ?", (job_id, attempt))
            conn.executemany(
                "INSERT INTO upload_items (job_id, attempt, pos, type, id, name, account_id, region, parent_id, item) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        job_id,
                        attempt,
                        received + i,
                        item.type,
                        item.id,
                        item.name,
                        item.account_id,
                        item.region,
                        item.parent_id,
                        item.SerializeToString(deterministic=True),
                    )
                    for i, item in enumerate(chunk.items)
                ],
            )
            received += len(chunk.items)
            next_seq += 1
            merged = 0
            if chunk.HasField("digest"):
                complete = True
                digest_ok = self._digest_matches(conn, job_id, attempt, received, chunk.digest)
                if digest_ok:
                    merged = self._merge(conn, job_id, attempt, job["integration_id"], now)
                conn.execute("DELETE FROM upload_items WHERE job_id = ?", (job_id,))
            conn.execute(
                "INSERT INTO uploads (job_id, attempt, next_seq, items_received, complete, digest_ok) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, attempt) DO UPDATE SET next_seq = excluded.next_seq, "
                "items_received = excluded.items_received, complete = excluded.complete, digest_ok = excluded.digest_ok",
                (job_id, attempt, next_seq, received, int(complete), int(digest_ok)),
            )
            conn.execute("UPDATE jobs SET inventory_items = ? WHERE id = ?", (received, job_id))
        return ChunkStatus(received, next_seq, digest_ok, stored=True, complete=complete, merged=merged)

    @staticmethod
    def _digest_matches(
        conn: sqlite3.Connection, job_id: str, attempt: int, received: int, digest: connector_pb2.InventoryDigest
    ) -> bool:
        sha = hashlib.sha256()
        rows = conn.execute(
            "SELECT item FROM upload_items WHERE job_id = ? AND attempt = ? ORDER BY pos", (job_id, attempt)
        )
        for row in rows:
            sha.update(row["item"])
        return digest.item_count == received and sha.hexdigest() == digest.sha256.lower()

    @staticmethod
    def _merge(conn: sqlite3.Connection, job_id: str, attempt: int, integration_id: str, now: float) -> int:
        # Rows go in upload order, so when one upload carries the same (type, id) twice the later one wins.
        cur = conn.execute(
            "INSERT INTO inventory (integration_id, type, id, name, account_id, region, parent_id, item, job_id, "
            "updated) SELECT ?, type, id, name, account_id, region, parent_id, item, job_id, ? FROM upload_items "
            "WHERE job_id = ? AND attempt = ? ORDER BY pos "
            "ON CONFLICT (integration_id, type, id) DO UPDATE SET name = excluded.name, "
            "account_id = excluded.account_id, region = excluded.region, parent_id = excluded.parent_id, "
            "item = excluded.item, job_id = excluded.job_id, updated = excluded.updated",
            (integration_id, now, job_id, attempt),
        )
        return int(cur.rowcount)

    def query(self, request: admin_pb2.QueryInventoryRequest, limit: int) -> admin_pb2.QueryInventoryResponse:
        where, args = [], []
        for column, value in (
            ("integration_id", request.integration_id),
            ("type", request.type),
            ("account_id", request.account_id),
        ):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total = self.db.conn.execute(f"SELECT COUNT(*) FROM inventory {clause}", args).fetchone()[0]  # noqa: S608
        rows = self.db.conn.execute(
            f"SELECT item FROM inventory {clause} ORDER BY integration_id, type, id LIMIT ?",  # noqa: S608
            (*args, limit),
        )
        items = [connector_pb2.InventoryItem.FromString(r["item"]) for r in rows]
        return admin_pb2.QueryInventoryResponse(items=items, total=total)
