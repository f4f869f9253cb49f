"""The server's steering values (HelloResponse), clamped to sane bounds, and the server clock offset."""

from __future__ import annotations

import time
from dataclasses import dataclass

from google.protobuf import duration_pb2, timestamp_pb2

from connector.v1 import connector_pb2

DEFAULT_POLL_WAIT = 20.0
DEFAULT_HEARTBEAT_INTERVAL = 5.0
DEFAULT_LEASE_DURATION = 30.0


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _seconds(d: duration_pb2.Duration, default: float) -> float:
    value = d.seconds + d.nanos / 1e9
    return value if value > 0 else default


@dataclass(frozen=True)
class Steering:
    poll_wait: float = DEFAULT_POLL_WAIT
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    lease_duration: float = DEFAULT_LEASE_DURATION
    # server clock minus local wall clock, seconds (to turn job deadlines into local monotonic time)
    clock_offset: float = 0.0

    @classmethod
    def from_hello(cls, resp: connector_pb2.HelloResponse, local_now: float | None = None) -> Steering:
        """Clamp what the server asked for: a broken or hostile value must not hot-loop or starve us."""
        lease = _clamp(_seconds(resp.lease_duration, DEFAULT_LEASE_DURATION), 5.0, 3600.0)
        heartbeat = _clamp(_seconds(resp.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL), 1.0, 60.0)
        heartbeat = max(1.0, min(heartbeat, lease / 3.0))
        poll_wait = _clamp(_seconds(resp.poll_wait, DEFAULT_POLL_WAIT), 1.0, 60.0)
        offset = 0.0
        if resp.HasField("server_time"):
            now = time.time() if local_now is None else local_now
            offset = resp.server_time.seconds + resp.server_time.nanos / 1e9 - now
        return cls(poll_wait, heartbeat, lease, offset)

    def local_deadline(self, deadline: timestamp_pb2.Timestamp | None) -> float | None:
        """A server-clock deadline as a time.monotonic() value, or None when the job has none."""
        if deadline is None or (deadline.seconds == 0 and deadline.nanos == 0):
            return None
        server_now = time.time() + self.clock_offset
        return time.monotonic() + (deadline.seconds + deadline.nanos / 1e9 - server_now)
