"""A real HTTP proxy (Debian's tinyproxy) for the tests, with its log to read: what it was asked to CONNECT to,
which plain-HTTP requests it forwarded, what it refused. .ci/run installs tinyproxy."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary() -> str:
    path = shutil.which("tinyproxy") or ("/usr/bin/tinyproxy" if Path("/usr/bin/tinyproxy").exists() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("tinyproxy is missing: .ci/run installs it (apt-get install -y tinyproxy)")
        pytest.skip("tinyproxy is not installed (apt-get install -y tinyproxy)")
    return path


class Tinyproxy:
    """tinyproxy on 127.0.0.1:<free port> in the foreground (-d), logging at Info level to a file.
    `connect_ports`: allow CONNECT only to these (tinyproxy answers 403 for any other); None: any port."""

    def __init__(self, directory: Path, *, connect_ports: tuple[int, ...] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = directory / f"tinyproxy-{self.port}.log"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            f'LogFile "{self.log_path}"',
            "LogLevel Info",
            "MaxClients 50",
        ]
        lines += [f"ConnectPort {p}" for p in connect_ports or ()]
        self.config = directory / f"tinyproxy-{self.port}.conf"
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Tinyproxy:
        self.proc = subprocess.Popen(
            [binary(), "-d", "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"tinyproxy exited: {self.log()}") from None
                time.sleep(0.05)
        raise RuntimeError("tinyproxy did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Tinyproxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def requests(self) -> list[str]:
        """Every request line the proxy received: `CONNECT host:port HTTP/1.1`, `POST http://... HTTP/1.1`."""
        return re.findall(r"Request \(file descriptor \d+\): (.+)", self.log())

    def connects(self, authority: str) -> int:
        return sum(1 for line in self.requests() if line.startswith(f"CONNECT {authority} "))

    def refused_connects(self) -> list[str]:
        return re.findall(r"Refused CONNECT method on port (\d+)", self.log())
