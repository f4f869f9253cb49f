"""Which replicas of which connectors this control plane has heard from: their Hello (version, capabilities)
and when each was last seen (a Hello, poll or heartbeat). In memory: after a restart every replica says Hello
again as it reconnects. Read by Admin.ListConnectors, so an operator's dispatch can say at once that a job's
connector has never connected, or that no live replica runs the job's integration type."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Replica:
    connector_id: str
    host_id: str
    version: str
    capabilities: tuple[str, ...]
    hello_time: float
    last_seen: float = field(default=0.0)


class Presence:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replicas: dict[tuple[str, str], Replica] = {}

    def hello(self, connector_id: str, host_id: str, version: str, capabilities: list[str], now: float) -> None:
        with self._lock:
            self._replicas[(connector_id, host_id)] = Replica(
                connector_id, host_id, version, tuple(capabilities), now, now
            )

    def seen(self, connector_id: str, host_id: str, now: float) -> None:
        with self._lock:
            replica = self._replicas.get((connector_id, host_id))
            if replica is not None:
                replica.last_seen = now

    def replicas(self, connector_id: str = "") -> list[Replica]:
        with self._lock:
            found = [r for (cid, _), r in self._replicas.items() if not connector_id or cid == connector_id]
        return sorted(found, key=lambda r: (r.connector_id, r.host_id))
