"""`connector controlplane ...` as a user runs it: serve as a subprocess, then dispatch / jobs / inventory /
token create against it, with a connector (the generated stub) doing the work."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from connector.controlplane.cli import main
from connector.controlplane.server import ControlPlaneThread, settle_rpc_tasks
from connector.logging import configure_logging
from connector.v1 import connector_pb2
from tests.controlplane.cp_helpers import ADMIN_TOKEN, CONNECTOR_ID, Connector, digest_of, fast_settings

pytestmark = pytest.mark.timeout(90)

CLI = [sys.executable, "-m", "connector", "controlplane"]


def write_secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


class Served:
    def __init__(self, tmp_path: Path) -> None:
        self.admin_file = write_secret(tmp_path / "admin.token", "cli-admin-token-0123456789")
        self.conn_file = write_secret(tmp_path / "conn.token", "cli-conn-token-0123456789")
        self.db = tmp_path / "cp.sqlite"
        self.proc = subprocess.Popen(
            [
                *CLI,
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--db",
                str(self.db),
                "--admin-token-file",
                str(self.admin_file),
                "--connector-token",
                f"{CONNECTOR_ID}={self.conn_file}",
                "--lease-seconds",
                "3",
                "--heartbeat-interval",
                "1",
                "--poll-wait",
                "1",
                "--log-format",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line.startswith("listening on "), f"unexpected first line {line!r}; stderr: {self.proc.stderr}"
        self.address = line.removeprefix("listening on ")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        common = ["--server", self.address, "--admin-token-file", str(self.admin_file)]
        return subprocess.run([*CLI, *args, *common], capture_output=True, text=True, timeout=60)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def work_one_job(
    address: str, token: str, outcome: int, error: connector_pb2.JobError | None = None
) -> threading.Thread:
    """A connector in a thread: polls one job, uploads inventory for a sync, reports `outcome`."""

    def run() -> None:
        with grpc.insecure_channel(address) as channel:
            conn = Connector(channel, token=token)
            jobs: list[connector_pb2.Job] = []
            while not jobs:
                jobs = conn.poll(max_jobs=1, wait=5.0)
            job = jobs[0]
            if job.WhichOneof("kind") == "sync":
                items = [
                    connector_pb2.InventoryItem(type="aws.account", id=f"{n:012d}", account_id=f"{n:012d}")
                    for n in (1, 2)
                ]
                assert conn.upload([conn.chunk(job, 0, items, digest_of(items))]).digest_ok
            conn.finish(job.id, job.attempt, outcome, error, result={"done": True})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_serve_dispatch_jobs_inventory_and_sigterm(served: Served) -> None:
    token = served.conn_file.read_text().strip()
    worker = work_one_job(served.address, token, connector_pb2.OUTCOME_SUCCEEDED)
    done = served.run(
        "dispatch", "sync", "--connector-id", CONNECTOR_ID, "--integration-id", "org-1",
        "--integration-type", "aws_organization", "--settings", '{"management_role_arn": "arn:aws:iam::1:role/r"}',
        "--wait", "--timeout", "30", "--json",
    )  # fmt: skip
    worker.join(timeout=10)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["state"] == "JOB_STATE_SUCCEEDED"
    assert record["job"]["integration"]["settings"]["management_role_arn"] == "arn:aws:iam::1:role/r"
    assert record["result"] == {"done": True} and record["inventory_items"] == "2"

    error = connector_pb2.JobError(code="ACCESS_DENIED", message="sts:AssumeRole was denied", retryable=False)
    worker = work_one_job(served.address, token, connector_pb2.OUTCOME_FAILED, error)
    failed = served.run(
        "dispatch", "grant", "--connector-id", CONNECTOR_ID, "--integration-id", "eks-1", "--integration-type", "eks",
        "--grant-id", "g-1", "--principal", "arn:aws:iam::1:role/dev", "--target", '{"cluster": "prod"}',
        "--expires-in", "3600", "--wait", "--timeout", "30",
    )  # fmt: skip
    worker.join(timeout=10)
    assert failed.returncode == 1
    assert "FAILED" in failed.stdout and "ACCESS_DENIED: sts:AssumeRole was denied" in failed.stdout

    listed = served.run("jobs", "list")
    assert listed.returncode == 0
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 2 and "FAILED" in lines[0] and "SUCCEEDED" in lines[1]
    only_failed = json.loads(served.run("jobs", "list", "--state", "failed", "--json").stdout)
    assert [r["job"]["grant"]["grant_id"] for r in only_failed] == ["g-1"]
    shown = served.run("jobs", "show", record["job"]["id"])
    assert shown.returncode == 0 and record["job"]["id"] in shown.stdout

    inventory = json.loads(served.run("inventory", "--integration-id", "org-1", "--json").stdout)
    assert inventory["total"] == 2 and {i["id"] for i in inventory["items"]} == {"000000000001", "000000000002"}
    table = served.run("inventory", "--integration-id", "org-1", "--type", "aws.account")
    assert "2 of 2 items" in table.stdout and "000000000001" in table.stdout

    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=20) == 0
    assert served.proc.stderr is not None
    logs = served.proc.stderr.read()
    assert '"event": "job succeeded"' in logs and "control plane stopped" in logs
    assert token not in logs and "cli-admin-token" not in logs


def test_token_create_writes_a_0600_file_that_a_running_server_accepts(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "conn-2.token"
    assert main(["token", "create", "--db", str(served.db), "--connector-id", "conn-2", "--out", str(out)]) == 0
    token = out.read_text().strip()
    assert len(token) >= 32
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    printed = capsys.readouterr()
    assert token not in printed.out and token not in printed.err and "conn-2" in printed.out
    # Refuses to overwrite without --force.
    assert main(["token", "create", "--db", str(served.db), "--connector-id", "conn-2", "--out", str(out)]) == 2
    with grpc.insecure_channel(served.address) as channel:
        assert Connector(channel, connector_id="conn-2", token=token).hello().lease_duration.seconds == 3


def test_serve_refuses_plaintext_off_loopback_and_bad_input_exits_2(tmp_path: Path) -> None:
    admin = write_secret(tmp_path / "admin.token", "x-admin-token-0123456789")
    refused = subprocess.run(
        [*CLI, "serve", "--bind", "0.0.0.0:0", "--db", ":memory:", "--admin-token-file", str(admin)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "--tls-cert" in refused.stderr
    missing = subprocess.run([*CLI, "serve", "--db", ":memory:"], capture_output=True, text=True, timeout=60, env={
        k: v for k, v in os.environ.items() if not k.startswith("CONTROLPLANE_")
    })  # fmt: skip
    assert missing.returncode == 2 and "--admin-token-file" in missing.stderr
    bad_json = main([
        "dispatch", "sync", "--connector-id", "c", "--integration-id", "i", "--integration-type", "t",
        "--settings", "{not json", "--admin-token-file", str(admin),
    ])  # fmt: skip
    assert bad_json == 2


def test_revoke_cancel_and_errors_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    admin = write_secret(tmp_path / "admin.token", ADMIN_TOKEN)
    configure_logging("info", "json", stream=io.StringIO())  # keep the in-process server's logs off stdout
    with ControlPlaneThread(fast_settings()) as cp:
        common = ["--server", cp.address, "--admin-token-file", str(admin)]
        assert main([
            "dispatch", "revoke", "--connector-id", CONNECTOR_ID, "--integration-id", "eks-1",
            "--integration-type", "eks", "--grant-id", "g-1", "--principal", "p", "--dry-run", "--json", *common,
        ]) == 0  # fmt: skip
        record = json.loads(capsys.readouterr().out)
        assert record["state"] == "JOB_STATE_QUEUED" and record["job"]["revoke"]["dry_run"] is True
        assert main(["jobs", "cancel", record["job"]["id"], *common]) == 0
        assert "CANCELLED" in capsys.readouterr().out
        assert main(["jobs", "wait", record["job"]["id"], "--timeout", "1", *common]) == 1
        capsys.readouterr()
        assert main(["jobs", "show", "no-such-job", *common]) == 3
        assert "NOT_FOUND" in capsys.readouterr().err
        wrong = write_secret(tmp_path / "wrong.token", "not-the-admin-token")
        assert main(["jobs", "list", "--server", cp.address, "--admin-token-file", str(wrong)]) == 3
        assert "UNAUTHENTICATED" in capsys.readouterr().err
        assert main(["jobs", "list", "--state", "bogus", *common]) == 2


def test_tokens_come_from_files_named_in_flags_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from connector.controlplane.cli import UsageError, admin_token_from, connector_tokens_from

    one = write_secret(tmp_path / "one", "token-one-0123456789")
    two = write_secret(tmp_path / "two", "token-two-0123456789")
    monkeypatch.setenv("CONTROLPLANE_CONNECTOR_TOKEN_FILES", f"conn-2={two}")
    assert connector_tokens_from([f"conn-1={one}"]) == {
        "conn-1": "token-one-0123456789",
        "conn-2": "token-two-0123456789",
    }
    with pytest.raises(UsageError, match="CONNECTOR_ID=PATH"):
        connector_tokens_from(["conn-1"])
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        connector_tokens_from([f"conn-1={empty}"])
    monkeypatch.delenv("CONTROLPLANE_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("CONTROLPLANE_ADMIN_TOKEN_FILE", str(one))
    assert admin_token_from(None) == "token-one-0123456789"
    monkeypatch.delenv("CONTROLPLANE_ADMIN_TOKEN_FILE")
    with pytest.raises(UsageError, match="--admin-token-file"):
        admin_token_from(None)


def test_credentials_keygen_dispatch_and_open(served: Served, tmp_path: Path) -> None:
    """The requester's side of sealed credentials: keygen (0600, public key printed), a grant dispatched with
    that key, the connector's sealed envelope in the result, and `credentials open` with the private key."""
    from connector.sealing import seal

    key_file = tmp_path / "requester.key"
    made = subprocess.run(
        [*CLI, "credentials", "keygen", "--out", str(key_file)], capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public_b64 = made.stdout.split("public key (pass as --requester-public-key): ")[1].strip()
    assert key_file.read_text().strip() not in made.stdout  # the private key is never printed

    dispatched = served.run(
        "dispatch",
        "grant",
        "--connector-id",
        CONNECTOR_ID,
        "--integration-id",
        "fn",
        "--integration-type",
        "lambda_custom",
        "--grant-id",
        "g-1",
        "--principal",
        "alice",
        "--requester-public-key",
        public_b64,
        "--json",
    )
    assert dispatched.returncode == 0, dispatched.stderr
    job_id = json.loads(dispatched.stdout)["job"]["id"]
    token = served.conn_file.read_text().strip()
    with grpc.insecure_channel(served.address) as channel:
        conn = Connector(channel, token=token)
        (job,) = conn.poll(max_jobs=1, wait=5.0)
        assert job.grant.requester_public_key == base64.b64decode(public_b64)
        envelope = seal(job.grant.requester_public_key, {"username": "alice", "password": "s3cr3t-pw-0001"})
        conn.finish(job.id, job.attempt, connector_pb2.OUTCOME_SUCCEEDED, result={"credentials": envelope})

    shown = served.run("jobs", "show", job_id, "--json")
    assert "s3cr3t-pw-0001" not in shown.stdout  # the control plane holds only ciphertext
    opened = served.run("credentials", "open", job_id, "--private-key", str(key_file))
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout) == {"password": "s3cr3t-pw-0001", "username": "alice"}
    other = tmp_path / "other.key"
    subprocess.run([*CLI, "credentials", "keygen", "--out", str(other)], capture_output=True, timeout=60, check=True)
    wrong = served.run("credentials", "open", job_id, "--private-key", str(other))
    assert wrong.returncode == 2 and "different key" in wrong.stderr


def test_serve_settles_grpc_rpc_tasks_before_its_loop_ends() -> None:
    """grpc aio's stop() can return while an RPC's task still awaits core; asyncio.run would cancel it and grpc
    logs that as a traceback. `_serve` waits for such tasks (bounded) first."""

    async def scenario() -> tuple[bool, bool]:
        lingering = asyncio.create_task(asyncio.sleep(0.2))
        stuck = asyncio.create_task(asyncio.sleep(60))
        await settle_rpc_tasks(within=1.0)
        finished = lingering.done() and not lingering.cancelled()
        bounded = not stuck.done()
        stuck.cancel()
        return finished, bounded

    assert asyncio.run(scenario()) == (True, True)
