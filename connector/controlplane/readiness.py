"""Can any replica take this job? What the operator commands say instead of waiting silently.

A job waits in QUEUED while no replica of its connector polls: the connector id was never started against
this control plane (a typo in `--connector-id`, or CONNECTOR_ID / CONTROL_PLANE_URL wrong on the agent's
side), every replica is gone, or the replicas that are there do not run the job's integration type (then it
would fail UNSUPPORTED). Answered from Admin.ListConnectors."""

from __future__ import annotations

import time

import grpc

from connector.controlplane.client import AdminClient
from connector.v1 import admin_pb2

# A live replica is heard from at least every poll wait (it polls again at once) and every heartbeat.
STALE_MARGIN = 15.0


def _seconds(value: object) -> float:
    return float(value.ToNanoseconds()) / 1e9  # type: ignore[attr-defined]


def live_replicas(response: admin_pb2.ListConnectorsResponse, now: float) -> list[admin_pb2.ConnectorReplica]:
    stale_after = _seconds(response.poll_wait) + 2 * _seconds(response.heartbeat_interval) + STALE_MARGIN
    return [r for r in response.replicas if now - r.last_seen.ToNanoseconds() / 1e9 <= stale_after]


def why_not_taken(admin: AdminClient, connector_id: str, integration_type: str) -> str | None:
    """None when a live replica of `connector_id` runs `integration_type`; otherwise what stops the job."""
    try:
        response = admin.connectors(connector_id)
    except grpc.RpcError as exc:
        if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None  # an older control plane: nothing to say
        raise
    now = time.time()
    if not response.replicas:
        return (
            f"connector {connector_id!r} has never said Hello to this control plane (since it started): the job "
            "waits in QUEUED until a replica connects. Check --connector-id, and on the connector's side "
            "CONNECTOR_ID, CONTROL_PLANE_URL and its logs (`registered` / `reconnecting` lines)"
        )
    live = live_replicas(response, now)
    if not live:
        last = max(response.replicas, key=lambda r: r.last_seen.ToNanoseconds())
        age = now - last.last_seen.ToNanoseconds() / 1e9
        return (
            f"no replica of connector {connector_id!r} has been heard from for {age:.0f} s (last: {last.host_id}): the "
            "job waits in QUEUED until one reconnects; check that the connector is running and its logs"
        )
    able = [r for r in live if integration_type in r.capabilities]
    if not able:
        runs = sorted({c for r in live for c in r.capabilities})
        return (
            f"the live replicas of connector {connector_id!r} ({', '.join(r.host_id for r in live)}) do not run "
            f"integration type {integration_type!r}: the job will fail UNSUPPORTED. They run: {', '.join(runs)}"
        )
    return None


def heartbeat_interval(admin: AdminClient) -> float:
    return _seconds(admin.connectors("~").heartbeat_interval)
