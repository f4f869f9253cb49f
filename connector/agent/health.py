"""Local health and metrics HTTP endpoint (the only socket the agent listens on).

/healthz: 200 while the control loop is alive (it stamps `loop_alive` every turn) and the last poll or
heartbeat attempt is recent; /readyz: 200 once registered with Hello, not draining and no supervised task
down (the body names each task and its state); /metrics: Prometheus text. A stdlib server in a daemon
thread: it keeps answering even if the event loop is stuck, which is exactly when /healthz must say 503.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

LOOP_STALE_AFTER = 15.0  # the loop stamps every second; this long without a stamp = stuck


@dataclass(frozen=True)
class TaskHealth:
    """One supervised task as /readyz shows it (connector.agent.supervisor publishes these)."""

    up: bool
    state: str  # "running", "restarting in 2.1 s after ValueError (restart 3)", "stopped"


@dataclass
class HealthState:
    loop_alive: float = 0.0  # monotonic stamp of the last control-loop turn
    last_attempt: float = 0.0  # monotonic stamp of the last poll or heartbeat attempt
    attempt_stale_after: float = 120.0  # updated from the poll wait once registered
    registered: bool = False
    draining: bool = False
    # Replaced whole (never mutated) by the supervisor, so the HTTP thread always reads a consistent snapshot.
    tasks: Mapping[str, TaskHealth] = field(default_factory=dict)

    def healthy(self, now: float | None = None) -> tuple[bool, str]:
        now = time.monotonic() if now is None else now
        if not self.loop_alive or now - self.loop_alive > LOOP_STALE_AFTER:
            return False, "control loop not running"
        if not self.last_attempt or now - self.last_attempt > self.attempt_stale_after:
            return False, "no poll or heartbeat attempt recently"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        tasks = self.tasks
        down = [name for name, task in tasks.items() if not task.up]
        if self.draining:
            ok, reason = False, "draining"
        elif not self.registered:
            ok, reason = False, "not registered with the control plane"
        elif down:
            ok, reason = False, f"supervised task down: {', '.join(down)}"
        else:
            ok, reason = True, "ok"
        return ok, "\n".join([reason, *(f"task {name}: {task.state}" for name, task in tasks.items())])


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


class HealthServer:
    def __init__(self, addr: str, state: HealthState, registry: CollectorRegistry) -> None:
        host, port = _split(addr)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._text(*state.healthy())
                elif path == "/readyz":
                    self._text(*state.ready())
                elif path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _text(self, ok: bool, reason: str) -> None:
                self._send(200 if ok else 503, f"{reason}\n".encode(), "text/plain; charset=utf-8")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: stay quiet
                return

        try:
            self._server = Server((host, port), Handler)
        except OSError as exc:
            raise OSError(f"CONNECTOR_HEALTH_ADDR: cannot listen on {addr}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
