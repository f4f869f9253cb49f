"""Streaming a sync job's inventory: worker thread -> bounded queue -> batches of chunks over gRPC.

The integration's `ctx.emit` runs in the worker thread. `InventorySink` converts each item to its proto,
adds it to the digest (SHA-256 over each item's deterministic serialisation, in upload order) and packs
chunks of <= 500 items and <= 1 MiB. Full chunks go through a bounded asyncio queue: when the uploader
falls behind, the producing thread blocks (back-pressure), so memory never grows with inventory size.
`InventoryUploader` numbers the chunks and sends batches of <= 16 per UploadInventory stream, resending a
batch after a failure (the server ignores a seq it already stored).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2
from grpc import aio
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from connector.agent.channel import TokenUnavailable, is_transient
from connector.errors import ConnectorError, ErrorCode, JobCancelled
from connector.integrations.base import InventoryItem
from connector.logging import get_logger, redact_text
from connector.v1 import connector_pb2

log = get_logger("connector.agent.inventory")

MAX_CHUNK_ITEMS = 500
MAX_CHUNK_BYTES = 1024 * 1024
# Room for the chunk's own fields (ids, seq, digest) so the serialized chunk stays <= 1 MiB.
CHUNK_ITEM_BUDGET = MAX_CHUNK_BYTES - 4096
MAX_BATCH_CHUNKS = 16
QUEUE_CHUNKS = 4  # chunks waiting between the worker thread and the uploader
BATCH_LINGER = 1.0  # send a partial batch when no new chunk arrives for this long
UPLOAD_ATTEMPTS = 6


def _struct(attributes: Any) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    try:
        struct.update(attributes)
    except (TypeError, ValueError):
        # Not plain JSON (a datetime, a set, ...): store its JSON rendering rather than fail the sync.
        struct = struct_pb2.Struct()
        struct.update(json.loads(json.dumps(dict(attributes), default=str)))
    return struct


def item_to_proto(item: InventoryItem) -> connector_pb2.InventoryItem:
    return connector_pb2.InventoryItem(
        type=item.type,
        id=item.id,
        name=item.name,
        account_id=item.account_id,
        region=item.region,
        parent_id=item.parent_id,
        attributes=_struct(item.attributes),
    )


def _field_overhead(size: int) -> int:
    """Bytes a length-delimited field adds around `size` bytes: 1 tag byte + the varint length."""
    return 1 + max(1, (size.bit_length() + 6) // 7)


class ChunkBuilder:
    """Packs item protos into chunks within the limits and keeps the running digest. Pure: no I/O."""

    def __init__(self, max_items: int = MAX_CHUNK_ITEMS, max_bytes: int = CHUNK_ITEM_BUDGET) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: list[connector_pb2.InventoryItem] = []
        self._bytes = 0
        self._sha = hashlib.sha256()
        self.count = 0

    def add(self, item: connector_pb2.InventoryItem) -> list[connector_pb2.InventoryItem] | None:
        """Add one item; returns the previous chunk's items when this item did not fit in it."""
        data = item.SerializeToString(deterministic=True)
        size = len(data) + _field_overhead(len(data))
        if size > self.max_bytes:
            raise ConnectorError(
                ErrorCode.INTERNAL,
                f"inventory item {item.type[:64]!r}/{item.id[:200]!r} is {len(data)} bytes, over the "
                f"{self.max_bytes} byte chunk limit",
                retryable=False,
            )
        full = None
        if self._items and (len(self._items) >= self.max_items or self._bytes + size > self.max_bytes):
            full, self._items, self._bytes = self._items, [], 0
        self._items.append(item)
        self._bytes += size
        self._sha.update(data)
        self.count += 1
        return full

    def finish(self) -> tuple[list[connector_pb2.InventoryItem], connector_pb2.InventoryDigest]:
        items, self._items, self._bytes = self._items, [], 0
        return items, connector_pb2.InventoryDigest(item_count=self.count, sha256=self._sha.hexdigest())


_END = object()


class InventorySink:
    """The thread side: `emit` is the job's ctx.emit; `close` queues the final chunk with the digest."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[connector_pb2.InventoryChunk],
        cancelled: threading.Event,
        failure: Callable[[], ConnectorError | None],
    ) -> None:
        self._loop = loop
        self._queue = queue
        self._cancelled = cancelled
        self._failure = failure
        self._builder = ChunkBuilder()

    def _put(self, chunk: connector_pb2.InventoryChunk) -> None:
        future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(self._queue.put(chunk), self._loop)
        while True:  # block while the queue is full, but wake up for cancellation or an upload failure
            try:
                future.result(timeout=0.25)
                return
            except concurrent.futures.TimeoutError:
                pass
            if self._cancelled.is_set():
                future.cancel()
                raise JobCancelled()
            if (error := self._failure()) is not None:
                future.cancel()
                raise error

    def emit(self, item: InventoryItem) -> None:
        if self._cancelled.is_set():
            raise JobCancelled()
        if (error := self._failure()) is not None:
            raise error
        full = self._builder.add(item_to_proto(item))
        if full is not None:
            self._put(connector_pb2.InventoryChunk(items=full))

    def close(self) -> connector_pb2.InventoryDigest:
        items, digest = self._builder.finish()
        self._put(connector_pb2.InventoryChunk(items=items, digest=digest))
        return digest


@dataclass
class UploadResult:
    items: int = 0
    chunks: int = 0
    digest_ok: bool = False


class InventoryUploader:
    """The loop side: numbers chunks, sends batches, resends a batch after a failure."""

    def __init__(
        self,
        send: Callable[[Sequence[connector_pb2.InventoryChunk]], Awaitable[connector_pb2.UploadInventoryResponse]],
        *,
        connector_id: str,
        job_id: str,
        attempt: int,
        should_stop: Callable[[], bool] = lambda: False,
        attempts: int = UPLOAD_ATTEMPTS,
        max_wait: float = 5.0,
    ) -> None:
        self._send = send
        self._connector_id = connector_id
        self._job_id = job_id
        self._attempt = attempt
        self._should_stop = should_stop
        self._attempts = attempts
        self._max_wait = max_wait
        self.queue: asyncio.Queue[connector_pb2.InventoryChunk] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        self.error: ConnectorError | None = None
        self.result = UploadResult()
        self._next_seq = 0

    async def _send_batch(self, batch: list[connector_pb2.InventoryChunk]) -> connector_pb2.UploadInventoryResponse:
        for chunk in batch:
            if not chunk.job_id:
                chunk.connector_id = self._connector_id
                chunk.job_id = self._job_id
                chunk.attempt = self._attempt
                chunk.seq = self._next_seq
                self._next_seq += 1

        def stop(state: Any) -> bool:
            return bool(stop_after_attempt(self._attempts)(state)) or self._should_stop()

        retrying = AsyncRetrying(
            stop=stop,
            wait=wait_random_exponential(multiplier=0.2, max=self._max_wait),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._send(batch)
        if response.next_seq != self._next_seq:
            raise ConnectorError(
                ErrorCode.UNAVAILABLE,
                f"the control plane expects inventory chunk {response.next_seq} but {self._next_seq} were sent",
            )
        self.result.items = int(response.items_received)
        self.result.chunks = self._next_seq
        return response

    async def run(self) -> UploadResult:
        """Consume chunks until the final one (with the digest) is acknowledged. Sets `error` on failure."""
        batch: list[connector_pb2.InventoryChunk] = []
        try:
            while True:
                try:
                    if batch:
                        chunk = await asyncio.wait_for(self.queue.get(), BATCH_LINGER)
                    else:
                        chunk = await self.queue.get()
                except TimeoutError:
                    await self._send_batch(batch)
                    batch = []
                    continue
                batch.append(chunk)
                final = chunk.HasField("digest")
                if len(batch) >= MAX_BATCH_CHUNKS or final:
                    response = await self._send_batch(batch)
                    batch = []
                    if final:
                        self.result.digest_ok = response.digest_ok
                        if not response.digest_ok:
                            raise ConnectorError(
                                ErrorCode.UNAVAILABLE,
                                f"the control plane's inventory digest did not match ({chunk.digest.item_count} items sent)",
                            )
                        return self.result
        except ConnectorError as exc:
            self.error = exc
        except aio.AioRpcError as exc:
            # Failed for good (retries exhausted, or a refusal such as a stale attempt): the job fails
            # retryably, so the control plane runs it again.
            self.error = ConnectorError(
                ErrorCode.UNAVAILABLE,
                f"inventory upload failed at chunk {max(self._next_seq - 1, 0)}: {exc.code().name}: "
                f"{redact_text(exc.details() or '')[:300]}",
                retryable=True,
            )
        except TokenUnavailable as exc:
            self.error = ConnectorError(ErrorCode.UNAVAILABLE, f"inventory upload failed: {exc}", retryable=True)
        log.warning("inventory_upload_failed", job_id=self._job_id, error=str(self.error))
        return self.result
