"""FinishBatcher against a send function of our own (the gRPC call is covered by test_agent_finish_batch)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
import pytest
from grpc import aio

from connector.agent.finish_batch import BatchUnavailable, FinishBatcher
from connector.v1 import connector_pb2

pytestmark = pytest.mark.timeout(30)


def _result(job_id: str) -> connector_pb2.FinishJobRequest:
    return connector_pb2.FinishJobRequest(job_id=job_id, attempt=1, outcome=connector_pb2.OUTCOME_SUCCEEDED)


class _Server:
    """Answers each batch once `release` is set; records what each call carried."""

    def __init__(self, answer: int | None = None) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.answer = answer  # statuses per call (None: one per result)

    async def send(self, requests: Sequence[connector_pb2.FinishJobRequest]) -> connector_pb2.FinishJobsResponse:
        self.batches.append([r.job_id for r in requests])
        await self.release.wait()
        count = len(requests) if self.answer is None else self.answer
        return connector_pb2.FinishJobsResponse(
            statuses=[connector_pb2.FinishJobStatus(recorded=True) for _ in range(count)]
        )


def test_results_queued_behind_a_call_in_flight_leave_together() -> None:
    async def scenario() -> None:
        server = _Server()
        batcher = FinishBatcher(server.send, max_batch=3)
        first = asyncio.create_task(batcher.finish(_result("a")))
        await asyncio.sleep(0)  # "a" leaves at once, alone
        rest = [asyncio.create_task(batcher.finish(_result(j))) for j in "bcde"]
        await asyncio.sleep(0)
        server.release.set()
        statuses = await asyncio.gather(first, *rest)
        assert all(s.recorded for s in statuses)
        assert server.batches == [["a"], ["b", "c", "d"], ["e"]]
        assert batcher.calls == 3

    asyncio.run(scenario())


def test_a_cancelled_wait_is_not_sent() -> None:
    async def scenario() -> None:
        server = _Server()
        batcher = FinishBatcher(server.send)
        first = asyncio.create_task(batcher.finish(_result("a")))
        await asyncio.sleep(0)
        dropped = asyncio.create_task(batcher.finish(_result("b")))
        kept = asyncio.create_task(batcher.finish(_result("c")))
        await asyncio.sleep(0)
        dropped.cancel()
        server.release.set()
        await asyncio.gather(first, kept)
        assert server.batches == [["a"], ["c"]]

    asyncio.run(scenario())


def test_an_answer_of_the_wrong_length_sends_each_result_back_to_finish_job() -> None:
    async def scenario() -> None:
        server = _Server(answer=1)
        server.release.set()
        batcher = FinishBatcher(server.send)
        first = asyncio.create_task(batcher.finish(_result("a")))
        await asyncio.sleep(0)
        pair = [asyncio.create_task(batcher.finish(_result(j))) for j in "bc"]
        assert (await first).recorded
        for task in pair:
            with pytest.raises(BatchUnavailable, match="answered 1 of 2"):
                await task
        assert batcher.supported  # a bad answer is not "unsupported": the next result tries a batch again

    asyncio.run(scenario())


def test_unimplemented_turns_batches_off() -> None:
    async def scenario() -> None:
        calls = 0

        async def send(requests: Sequence[connector_pb2.FinishJobRequest]) -> connector_pb2.FinishJobsResponse:
            nonlocal calls
            calls += 1
            raise aio.AioRpcError(grpc.StatusCode.UNIMPLEMENTED, aio.Metadata(), aio.Metadata(), "not here")

        batcher = FinishBatcher(send)
        tasks = [asyncio.create_task(batcher.finish(_result(j))) for j in "abc"]
        for task in tasks:
            with pytest.raises(BatchUnavailable):
                await task
        assert not batcher.supported and calls == 1
        with pytest.raises(BatchUnavailable):
            await batcher.finish(_result("d"))
        assert calls == 1

    asyncio.run(scenario())
