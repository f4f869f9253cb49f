"""`python -m connector.bench.sandbox_server '<SeedSpec fields as JSON>'`: the sandbox in its own process for
the benchmarks, seeded with any SeedSpec (`connector sandbox serve` only takes --accounts), and timed.

Timing: a WSGI layer in front of the sandbox adds up the seconds spent serving each AWS request (injected
latency included: that is "AWS time"), per service, and counts calls per (account, region, operation): the
call graph the sync's lower bound is computed from. Served at `GET/DELETE /_bench/timing`. Prints one
line `ready: {"endpoint", "env", "seed"}` when it serves; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from connector.sandbox import Sandbox, SeedSpec
from connector.sandbox.app import identify_request

TIMING_PATH = "/_bench/timing"


class TimingMiddleware:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}
        self._calls: dict[str, int] = {}
        self._graph: dict[str, int] = {}  # "account/region/service:Operation" -> calls
        self._spans: dict[str, list[float]] = {}  # service -> [first call's start, last answer's end] (perf_counter)

    def _identify(self, environ: dict[str, Any]) -> tuple[str, str]:
        """(service, "account/region/service:Operation") of an AWS request."""
        _, info, account = identify_request(environ)
        if info is None:
            return "unsigned", "-/-/unsigned:"
        return info.service, f"{account}/{info.region}/{info.service}:{info.operation}"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path == TIMING_PATH:
            return self._control(environ, start_response)
        if path.startswith("/_sandbox") or path.startswith("/moto-api"):
            return self.app(environ, start_response)
        started = time.perf_counter()
        service, key = self._identify(environ)
        body = list(self.app(environ, start_response))
        elapsed = time.perf_counter() - started
        with self._lock:
            self._seconds[service] = self._seconds.get(service, 0.0) + elapsed
            self._calls[service] = self._calls.get(service, 0) + 1
            self._graph[key] = self._graph.get(key, 0) + 1
            span = self._spans.setdefault(service, [started, started])
            span[1] = max(span[1], started + elapsed)
        return body

    def _control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._lock:
            if environ.get("REQUEST_METHOD") == "DELETE":
                self._seconds.clear()
                self._calls.clear()
                self._graph.clear()
                self._spans.clear()
            payload = {
                "seconds": {k: round(v, 6) for k, v in self._seconds.items()},
                "calls": dict(self._calls),
                "total_seconds": round(sum(self._seconds.values()), 6),
                "total_calls": sum(self._calls.values()),
                "graph": dict(self._graph),
                "span_seconds": {k: round(v[1] - v[0], 3) for k, v in self._spans.items()},
            }
        body = json.dumps(payload).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def spec_from_json(text: str) -> SeedSpec:
    fields: dict[str, Any] = json.loads(text)
    for name in ("regions", "modes", "resource_explorer_without_index"):
        if name in fields:
            fields[name] = tuple(fields[name])
    return SeedSpec(**fields)


def main(argv: list[str]) -> int:
    spec = spec_from_json(argv[0] if argv else "{}")
    sandbox = Sandbox.start(seed=spec)
    sandbox.wrap(TimingMiddleware)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    info = sandbox.seed_info
    seed = {
        "accounts": len(info.accounts),
        "active_accounts": sum(1 for a in info.accounts if a.state == "ACTIVE"),
        "ous": len(info.ou_ids) - 1,
        "clusters": len(info.clusters),
        "access_entries": sum(len(c.access_entries) for c in info.clusters),
        "seconds": info.seconds,
        "management_role_arn": info.management_role_arn,
        "member_role_name": info.member_role_name,
        "external_id": info.external_id,
        "account_without_member_role": info.account_without_member_role,
        "clusters_sample": [
            {"account": c.account, "region": c.region, "name": c.name, "mode": c.mode} for c in info.clusters[:50]
        ],
    }
    print("ready: " + json.dumps({"endpoint": sandbox.endpoint, "env": sandbox.env(), "seed": seed}), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
