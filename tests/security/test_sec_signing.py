"""Signed jobs end to end: the real control plane signs at enqueue, the real agent verifies against the
keys pinned in CONNECTOR_JOB_SIGNING_KEYS and refuses unsigned, altered and unknown-key jobs."""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf import struct_pb2
from structlog.testing import capture_logs

from connector.config import ConfigError, load_config
from connector.controlplane import cli
from connector.controlplane.client import AdminClient
from connector.controlplane.server import ControlPlaneServer, ControlPlaneThread
from connector.controlplane.settings import SettingsError
from connector.controlplane.signing import JobSigner, SigningKeyError, create_key_file, load_signer
from connector.errors import ErrorCode
from connector.jobs.runtime import build_dispatcher
from connector.jobs.signing import JobVerifier, canonical_bytes, key_id, parse_public_keys
from connector.v1 import admin_pb2, connector_pb2, connector_pb2_grpc
from tests.agent.agent_harness import CONNECTOR_ID, TOKEN, AgentThread, agent_env, cp_settings, wait_for

pytestmark = pytest.mark.timeout(120)

EKS_TARGET = {"cluster": "prod", "account_id": "111111111111", "region": "eu-west-1", "sleep_seconds": 0}


def _key(path: Path) -> JobSigner:
    return create_key_file(path)


def _pin(*signers: JobSigner) -> str:
    return ",".join(s.public_key_b64 for s in signers)


def _grant(admin: AdminClient, grant_id: str) -> admin_pb2.JobRecord:
    return admin.enqueue_grant(
        CONNECTOR_ID, "noop-1", "noop", grant_id=grant_id, principal="alice", target=EKS_TARGET, timeout=120
    )


def _final(admin: AdminClient, job_id: str) -> admin_pb2.JobRecord:
    record = admin.wait(job_id, timeout=30)
    assert record.state in (admin_pb2.JOB_STATE_SUCCEEDED, admin_pb2.JOB_STATE_FAILED), record
    return record


def _assert_refused(record: admin_pb2.JobRecord, *words: str) -> None:
    assert record.state == admin_pb2.JOB_STATE_FAILED, record
    assert record.error.code == ErrorCode.SIGNATURE_INVALID
    assert not record.error.retryable
    assert record.job.attempt == 1  # non-retryable: never offered again
    for word in words:
        assert word in record.error.message, record.error.message


def test_signed_job_runs_and_hello_announces_the_key(tmp_path: Path) -> None:
    signer = _key(tmp_path / "signing.pem")
    with ControlPlaneThread(cp_settings(tmp_path, job_signing_key_file=tmp_path / "signing.pem")) as cp:
        with grpc.insecure_channel(cp.address) as channel:
            hello = connector_pb2_grpc.ControlPlaneStub(channel).Hello(
                connector_pb2.HelloRequest(connector_id=CONNECTOR_ID, host_id="h"),
                metadata=(("authorization", f"Bearer {TOKEN}"),),
            )
        assert list(hello.job_signing_public_keys) == [signer.public_key]

        record = _grant(cp.admin, "g-signed")
        stored = record.job
        assert stored.signature_key_id == signer.key_id == signer.public_key[:8].hex()
        # Anyone holding the public key can check it (independent implementation: cryptography).
        Ed25519PublicKey.from_public_bytes(signer.public_key).verify(stored.signature, canonical_bytes(stored))

        with AgentThread(agent_env(cp.address, CONNECTOR_JOB_SIGNING_KEYS=_pin(signer))):
            done = _final(cp.admin, record.job.id)
        assert done.state == admin_pb2.JOB_STATE_SUCCEEDED, done.error


def test_job_altered_in_the_database_is_refused(tmp_path: Path) -> None:
    signer = _key(tmp_path / "signing.pem")
    settings = cp_settings(tmp_path, job_signing_key_file=tmp_path / "signing.pem")
    with ControlPlaneThread(settings) as cp:
        honest = _grant(cp.admin, "g-honest")
        target_changed = _grant(cp.admin, "g-target")
        principal_changed = _grant(cp.admin, "g-principal")
        settings_changed = cp.admin.enqueue_sync(CONNECTOR_ID, "noop-1", "noop", {"items": 1})
        resigned_by_attacker = _grant(cp.admin, "g-forged")

        # Someone with write access to the control plane's store edits queued jobs before any connector runs.
        attacker = JobSigner(os.urandom(32))
        db = sqlite3.connect(settings.db_path, timeout=10)
        for record, edit in (
            (target_changed, lambda j: j.grant.target.update({"cluster": "other-prod", "account_id": "222222222222"})),
            (principal_changed, lambda j: setattr(j.grant, "principal", "mallory")),
            (settings_changed, lambda j: j.integration.settings.update({"items": 3})),
            (resigned_by_attacker, lambda j: (j.grant.target.update({"cluster": "x"}), attacker.sign(j))),
        ):
            (blob,) = db.execute("SELECT job FROM jobs WHERE id = ?", (record.job.id,)).fetchone()
            job = connector_pb2.Job.FromString(blob)
            edit(job)
            db.execute("UPDATE jobs SET job = ? WHERE id = ?", (job.SerializeToString(), record.job.id))
        db.commit()
        db.close()

        with AgentThread(agent_env(cp.address, CONNECTOR_JOB_SIGNING_KEYS=_pin(signer))) as agent:
            assert _final(cp.admin, honest.job.id).state == admin_pb2.JOB_STATE_SUCCEEDED
            for record in (target_changed, principal_changed, settings_changed):
                _assert_refused(_final(cp.admin, record.job.id), "altered", signer.key_id)
            _assert_refused(_final(cp.admin, resigned_by_attacker.job.id), "not pinned", attacker.key_id)
            assert agent.runtime.health.registered  # refusing jobs does not disturb the agent


class _AlteringProxy(connector_pb2_grpc.ControlPlaneServicer):
    """A man in the middle on the connector's side of the control plane: relays every call, but rewrites
    the grant target of jobs handed out by PollJobs."""

    def __init__(self, upstream: grpc.Channel) -> None:
        self.stub = connector_pb2_grpc.ControlPlaneStub(upstream)
        self.altered = 0

    def _md(self, context: grpc.ServicerContext) -> list[tuple[str, str]]:
        return [(k, v) for k, v in context.invocation_metadata() if k == "authorization"]

    def Hello(self, request, context):  # type: ignore[no-untyped-def]
        return self.stub.Hello(request, metadata=self._md(context))

    def PollJobs(self, request, context):  # type: ignore[no-untyped-def]
        response = self.stub.PollJobs(request, metadata=self._md(context), timeout=context.time_remaining())
        for job in response.jobs:
            if job.WhichOneof("kind") == "grant":
                job.grant.target.update({"cluster": "attacker-cluster"})
                self.altered += 1
        return response

    def Heartbeat(self, request, context):  # type: ignore[no-untyped-def]
        return self.stub.Heartbeat(request, metadata=self._md(context))

    def FinishJob(self, request, context):  # type: ignore[no-untyped-def]
        return self.stub.FinishJob(request, metadata=self._md(context))

    def UploadInventory(self, request_iterator, context):  # type: ignore[no-untyped-def]
        return self.stub.UploadInventory(request_iterator, metadata=self._md(context))

    def ReportEvents(self, request, context):  # type: ignore[no-untyped-def]
        return self.stub.ReportEvents(request, metadata=self._md(context))


def test_job_altered_in_transit_is_refused(tmp_path: Path) -> None:
    from concurrent import futures

    signer = _key(tmp_path / "signing.pem")
    with ControlPlaneThread(cp_settings(tmp_path, job_signing_key_file=tmp_path / "signing.pem")) as cp:
        upstream = grpc.insecure_channel(cp.address)
        proxy = _AlteringProxy(upstream)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        connector_pb2_grpc.add_ControlPlaneServicer_to_server(proxy, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            record = _grant(cp.admin, "g-mitm")
            sync = cp.admin.enqueue_sync(CONNECTOR_ID, "noop-1", "noop", {"items": 1})
            with AgentThread(agent_env(f"127.0.0.1:{port}", CONNECTOR_JOB_SIGNING_KEYS=_pin(signer))):
                _assert_refused(_final(cp.admin, record.job.id), "altered")
                assert _final(cp.admin, sync.job.id).state == admin_pb2.JOB_STATE_SUCCEEDED  # untouched: runs
            assert proxy.altered >= 1
        finally:
            server.stop(0)
            upstream.close()


def test_unsigned_job_is_refused_when_keys_are_pinned(tmp_path: Path) -> None:
    pinned = JobSigner(os.urandom(32))
    with ControlPlaneThread(cp_settings(tmp_path)) as cp:  # no --job-signing-key: jobs go out unsigned
        record = _grant(cp.admin, "g-unsigned")
        assert not record.job.signature
        with AgentThread(agent_env(cp.address, CONNECTOR_JOB_SIGNING_KEYS=_pin(pinned))):
            _assert_refused(_final(cp.admin, record.job.id), "unsigned", "CONNECTOR_JOB_SIGNING_KEYS")


def test_unsigned_jobs_run_when_nothing_is_pinned_with_one_warning(tmp_path: Path) -> None:
    with ControlPlaneThread(cp_settings(tmp_path)) as cp:
        with capture_logs() as logs:
            agent = AgentThread(agent_env(cp.address))
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["job_signing_off"]
        assert "CONNECTOR_JOB_SIGNING_KEYS" in logs[0]["message"]
        with agent:
            record = _grant(cp.admin, "g-open")
            assert _final(cp.admin, record.job.id).state == admin_pb2.JOB_STATE_SUCCEEDED


def test_key_rotation(tmp_path: Path) -> None:
    """Jobs signed by the old key (still queued) and the new key both run while both are pinned; a key
    that is not pinned is refused."""
    (tmp_path / "raw.seed").write_bytes(os.urandom(32))  # raw 32-byte seed files work too
    old, new, unpinned = load_signer(tmp_path / "raw.seed"), _key(tmp_path / "new.pem"), _key(tmp_path / "c.pem")
    records = {}
    for name, key_file in (("old", "raw.seed"), ("new", "new.pem"), ("unpinned", "c.pem")):
        # The control plane restarts with the next key on the same store; earlier jobs keep their signature.
        with ControlPlaneThread(cp_settings(tmp_path, job_signing_key_file=tmp_path / key_file)) as cp:
            records[name] = _grant(cp.admin, f"g-{name}")
    assert {r.job.signature_key_id for r in records.values()} == {old.key_id, new.key_id, unpinned.key_id}

    cp = ControlPlaneThread(cp_settings(tmp_path, job_signing_key_file=tmp_path / "new.pem"))
    with cp, AgentThread(agent_env(cp.address, CONNECTOR_JOB_SIGNING_KEYS=f"{_pin(old)}, {_pin(new)}")):
        assert _final(cp.admin, records["old"].job.id).state == admin_pb2.JOB_STATE_SUCCEEDED
        assert _final(cp.admin, records["new"].job.id).state == admin_pb2.JOB_STATE_SUCCEEDED
        _assert_refused(_final(cp.admin, records["unpinned"].job.id), "not pinned", unpinned.key_id)


# ---- the pieces, without the network ----------------------------------------------------------------------


def _signed_job(signer: JobSigner) -> connector_pb2.Job:
    job = connector_pb2.Job(id="j-1", attempt=1, integration=connector_pb2.Integration(id="i", type="noop"))
    job.grant.grant_id, job.grant.principal = "g", "alice"
    job.grant.target.update({"cluster": "prod", "nan_is_bytes": float("nan"), "nested": {"a": [1, "b", None]}})
    signer.sign(job)
    return job


def test_signature_survives_redelivery_and_reserialisation() -> None:
    signer = JobSigner(os.urandom(32))
    verify = JobVerifier(parse_public_keys(signer.public_key_b64))
    job = _signed_job(signer)
    job.attempt = 4  # attempt is outside the signed bytes: each delivery changes it
    verify(connector_pb2.Job.FromString(job.SerializeToString()))
    # Map order in the wire bytes does not matter: deterministic serialisation sorts Struct keys.
    target = struct_pb2.Struct()
    for k in reversed(list(job.grant.target.fields)):
        target.fields[k].CopyFrom(job.grant.target.fields[k])
    job.grant.target.CopyFrom(target)
    verify(job)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda j: setattr(j, "id", "j-2"),
        lambda j: setattr(j.integration, "type", "kubernetes"),
        lambda j: j.deadline.FromSeconds(j.deadline.seconds + 3600),
        lambda j: j.grant.target.update({"cluster": "prod "}),
        lambda j: setattr(j.grant, "dry_run", True),
        lambda j: setattr(j, "signature", j.signature[:-1] + bytes([j.signature[-1] ^ 1])),
        lambda j: setattr(j, "signature", j.signature[:32]),
        lambda j: setattr(j, "signature_key_id", "00" * 8),
        lambda j: j.ClearField("signature"),
    ],
)
def test_any_change_is_refused(tamper: object) -> None:
    signer = JobSigner(os.urandom(32))
    job = _signed_job(signer)
    tamper(job)  # type: ignore[operator]
    with pytest.raises(Exception) as excinfo:
        JobVerifier(parse_public_keys(signer.public_key_b64))(job)
    assert getattr(excinfo.value, "code", None) == ErrorCode.SIGNATURE_INVALID
    assert getattr(excinfo.value, "retryable", None) is False


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
        (base64.b64encode(os.urandom(64)).decode(), "decodes to 64 bytes"),
    ],
)
def test_invalid_pinned_keys_fail_at_start_up(value: str, problem: str) -> None:
    good = JobSigner(os.urandom(32)).public_key_b64
    config = load_config(agent_env("127.0.0.1:1", CONNECTOR_JOB_SIGNING_KEYS=f"{good},{value}"))
    with pytest.raises(ConfigError, match="CONNECTOR_JOB_SIGNING_KEYS") as excinfo:
        build_dispatcher(config)
    assert problem in str(excinfo.value) and "key 2" in str(excinfo.value)


def test_connector_run_exits_2_on_an_invalid_pinned_key() -> None:
    env = agent_env("127.0.0.1:1", CONNECTOR_JOB_SIGNING_KEYS="AAAA")
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "run"],
        env={"PATH": "/usr/bin:/bin"} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "CONNECTOR_JOB_SIGNING_KEYS" in proc.stderr and "Traceback" not in proc.stderr


def test_signing_key_create_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, public_out = tmp_path / "k.pem", tmp_path / "k.pub"
    assert cli.main(["signing-key", "create", "--out", str(out), "--public-out", str(public_out)]) == 0
    printed = capsys.readouterr().out
    assert out.stat().st_mode & 0o777 == 0o600
    public_b64 = public_out.read_text().strip()
    assert public_b64 in printed.splitlines()
    assert out.read_text() not in printed
    # The PEM is standard PKCS#8: cryptography reads it, and its public key is the one printed.
    private = serialization.load_pem_private_key(out.read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    raw_public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64encode(raw_public).decode() == public_b64
    assert key_id(raw_public) in printed
    # It refuses to overwrite an existing key.
    assert cli.main(["signing-key", "create", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    # A key written by another tool (cryptography's PKCS#8 PEM) is accepted by --job-signing-key.
    foreign = Ed25519PrivateKey.generate()
    (tmp_path / "foreign.pem").write_bytes(
        foreign.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    foreign_public = foreign.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert load_signer(tmp_path / "foreign.pem").public_key == foreign_public


def test_an_unusable_signing_key_stops_the_server_naming_the_flag(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("-----BEGIN PRIVATE KEY-----\nnotakey\n-----END PRIVATE KEY-----\n")
    (tmp_path / "rsa.key").write_bytes(b"x" * 31)
    for name in ("bad.pem", "rsa.key"):
        with pytest.raises(SigningKeyError, match="--job-signing-key"):
            load_signer(tmp_path / name)
        cp = ControlPlaneThread(cp_settings(tmp_path, job_signing_key_file=tmp_path / name))
        with pytest.raises(SettingsError, match="--job-signing-key"):
            cp.start()
        cp.stop()
    with pytest.raises(SettingsError, match="--job-signing-key: no readable file"):
        ControlPlaneServer(cp_settings(tmp_path, job_signing_key_file=tmp_path / "missing.pem"))


def test_jobs_the_control_plane_makes_itself_are_signed_too(tmp_path: Path) -> None:
    """A split sync's child jobs are created by the control plane when the discovery job succeeds: a connector
    that pins the key must be able to verify them like any enqueued job."""
    from tests.controlplane.cp_helpers import CONNECTOR_ID as CP_CONNECTOR_ID
    from tests.controlplane.cp_helpers import Connector, digest_of, fast_settings

    signer = _key(tmp_path / "signing.pem")
    verify = JobVerifier(parse_public_keys(signer.public_key_b64))
    settings = fast_settings(job_signing_key_file=tmp_path / "signing.pem", lease_seconds=30.0)
    with ControlPlaneThread(settings) as cp, grpc.insecure_channel(cp.address) as channel:
        parent = cp.admin.enqueue_sync(
            CP_CONNECTOR_ID, "org-1", "aws_organization", resource_types=["organization"], split_accounts_per_job=2
        )
        connector = Connector(channel)
        [discovery] = connector.poll(max_jobs=1, wait=5)
        assert discovery.id == parent.job.id
        verify(discovery)
        accounts = [f"11111111111{i}" for i in range(3)]
        items = []
        for account in accounts:
            item = connector_pb2.InventoryItem(type="aws.account", id=account, name=account, account_id=account)
            item.attributes.update({"state": "ACTIVE"})
            items.append(item)
        connector.upload([connector.chunk(discovery, 0, items, digest=digest_of(items))])
        connector.finish(discovery.id, discovery.attempt)

        children: list[connector_pb2.Job] = []
        while len(children) < 2:
            polled = connector.poll(max_jobs=10, wait=5)
            assert polled, "the split's child jobs were not offered"
            children += polled
        assert sorted(a for c in children for a in c.sync.account_ids) == accounts
        for child in children:
            assert child.signature_key_id == signer.key_id
            verify(child)


class _RecordingSweeper:
    """Stands in for the expiry sweeper (the agent's own boundary): records which settings it was shown."""

    def __init__(self) -> None:
        self.observed: list[tuple[str, str, dict[str, object]]] = []

    def offer(self, integration: Any) -> None:  # the dispatcher's listener, as `connector run` wires it
        self.observed.append((integration.integration_id, integration.type_id, dict(integration.settings)))

    def confirm(self, integration: Any) -> None:
        return None

    def sweep(self) -> list[object]:
        return []

    def status(self) -> dict[str, object]:
        return {}


def test_the_expiry_sweeper_learns_settings_only_from_verified_jobs(tmp_path: Path) -> None:
    """An injected job must not re-point the integration the sweeper revokes with (e.g. another role ARN)."""
    signer = _key(tmp_path / "signing.pem")
    sweeper = _RecordingSweeper()
    with ControlPlaneThread(cp_settings(tmp_path, job_signing_key_file=tmp_path / "signing.pem")) as cp:
        honest = cp.admin.enqueue_sync(CONNECTOR_ID, "noop-1", "noop", {"items": 1})
        # Someone with write access to the store adds an unsigned job for the same integration.
        db = sqlite3.connect(cp.settings.db_path, timeout=10)
        (blob,) = db.execute("SELECT job FROM jobs WHERE id = ?", (honest.job.id,)).fetchone()
        injected = connector_pb2.Job.FromString(blob)
        injected.id = "injected-1"
        injected.integration.settings.update({"items": 1, "management_account_role_arn": "arn:aws:iam::666:role/x"})
        injected.ClearField("signature")
        db.execute(
            "INSERT INTO jobs (id, connector_id, state, attempt, job, kind, integration_id, integration_type, created, "
            "deadline, available_at) SELECT ?, connector_id, state, attempt, ?, kind, integration_id, integration_type, "
            "created, deadline, available_at FROM jobs WHERE id = ?",
            ("injected-1", injected.SerializeToString(), honest.job.id),
        )
        db.commit()
        db.close()
        env = agent_env(cp.address, CONNECTOR_JOB_SIGNING_KEYS=_pin(signer))
        with AgentThread(env, sweeper=sweeper, sweep_interval=3600):
            assert _final(cp.admin, honest.job.id).state == admin_pb2.JOB_STATE_SUCCEEDED
            _assert_refused(_final(cp.admin, "injected-1"), "unsigned")
            wait_for(lambda: len(sweeper.observed) >= 1, 10, "the sweeper saw the verified job")
    assert sweeper.observed == [("noop-1", "noop", {"items": 1.0})], sweeper.observed
