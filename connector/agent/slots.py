"""Job slots: taken before polling (ask only for as many jobs as we can run), released as jobs end."""

from __future__ import annotations

import asyncio


class Slots:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0
        self._changed = asyncio.Condition()

    @property
    def free(self) -> int:
        return self.capacity - self.in_use

    async def take_all(self) -> int:
        """Wait for at least one free slot, then take every free one. Returns how many were taken."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.free > 0)
            taken = self.free
            self.in_use += taken
            self.peak = max(self.peak, self.in_use)
            return taken

    async def release(self, count: int = 1) -> None:
        if count <= 0:
            return
        async with self._changed:
            if count > self.in_use:
                raise RuntimeError(f"releasing {count} slots but only {self.in_use} are taken")
            self.in_use -= count
            self._changed.notify_all()
