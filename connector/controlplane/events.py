"""Connector events (ReportEvents): what a connector did on its own, e.g. revoking an expired grant while
the control plane was unreachable. Stored once per (connector, event id), so a resend is harmless."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connector.controlplane.db import Database
from connector.controlplane.store import RefusalCode, Refused
from connector.v1 import admin_pb2, connector_pb2

MAX_EVENTS_PER_REPORT = 500
MAX_EVENT_BYTES = 64 * 1024


def validate_events(events: Sequence[connector_pb2.ConnectorEvent]) -> None:
    if len(events) > MAX_EVENTS_PER_REPORT:
        raise Refused(
            RefusalCode.INVALID_ARGUMENT, f"{len(events)} events in one report; at most {MAX_EVENTS_PER_REPORT}"
        )
    for index, event in enumerate(events):
        if not event.id or not event.type:
            raise Refused(RefusalCode.INVALID_ARGUMENT, f"events[{index}]: id and type must be non-empty")
        if event.ByteSize() > MAX_EVENT_BYTES:
            raise Refused(RefusalCode.INVALID_ARGUMENT, f"events[{index}]: larger than {MAX_EVENT_BYTES} bytes")


class EventStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def report(
        self, connector_id: str, host_id: str, events: Sequence[connector_pb2.ConnectorEvent], now: float
    ) -> list[connector_pb2.ConnectorEvent]:
        """Stores the events not stored yet; returns those (a resent event is not returned again)."""
        accepted = []
        with self.db.transaction() as conn:
            for event in events:
                when = event.time.ToNanoseconds() / 1e9 if event.HasField("time") else now
                cur = conn.execute(
                    "INSERT INTO events (connector_id, id, type, time, grant_id, host_id, event, received) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connector_id, id) DO NOTHING",
                    (
                        connector_id,
                        event.id,
                        event.type,
                        when,
                        event.grant_id,
                        host_id,
                        event.SerializeToString(deterministic=True),
                        now,
                    ),
                )
                if cur.rowcount:
                    accepted.append(event)
        return accepted

    def list_events(self, request: admin_pb2.ListEventsRequest, limit: int) -> list[connector_pb2.ConnectorEvent]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("connector_id", request.connector_id),
            ("type", request.type),
            ("grant_id", request.grant_id),
        ):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.conn.execute(
            f"SELECT event FROM events {clause} ORDER BY time DESC, received DESC LIMIT ?",  # noqa: S608
            (*args, limit),
        )
        return [connector_pb2.ConnectorEvent.FromString(r["event"]) for r in rows]
