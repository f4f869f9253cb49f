"""The agent dials out and listens on nothing but its local health/metrics address.

`python -m connector run` runs against the real control plane; its sockets are read from /proc (psutil
is not installed): /proc/<pid>/fd links name socket inodes, /proc/<pid>/net/{tcp,tcp6,udp,udp6} give
each inode's state and local address.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import urllib.request
from pathlib import Path

import pytest

from connector.v1 import admin_pb2
from tests.agent.agent_harness import CONNECTOR_ID, agent_env, cp_settings, spawn_agent, start_cp, wait_log

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc"),
]

TCP_LISTEN = "0A"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _address(hex_addr: str) -> tuple[str, int]:
    host_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(host_hex)
    # /proc prints the address as host-order 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words)), int(port_hex, 16)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _sockets(pid: int, proto: str) -> list[tuple[str, tuple[str, int]]]:
    """(state, local address) of each `proto` socket (tcp or udp, v4 and v6) the process holds."""
    mine = _socket_inodes(pid)
    found = []
    for table in (f"/proc/{pid}/net/{proto}", f"/proc/{pid}/net/{proto}6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in mine:
                found.append((fields[3], _address(fields[1])))
    return found


def test_only_the_health_port_listens(tmp_path: Path) -> None:
    cp = start_cp(cp_settings(tmp_path))
    health_port = _free_port()
    env = agent_env(cp.address, CONNECTOR_HEALTH_ADDR=f"127.0.0.1:{health_port}", CONNECTOR_CONCURRENCY="4")
    log_path = tmp_path / "agent.log"
    proc = spawn_agent(env, log_path)
    try:
        wait_log(log_path, "registered", 60)
        # Exercise the whole path first (job threads, heartbeats, the inventory upload).
        record = cp.admin.enqueue_sync(CONNECTOR_ID, "noop-1", "noop", {"items": 3})
        assert cp.admin.wait(record.job.id, timeout=30).state == admin_pb2.JOB_STATE_SUCCEEDED
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics", timeout=10) as response:
            assert response.status == 200

        tcp = _sockets(proc.pid, "tcp")
        listening = [addr for state, addr in tcp if state == TCP_LISTEN]
        assert listening == [("127.0.0.1", health_port)], tcp
        # Everything else is outbound: established connections to the control plane, nothing bound for UDP.
        cp_port = int(cp.address.rsplit(":", 1)[1])
        assert any(state == "01" for state, _ in tcp), f"no established connection to the control plane {cp_port}"
        assert _sockets(proc.pid, "udp") == []
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        cp.stop()
