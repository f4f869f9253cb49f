"""Chunking limits, digest and the thread -> queue -> uploader stream (with a fake send: our boundary)."""

from __future__ import annotations

import asyncio
import hashlib
import threading

import grpc
import pytest
from grpc import aio

from connector.agent.inventory_upload import (
    MAX_BATCH_CHUNKS,
    MAX_CHUNK_BYTES,
    MAX_CHUNK_ITEMS,
    ChunkBuilder,
    InventorySink,
    InventoryUploader,
    item_to_proto,
)
from connector.errors import ConnectorError, ErrorCode
from connector.integrations.base import InventoryItem
from connector.v1 import connector_pb2


def _item(i: int, pad: int = 0) -> connector_pb2.InventoryItem:
    return item_to_proto(InventoryItem(type="t", id=f"id-{i}", name="n", attributes={"i": i, "pad": "x" * pad}))


def test_chunks_respect_item_and_byte_limits_and_digest_covers_every_item_in_order() -> None:
    builder = ChunkBuilder()
    chunks: list[list[connector_pb2.InventoryItem]] = []
    expected = hashlib.sha256()
    items = [_item(i, pad=(20_000 if i % 3 == 0 else 10)) for i in range(2000)]
    for item in items:
        expected.update(item.SerializeToString(deterministic=True))
        if (full := builder.add(item)) is not None:
            chunks.append(full)
    last, digest = builder.finish()
    chunks.append(last)
    assert [i.id for c in chunks for i in c] == [i.id for i in items]
    for c in chunks:
        chunk = connector_pb2.InventoryChunk(
            connector_id="c" * 256, job_id="j" * 256, attempt=99, seq=10_000, items=c, digest=digest
        )
        assert len(c) <= MAX_CHUNK_ITEMS
        assert chunk.ByteSize() <= MAX_CHUNK_BYTES
    assert any(len(c) < MAX_CHUNK_ITEMS for c in chunks[:-1]), "byte limit never cut a chunk"
    assert digest.item_count == 2000
    assert digest.sha256 == expected.hexdigest()


def test_item_count_limit_cuts_at_500() -> None:
    builder = ChunkBuilder()
    fulls = [f for i in range(1001) if (f := builder.add(_item(i))) is not None]
    assert [len(f) for f in fulls] == [500, 500]
    assert len(builder.finish()[0]) == 1


def test_an_item_over_the_chunk_limit_is_a_clear_error() -> None:
    with pytest.raises(ConnectorError, match=r"over the .* byte chunk limit"):
        ChunkBuilder().add(_item(1, pad=MAX_CHUNK_BYTES))


def test_attributes_that_are_not_plain_json_are_rendered_not_fatal() -> None:
    import datetime

    proto = item_to_proto(InventoryItem(type="t", id="1", attributes={"when": datetime.date(2026, 1, 2), "n": [1]}))
    assert proto.attributes["when"] == "2026-01-02"
    assert list(proto.attributes["n"]) == [1]


class FakeServer:
    """Stores chunks like the protocol says (seq idempotent, gaps refused) and fails on request."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.calls = 0
        self.stored: dict[int, connector_pb2.InventoryChunk] = {}
        self.max_batch = 0
        self.streams = 0

    async def send(self, chunks: list[connector_pb2.InventoryChunk]) -> connector_pb2.UploadInventoryResponse:
        self.calls += 1
        self.max_batch = max(self.max_batch, len(chunks))
        for n, chunk in enumerate(chunks):
            if chunk.seq > len(self.stored):
                raise AssertionError("gap")
            self.stored.setdefault(chunk.seq, chunk)
            if self.fail_first and n == len(chunks) // 2:  # fail mid-stream after storing some chunks
                self.fail_first -= 1
                raise aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, aio.Metadata(), aio.Metadata(), "down")
        self.streams += 1
        digest_ok = False
        last = chunks[-1]
        if last.HasField("digest"):
            sha = hashlib.sha256()
            count = 0
            for seq in sorted(self.stored):
                for item in self.stored[seq].items:
                    sha.update(item.SerializeToString(deterministic=True))
                    count += 1
            digest_ok = sha.hexdigest() == last.digest.sha256 and count == last.digest.item_count
        return connector_pb2.UploadInventoryResponse(
            items_received=sum(len(c.items) for c in self.stored.values()),
            next_seq=len(self.stored),
            digest_ok=digest_ok,
        )


async def _stream(server: FakeServer, count: int) -> tuple[InventoryUploader, object]:
    loop = asyncio.get_running_loop()
    uploader = InventoryUploader(server.send, connector_id="c", job_id="j", attempt=1, max_wait=0.01)
    cancelled = threading.Event()
    sink = InventorySink(loop, uploader.queue, cancelled, lambda: uploader.error)
    task = asyncio.create_task(uploader.run())

    def produce() -> None:
        for i in range(count):
            sink.emit(InventoryItem(type="t", id=str(i), attributes={"i": i}))
        sink.close()

    await loop.run_in_executor(None, produce)
    return uploader, await task


@pytest.mark.timeout(60)
def test_stream_batches_at_most_16_chunks_and_resends_a_failed_batch() -> None:
    server = FakeServer(fail_first=2)
    uploader, result = asyncio.run(_stream(server, 20_000))
    assert uploader.error is None
    assert result.digest_ok and result.items == 20_000  # type: ignore[attr-defined]
    assert server.max_batch <= MAX_BATCH_CHUNKS
    assert [c.seq for _, c in sorted(server.stored.items())] == list(range(len(server.stored)))
    assert all(c.job_id == "j" and c.attempt == 1 for c in server.stored.values())
    assert server.calls == server.streams + 2  # two failed streams, resent


@pytest.mark.timeout(60)
def test_upload_failing_for_good_unblocks_the_producer_and_fails_the_job_retryably() -> None:
    server = FakeServer(fail_first=10_000)

    async def go() -> tuple[InventoryUploader, BaseException | None]:
        loop = asyncio.get_running_loop()
        uploader = InventoryUploader(server.send, connector_id="c", job_id="j", attempt=1, attempts=3, max_wait=0.01)
        sink = InventorySink(loop, uploader.queue, threading.Event(), lambda: uploader.error)
        task = asyncio.create_task(uploader.run())

        def produce() -> BaseException | None:
            try:
                for i in range(100_000):
                    sink.emit(InventoryItem(type="t", id=str(i)))
                sink.close()
            except ConnectorError as exc:
                return exc
            return None

        raised = await loop.run_in_executor(None, produce)
        await task
        return uploader, raised

    uploader, raised = asyncio.run(go())
    assert isinstance(raised, ConnectorError)
    assert raised.code == ErrorCode.UNAVAILABLE and raised.retryable
    assert uploader.error is raised
