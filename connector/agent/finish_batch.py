"""Job results reported together: a FinishJobs call carries every result that finished while the previous one
was in flight.

No result waits for a timer. When nothing is in flight a result leaves at once, alone; under load the results
queue behind the call in flight and leave together in the next, so a replica finishing hundreds of jobs a
second makes a few calls instead of one per job. Each result gets back what FinishJob would have answered for
it alone. A control plane without FinishJobs answers UNIMPLEMENTED: the batcher then turns itself off and
the caller reports with FinishJob, as before the call existed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc import aio

from connector.logging import get_logger
from connector.v1 import connector_pb2

log = get_logger("connector.agent")

MAX_BATCH = 64  # results per call (the control plane takes up to 256)

SendBatch = Callable[[Sequence[connector_pb2.FinishJobRequest]], Awaitable[connector_pb2.FinishJobsResponse]]


class BatchUnavailable(Exception):
    """This result was not judged in a batch (unsupported, or the call failed): report it with FinishJob."""


class FinishBatcher:
    def __init__(self, send: SendBatch, max_batch: int = MAX_BATCH) -> None:
        self._send = send
        self._max_batch = max_batch
        self._queue: list[tuple[connector_pb2.FinishJobRequest, asyncio.Future[connector_pb2.FinishJobStatus]]] = []
        self._sender: asyncio.Task[None] | None = None
        self.supported = True
        self.calls = 0  # FinishJobs calls made (for the tests and the benchmarks)

    async def finish(self, request: connector_pb2.FinishJobRequest) -> connector_pb2.FinishJobStatus:
        """The control plane's judgement of this result. Raises BatchUnavailable when it was not judged."""
        if not self.supported:
            raise BatchUnavailable("the control plane does not take FinishJobs")
        future: asyncio.Future[connector_pb2.FinishJobStatus] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_queued(), name="finish-batches")
        return await future

    async def _send_queued(self) -> None:
        while self._queue:
            if not self.supported:
                batch, self._queue = self._queue, []
                _fail(batch, BatchUnavailable("the control plane does not take FinishJobs"))
                return
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            batch = [(request, future) for request, future in batch if not future.done()]  # drop cancelled waits
            if not batch:
                continue
            try:
                self.calls += 1
                response = await self._send([request for request, _ in batch])
            except aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    self.supported = False
                    log.info("finish_batches_unsupported", detail="reporting each job with FinishJob")
                _fail(batch, BatchUnavailable(f"FinishJobs failed: {exc.code().name}"))
                continue
            except Exception as exc:  # a token that cannot be read, a closed channel: each result retries alone
                _fail(batch, BatchUnavailable(f"FinishJobs failed: {type(exc).__name__}"))
                continue
            if len(response.statuses) != len(batch):
                _fail(batch, BatchUnavailable(f"FinishJobs answered {len(response.statuses)} of {len(batch)}"))
                continue
            for (_, future), status in zip(batch, response.statuses, strict=True):
                if not future.done():
                    future.set_result(status)


def _fail(
    batch: list[tuple[connector_pb2.FinishJobRequest, asyncio.Future[connector_pb2.FinishJobStatus]]],
    error: BatchUnavailable,
) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
