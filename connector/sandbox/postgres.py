"""A throwaway local PostgreSQL for the demo and the benchmarks (tooling, never shipped), as the tests start
theirs (tests/databases/servers.py): its own data directory in a temporary folder, a free loopback port,
password (SCRAM) logins over TCP, the superuser over its Unix socket only. PostgreSQL refuses to run as root:
as root it runs as the `postgres` system user (made by the Debian package).

`find_binaries()` says why there is none (so the demo can degrade with that message instead of failing).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class NoPostgres(RuntimeError):
    """No PostgreSQL server binaries on this machine (the message says how to get them)."""


def find_binaries() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    raise NoPostgres("no PostgreSQL server binaries (initdb, postgres): `apt-get install postgresql-15` or similar")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise NoPostgres("running as root, and there is no `postgres` user to run PostgreSQL as") from None


@dataclass
class LocalPostgres:
    root: Path
    port: int
    admin_password: str
    proc: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    @classmethod
    def start(cls, timeout: float = 30.0) -> LocalPostgres:
        bindir = find_binaries()
        user = _run_as()
        root = Path(tempfile.mkdtemp(prefix="ac-demo-pg-"))
        os.chmod(root, 0o755)  # noqa: S103 - the postgres user must reach its data directory inside
        data, sock, log = root / "data", root / "sock", root / "postgres.log"
        sock.mkdir()
        password = "pg-" + os.urandom(12).hex()
        (root / "pw").write_text(password)
        as_user: dict[str, Any] = (
            {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        )
        if user is not None:
            for path in (root, sock, root / "pw"):
                os.chown(path, user.pw_uid, user.pw_gid)
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={root / 'pw'}",
             "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--encoding=UTF8", "--locale=C.UTF-8"],
            capture_output=True, text=True, check=False, **as_user,
        )  # fmt: skip
        if init.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise NoPostgres(f"initdb failed: {init.stderr.strip()[-500:]}")
        port = _free_port()
        out = open(log, "ab")  # noqa: SIM115 - the server writes to it for its whole life
        proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=100", "-c", "log_min_messages=warning"],
            stdout=out, stderr=out, **as_user,
        )  # fmt: skip
        server = cls(root, port, password, proc)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise NoPostgres(f"postgres exited: {log.read_text(errors='replace')[-500:]}")
            with contextlib.suppress(Exception):
                server.admin().close()
                return server
            time.sleep(0.05)
        server.stop()
        raise NoPostgres(f"postgres did not start in {timeout:g} s")

    def admin(self, database: str = "postgres") -> Any:
        """A superuser connection (autocommit), for setting the demo's databases up."""
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user="postgres", password=self.admin_password, dbname=database,
            autocommit=True, connect_timeout=5, sslmode="disable",
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)
