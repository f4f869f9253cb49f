"""Real database servers for the tests, started by the tests themselves: PostgreSQL 15 and MariaDB.

Each runs from its own data directory in a temporary folder, on a free loopback port, and is stopped at the
end of the session. PostgreSQL (and mariadbd) refuse to run as root, and CI runs as root: then the server
runs as an unprivileged system user (`postgres` / `mysql`, made by the Debian packages; created with
`useradd --system` when missing) that owns the data directory. A server that cannot start fails the test
session with its log: nothing is skipped.

PostgreSQL listens on TCP with TLS (a throwaway CA from tests/certs.py; the server certificate names
`localhost` and 127.0.0.1) and password authentication for every TCP login (`md5`, which takes SCRAM verifiers too; Redshift-style md5 hashes need it), so a wrong password is
refused as on RDS; the superuser logs in over its Unix socket only.
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

import psycopg
import pymysql

from tests.certs import TestCA


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _system_user(name: str) -> pwd.struct_passwd | None:
    """The account to run a server as: None when not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
        return pwd.getpwnam(name)


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def _as(user: pwd.struct_passwd | None) -> dict[str, Any]:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _wait(ready: Any, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready in {timeout:g} s:\n{log.read_text(errors='replace')[-3000:]}")


def pg_bindir() -> Path:
    """Where initdb and postgres live: on PATH (/usr/local/bin here), else Debian's postgresql-15 layout."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise RuntimeError("PostgreSQL is not installed: `apt-get install -y postgresql-15` (.ci/run does this)")


@dataclass
class PostgresServer:
    """A PostgreSQL cluster: superuser `postgres` (password `admin_password`) on 127.0.0.1:`port`."""

    root: Path
    port: int
    admin_password: str
    ca_file: Path
    proc: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = pg_bindir()
        user = _system_user("postgres")
        root = Path(tempfile.mkdtemp(prefix="ac-pg-"))
        os.chmod(root, 0o755)
        data, sock, log = root / "data", root / "sock", root / "postgres.log"
        sock.mkdir()
        password = "pg-admin-" + os.urandom(8).hex()
        pwfile = root / "pw"
        pwfile.write_text(password)
        ca = TestCA(root, "pg")
        issued = ca.issue("localhost", dns=("localhost",), ips=("127.0.0.1",))
        _chown_tree(root, user)
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}", "--auth-local=trust",
             "--auth-host=scram-sha-256", "--no-sync", "--encoding=UTF8", "--locale=C.UTF-8"],
            capture_output=True, text=True, **_as(user),
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stdout[-1500:]}\n{init.stderr[-1500:]}")
        # Password logins only, over TCP; the superuser's own maintenance over the socket.
        (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 md5\n")
        for path in (issued.key, issued.cert):
            os.chmod(path, 0o600)
        _chown_tree(root, user)
        port = free_port()
        cmd = [
            str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "ssl=on", "-c", f"ssl_cert_file={issued.cert}",
            "-c", f"ssl_key_file={issued.key}", "-c", "max_connections=200", "-c", "log_min_messages=warning",
        ]  # fmt: skip
        out = open(log, "ab")  # noqa: SIM115 - the server writes to it for its whole life
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, **_as(user))
        server = cls(root, port, password, ca.path, proc)
        _wait(lambda: server.admin("postgres").close() is None, proc, log, "postgres")
        return server

    def admin(self, database: str = "postgres") -> psycopg.Connection[Any]:
        """A superuser connection (autocommit) for set-up and assertions."""
        return psycopg.connect(
            host=self.host, port=self.port, user="postgres", password=self.admin_password, dbname=database,
            autocommit=True, connect_timeout=5, sslmode="disable",
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: smart shutdown; sessions left are ended by SIGINT below
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class MariaDbServer:
    """A MariaDB server: `root` (no password) over its Unix socket; TCP on 127.0.0.1:`port`."""

    root: Path
    port: int
    socket_path: Path
    proc: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    @classmethod
    def start(cls) -> MariaDbServer:
        daemon = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        install = shutil.which("mariadb-install-db")
        if not os.path.exists(daemon) or install is None:
            raise RuntimeError("MariaDB is not installed: `apt-get install -y mariadb-server` (.ci/run does this)")
        user = _system_user("mysql")
        root = Path(tempfile.mkdtemp(prefix="ac-mariadb-"))
        os.chmod(root, 0o755)
        data, log, sock = root / "data", root / "mariadb.log", root / "mysqld.sock"
        _chown_tree(root, user)
        run_as = ["--user=" + user.pw_name] if user is not None else []
        init = subprocess.run(
            [install, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
             "--skip-test-db", "--skip-name-resolve", *run_as],
            capture_output=True, text=True,
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {init.stdout[-1500:]}\n{init.stderr[-1500:]}")
        port = free_port()
        cmd = [
            daemon, "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
            f"--socket={sock}", f"--pid-file={root / 'mariadb.pid'}", "--skip-name-resolve", "--skip-log-bin",
            "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=0",
            "--skip-innodb-doublewrite", "--max-connections=200", *run_as,
        ]  # fmt: skip
        out = open(log, "ab")  # noqa: SIM115 - the server writes to it for its whole life
        proc = subprocess.Popen(cmd, stdout=out, stderr=out)
        server = cls(root, port, sock, proc)
        _wait(lambda: server.admin().close() is None, proc, log, "mariadbd")
        return server

    def admin(self, database: str | None = None) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(unix_socket=str(self.socket_path), user="root", database=database, autocommit=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)
