"""Work the connector does on its own: the expiry sweep, and reporting what it did with ReportEvents.

The sweeper (built by the jobs layer; it revokes expired grants through the integrations' own revoke) runs
on a timer in its own thread: it must not take a job slot, and it keeps running while the control plane
is unreachable, because an expired grant has to go whether or not anyone is listening. Its events wait in
a bounded outbox and are resent until ReportEvents accepts them (the server deduplicates by event id).
Sweeping (`SweepLoop.run`) and reporting (`EventReporter.run`) are separate supervised tasks: a slow or
failing report never delays a sweep, and a crashing sweep never stops the reports.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from google.protobuf.message import DecodeError
from grpc import aio

from connector.agent.channel import ControlPlaneClient, TokenUnavailable, is_fatal, is_transient
from connector.logging import get_logger
from connector.v1 import connector_pb2

log = get_logger("connector.agent.events")

SWEEP_INTERVAL = 60.0
MAX_EVENTS_PER_REPORT = 100
MAX_PENDING_EVENTS = 10_000
REPORT_TIMEOUT = 10.0
MAX_LOGGED_ID = 256  # an id from a job is cut to this in a log line


class Sweeper(Protocol):
    """What the agent needs of connector.jobs.expiry.ExpirySweeper. The sweeper learns integrations from the
    dispatcher (only settings that validated, from verified jobs), never from the agent's reading of a job."""

    def sweep(self) -> Sequence[Any]:  # items with .to_proto() -> ConnectorEvent (or ConnectorEvents)
        ...

    def status(self) -> Mapping[str, Mapping[str, Any]]:  # per integration: failing, failures, retry_in_seconds
        ...


def _as_proto(event: Any) -> connector_pb2.ConnectorEvent:
    if isinstance(event, connector_pb2.ConnectorEvent):
        return event
    proto = event.to_proto()
    assert isinstance(proto, connector_pb2.ConnectorEvent)
    return proto


class EventReporter:
    """The outbox. With `outbox_file` (under CONNECTOR_STATE_DIR) it survives a restart: events the control
    plane has not accepted yet are kept in that file (rewritten atomically on every change, one base64
    serialized ConnectorEvent per line) and loaded again when the agent starts."""

    def __init__(self, client: ControlPlaneClient, outbox_file: Path | None = None) -> None:
        self._client = client
        self._pending: collections.deque[connector_pb2.ConnectorEvent] = collections.deque()
        self._file = outbox_file
        self._added = asyncio.Event()
        self.reported = 0
        if outbox_file is not None and outbox_file.exists():
            for line in outbox_file.read_text(encoding="ascii").splitlines():
                try:
                    self._pending.append(connector_pb2.ConnectorEvent.FromString(base64.b64decode(line)))
                except (ValueError, DecodeError):
                    log.error("events_outbox_line_unreadable", file=str(outbox_file))
            if self._pending:
                log.info("events_outbox_loaded", pending=len(self._pending), file=str(outbox_file))

    def _save(self) -> None:
        if self._file is None:
            return
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(
            "".join(base64.b64encode(e.SerializeToString(deterministic=True)).decode() + "\n" for e in self._pending),
            encoding="ascii",
        )
        os.replace(tmp, self._file)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, events: Sequence[connector_pb2.ConnectorEvent]) -> None:
        self._pending.extend(events)
        dropped = 0
        while len(self._pending) > MAX_PENDING_EVENTS:  # a bound, not a policy: never reached in practice
            self._pending.popleft()
            dropped += 1
        if dropped:
            log.error("events_dropped", count=dropped, reason="outbox full while the control plane is unreachable")
        self._added.set()
        self._save()

    async def run(self, retry_interval: float) -> None:
        """Report events as they are added; while the control plane cannot take them, retry every
        `retry_interval` seconds (events added meanwhile go with the next attempt)."""
        while True:
            self._added.clear()
            if self._pending and not await self.flush():
                await asyncio.sleep(retry_interval)
                continue
            await self._added.wait()

    async def flush(self) -> bool:
        """Send everything pending; False when the control plane could not be reached (kept for later)."""
        while self._pending:
            batch = [self._pending[i] for i in range(min(MAX_EVENTS_PER_REPORT, len(self._pending)))]
            try:
                response = await self._client.report_events(batch, rpc_deadline=REPORT_TIMEOUT)
            except (aio.AioRpcError, TokenUnavailable) as exc:
                if is_transient(exc) or (isinstance(exc, aio.AioRpcError) and is_fatal(exc)):
                    log.warning("events_not_reported", pending=len(self._pending), error=_name(exc))
                    return False
                # Refused (INVALID_ARGUMENT): resending the same batch cannot help; log what was lost.
                log.error("events_refused", ids=[e.id for e in batch], error=_name(exc))
            else:
                self.reported += len(batch)
                log.info("events_reported", sent=len(batch), accepted=response.accepted)
            for _ in batch:
                self._pending.popleft()
            self._save()
        return True


def _name(exc: BaseException) -> str:
    return exc.code().name if isinstance(exc, aio.AioRpcError) else str(exc)


class SweepLoop:
    def __init__(
        self,
        sweeper: Sweeper,
        reporter: EventReporter,
        interval: float = SWEEP_INTERVAL,
        on_status: Callable[[Mapping[str, Mapping[str, Any]]], None] = lambda _: None,
    ) -> None:
        self.sweeper = sweeper
        self.reporter = reporter
        self.interval = interval
        self._on_status = on_status
        self.sweeps = 0
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="connector-sweep")

    def _sweep(self) -> list[connector_pb2.ConnectorEvent]:
        try:
            events = [_as_proto(event) for event in self.sweeper.sweep()]
        except Exception:  # one bad sweep must not stop the next
            log.exception("expiry_sweep_failed")
            return []
        try:
            self._on_status(self.sweeper.status())
        except Exception:  # metrics only: never worth losing the sweep's events over
            log.exception("expiry_status_failed")
        return events

    async def run(self) -> None:
        """Sweep every `interval` seconds; the events go to the outbox (EventReporter.run sends them)."""
        loop = asyncio.get_running_loop()
        while True:
            events = await loop.run_in_executor(self._thread, self._sweep)
            self.sweeps += 1
            if events:
                log.info("expiry_sweep_events", count=len(events))
                self.reporter.add(events)
            await asyncio.sleep(self.interval)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
