"""The sync's fan-out of scope tasks: every task runs once, the walk is held back at 2 x max_parallelism
tasks queued or running, scope errors are recorded and the rest go on, anything else stops the sync."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from connector.errors import JobCancelled
from connector.integrations.aws_organization.sync import OrgSync, ScopeTask
from connector.integrations.base import InventoryItem


class Ctx:
    def __init__(self) -> None:
        self.progress_calls: list[tuple[int, int]] = []

    def check_cancelled(self) -> None:
        pass

    def progress(self, done: int, total: int) -> None:
        self.progress_calls.append((done, total))

    def scope_progress(self, done: int, total: int) -> None:
        pass


def fan_out(batches: Iterator[list[ScopeTask]], parallelism: int, errors: list[str]) -> tuple[int, int]:
    def record(emit: Any, exc: BaseException, account_id: str, region: str, stage: str) -> None:
        errors.append(f"{account_id}/{region}")

    owner = SimpleNamespace(config=SimpleNamespace(max_parallelism=parallelism), _record_error=record)
    result: tuple[int, int] = OrgSync._fan_out(owner, batches, Ctx(), lambda item: None)  # type: ignore[arg-type]
    return result


def test_every_task_runs_once_and_the_walk_waits_at_twice_the_parallelism() -> None:
    lock = threading.Lock()
    ran: list[str] = []
    state = {"queued": 0, "most": 0}

    def work(account: str, region: str) -> Iterator[InventoryItem]:
        time.sleep(0.002)
        with lock:
            ran.append(f"{account}/{region}")
            state["queued"] -= 1
        yield InventoryItem(type="t", id=f"{account}/{region}")

    def batches() -> Iterator[list[ScopeTask]]:
        for n in range(60):
            with lock:  # what the walk has handed over and is not finished yet
                state["queued"] += 2
                state["most"] = max(state["most"], state["queued"])
            yield [ScopeTask(f"{n:012d}", region, "eks", work) for region in ("us-east-1", "eu-west-1")]

    errors: list[str] = []
    assert fan_out(batches(), 4, errors) == (0, 120)
    assert sorted(ran) == sorted(f"{n:012d}/{r}" for n in range(60) for r in ("us-east-1", "eu-west-1"))
    assert state["most"] <= 2 * 4 + 2  # the batch being handed over, on top of the 8 slots
    assert not errors


def test_a_scope_error_is_recorded_and_the_others_go_on() -> None:
    def work(account: str, region: str) -> Iterator[InventoryItem]:
        if account.endswith("7"):
            raise EndpointConnectionError(endpoint_url="https://eks.example")
        yield InventoryItem(type="t", id=account)

    errors: list[str] = []
    batches = iter([[ScopeTask(f"{n:012d}", "us-east-1", "eks", work)] for n in range(20)])
    assert fan_out(batches, 3, errors) == (2, 20)
    assert sorted(errors) == ["000000000007/us-east-1", "000000000017/us-east-1"]


def test_a_cancel_stops_the_sync_and_the_tasks_not_started() -> None:
    started: list[str] = []

    def work(account: str, region: str) -> Iterator[InventoryItem]:
        started.append(account)
        if account == "000000000003":
            raise JobCancelled()
        time.sleep(0.01)
        yield InventoryItem(type="t", id=account)

    batches = iter([[ScopeTask(f"{n:012d}", "us-east-1", "eks", work)] for n in range(500)])
    with pytest.raises(JobCancelled):
        fan_out(batches, 2, [])
    assert len(started) < 50  # the walk stopped handing tasks over; queued ones were cancelled
