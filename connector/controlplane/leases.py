"""Timers for lease expiries and retry backoffs: a heap of due times, one task sleeping until the earliest.

Nothing here polls the database: the heap holds (due, key) entries and the callback decides, inside a
store transaction, whether the lease really expired (a renewal pushes a newer entry; the older one then
finds the lease still valid and is dropped). `latest` remembers each key's newest due time so entries
made stale by a renewal are skipped without a database query.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Hashable

from connector.logging import get_logger

log = get_logger(__name__)


class Timers:
    def __init__(self, on_due: Callable[[list[Hashable]], Awaitable[None]]) -> None:
        self._on_due = on_due
        self._heap: list[tuple[float, int, Hashable]] = []
        self._latest: dict[Hashable, float] = {}
        self._counter = itertools.count()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def schedule(self, when: float, key: Hashable) -> None:
        """Runs on_due([key]) at wall-clock time `when`; a later schedule of the same key supersedes it."""
        self._latest[key] = when
        heapq.heappush(self._heap, (when, next(self._counter), key))
        self._changed.set()

    def forget(self, key: Hashable) -> None:
        self._latest.pop(key, None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="controlplane-timers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def __len__(self) -> int:
        return len(self._latest)

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            delay = (self._heap[0][0] - time.time()) if self._heap else None
            if delay is None or delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=delay)
                continue
            now = time.time()
            due: list[Hashable] = []
            while self._heap and self._heap[0][0] <= now:
                when, _, key = heapq.heappop(self._heap)
                if self._latest.get(key) == when:
                    del self._latest[key]
                    due.append(key)
            if due:
                try:
                    await self._on_due(due)
                except Exception:  # one bad batch must not stop every future expiry: try again shortly
                    log.exception("timer callback failed; retrying in 1 s", keys=len(due))
                    for key in due:
                        self.schedule(now + 1.0, key)
