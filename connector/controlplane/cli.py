"""`connector controlplane ...`: run the reference control plane and operate it.

    connector controlplane serve --bind 127.0.0.1:50051 --db cp.sqlite --admin-token-file admin.token \\
        --connector-token conn-1=conn-1.token
    connector controlplane token create --db cp.sqlite --connector-id conn-1 --out conn-1.token
    connector controlplane dispatch sync --connector-id conn-1 --integration-id org --integration-type \\
        aws_organization --wait --json
    connector controlplane jobs list | jobs show JOB_ID | jobs wait JOB_ID | jobs cancel JOB_ID [--wait]
    connector controlplane connectors          # replicas that said Hello, their integration types
    connector controlplane inventory --integration-id org --type aws.account
    connector controlplane events --grant-id g-1

Secrets are never taken on the command line, only from files (or environment variables):
  CONTROLPLANE_ADMIN_TOKEN_FILE / CONTROLPLANE_ADMIN_TOKEN   admin token (serve and the operator commands)
  CONTROLPLANE_CONNECTOR_TOKEN_FILES   "ID=PATH,ID=PATH" connector tokens for serve (like --connector-token)
  CONTROLPLANE_ADDRESS                 server address for the operator commands (default 127.0.0.1:50051)
  CONTROLPLANE_TLS_CA                  CA bundle for the operator commands (TLS when set)
  CONTROLPLANE_TLS_CLIENT_CERT / _KEY  client certificate and key for a server that requires mTLS

Job signing: `connector controlplane signing-key create --out job-signing.pem --public-out job-signing.pub`
writes a new Ed25519 key (0600) and prints its public key; `serve --job-signing-key job-signing.pem` signs
every job with it, and connectors pin the public key in CONNECTOR_JOB_SIGNING_KEYS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from connector.controlplane.auth import store_new_token
from connector.controlplane.client import TERMINAL_STATES, AdminClient
from connector.controlplane.db import Database
from connector.controlplane.readiness import heartbeat_interval, live_replicas, why_not_taken
from connector.controlplane.sealed import (
    SealedError,
    open_job_credentials,
    parse_public_key,
    read_private_key,
    write_keypair,
)
from connector.controlplane.server import ControlPlaneServer, settle_rpc_tasks
from connector.controlplane.settings import ServerSettings, SettingsError
from connector.controlplane.signing import create_key_file
from connector.heap import freeze_startup_heap
from connector.logging import configure_logging
from connector.v1 import admin_pb2, connector_pb2

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_RPC = 3
EXIT_WAIT_TIMEOUT = 4

EXIT_CODES = """exit codes: 0 ok; 1 the waited job failed or was cancelled; 2 bad arguments or input;
3 the server refused or could not be reached; 4 --wait timed out before the job finished."""

# Named in --integration-type's help; tests/controlplane checks each is a type the connector registers.
INTEGRATION_TYPE_EXAMPLES = ("aws_organization", "kubernetes", "lambda_custom")

STATES = {name.removeprefix("JOB_STATE_").lower(): value for name, value in admin_pb2.JobState.items() if value}


class UsageError(Exception):
    """Bad input; the message names the flag or file to fix."""


def read_secret_file(path: str | Path, what: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
        mode = Path(path).stat().st_mode
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise UsageError(f"{what}: {path} is empty")
    if mode & 0o077:
        print(f"warning: {what}: {path} is readable by other users; chmod 600 it", file=sys.stderr)
    return value


def admin_token_from(path: str | None) -> str:
    if path:
        return read_secret_file(path, "--admin-token-file")
    env_file = os.environ.get("CONTROLPLANE_ADMIN_TOKEN_FILE")
    if env_file:
        return read_secret_file(env_file, "CONTROLPLANE_ADMIN_TOKEN_FILE")
    token = os.environ.get("CONTROLPLANE_ADMIN_TOKEN", "").strip()
    if token:
        return token
    raise UsageError("admin token: pass --admin-token-file PATH or set CONTROLPLANE_ADMIN_TOKEN_FILE")


def connector_tokens_from(pairs: Sequence[str]) -> dict[str, str]:
    env = os.environ.get("CONTROLPLANE_CONNECTOR_TOKEN_FILES", "")
    entries = [(p, "--connector-token") for p in pairs] + [
        (p.strip(), "CONTROLPLANE_CONNECTOR_TOKEN_FILES") for p in env.split(",") if p.strip()
    ]
    tokens: dict[str, str] = {}
    for entry, source in entries:
        connector_id, sep, path = entry.partition("=")
        if not sep or not connector_id or not path:
            raise UsageError(f"{source}: expected CONNECTOR_ID=PATH_TO_TOKEN_FILE, got {entry!r}")
        tokens[connector_id] = read_secret_file(path, f"{source} {connector_id}")
    return tokens


def parse_json_object(text: str | None, flag: str) -> dict[str, Any]:
    if not text:
        return {}
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{flag}: cannot read {text[1:]}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{flag}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(value, dict):
        raise UsageError(f'{flag}: expected a JSON object, e.g. \'{{"key": "value"}}\'')
    return value


def record_dict(record: admin_pb2.JobRecord) -> dict[str, Any]:
    return json_format.MessageToDict(record, preserving_proto_field_name=True)


def record_line(record: admin_pb2.JobRecord) -> str:
    job = record.job
    state = admin_pb2.JobState.Name(record.state).removeprefix("JOB_STATE_")
    kind = job.WhichOneof("kind") or "?"
    parts = [
        job.id,
        state,
        f"attempt={job.attempt}",
        f"{kind} {job.integration.type}/{job.integration.id}",
        f"connector={record.connector_id}",
    ]
    if kind == "sync":
        parts.append(f"items={record.inventory_items}")
    if record.leased_by and record.state == admin_pb2.JOB_STATE_LEASED:
        parts.append(f"leased_by={record.leased_by}")
    if record.stale_finishes_refused:
        parts.append(f"stale_finishes_refused={record.stale_finishes_refused}")
    if record.error.code or record.error.message:
        parts.append(f"error={record.error.code}: {record.error.message}")
    return "  ".join(parts)


# -- serve -------------------------------------------------------------------------------------


async def _serve(settings: ServerSettings) -> None:
    server = ControlPlaneServer(settings)
    await server.start()
    print(f"listening on {server.address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=5.0)
    await settle_rpc_tasks()


def cmd_serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    settings = ServerSettings(
        bind=args.bind,
        db_path=args.db,
        connector_tokens=connector_tokens_from(args.connector_token),
        admin_token=admin_token_from(args.admin_token_file),
        lease_seconds=args.lease_seconds,
        heartbeat_interval=args.heartbeat_interval,
        poll_wait=args.poll_wait,
        max_attempts=args.max_attempts,
        retry_backoff=args.retry_backoff,
        tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key,
        tls_client_ca_file=args.tls_client_ca,
        job_signing_key_file=args.job_signing_key,
    )
    try:
        settings.validate()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    try:
        freeze_startup_heap()
        asyncio.run(_serve(settings))
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    except (OSError, sqlite3.Error) as exc:  # e.g. the port is taken, the db directory does not exist
        raise UsageError(f"cannot serve (--bind {settings.bind}, --db {settings.db_path}): {exc}") from None
    return EXIT_OK


# -- operator commands ---------------------------------------------------------------------------


def admin_client(args: argparse.Namespace) -> AdminClient:
    ca = args.tls_ca or os.environ.get("CONTROLPLANE_TLS_CA") or None
    cert = args.tls_client_cert or os.environ.get("CONTROLPLANE_TLS_CLIENT_CERT") or None
    key = args.tls_client_key or os.environ.get("CONTROLPLANE_TLS_CLIENT_KEY") or None
    if (cert is None) != (key is None):
        raise UsageError("--tls-client-cert and --tls-client-key: set both for mTLS, or neither")
    return AdminClient(
        args.server,
        admin_token_from(args.admin_token_file),
        tls_ca_file=ca,
        tls=(args.tls or cert is not None) or None,
        tls_client_cert_file=cert,
        tls_client_key_file=key,
    )


def print_record(record: admin_pb2.JobRecord, as_json: bool) -> None:
    print(json.dumps(record_dict(record), indent=2) if as_json else record_line(record))


def cmd_dispatch(args: argparse.Namespace) -> int:
    settings = parse_json_object(args.settings, "--settings")
    common: dict[str, Any] = {
        "settings": settings,
        "timeout": args.job_timeout,
        "idempotency_key": args.idempotency_key or "",
    }
    with admin_client(args) as admin:
        ids = (args.connector_id, args.integration_id, args.integration_type)
        if args.kind == "sync":
            record = admin.enqueue_sync(
                *ids,
                resource_types=args.resource_type,
                account_ids=args.account_id,
                split_accounts_per_job=args.split_accounts,
                **common,
            )
        elif args.kind == "grant":
            record = admin.enqueue_grant(
                *ids,
                grant_id=args.grant_id,
                principal=args.principal,
                target=parse_json_object(args.target, "--target"),
                expires_in=args.expires_in,
                dry_run=args.dry_run,
                requester=args.requester or "",
                requester_public_key=parse_public_key(args.requester_public_key) if args.requester_public_key else b"",
                **common,
            )
        else:
            record = admin.enqueue_revoke(
                *ids,
                grant_id=args.grant_id,
                principal=args.principal,
                target=parse_json_object(args.target, "--target"),
                dry_run=args.dry_run,
                **common,
            )
        reason = why_not_taken(admin, record.connector_id, record.job.integration.type)
        if reason:
            print(f"warning: job {record.job.id}: {reason}", file=sys.stderr)
        if not args.wait:
            print_record(record, args.json)
            return EXIT_OK
        record = wait_reporting(admin, record, args.timeout, reason)
    print_record(record, args.json)
    return outcome_exit(record)


WAIT_STEP = 5.0  # how often --wait looks again at why a queued job is not taken


def _state(record: admin_pb2.JobRecord) -> str:
    state = admin_pb2.JobState.Name(record.state).removeprefix("JOB_STATE_")
    if record.state == admin_pb2.JOB_STATE_LEASED:
        return f"{state} by {record.leased_by} (attempt {record.job.attempt})"
    return f"{state} (attempt {record.job.attempt})" if record.job.attempt > 1 else state


def wait_reporting(
    admin: AdminClient, record: admin_pb2.JobRecord, timeout: float, reason: str | None = None
) -> admin_pb2.JobRecord:
    """Wait for the job's outcome in short steps. While it stays QUEUED, say (on stderr, each time it changes)
    why no replica takes it; on a terminal, also each change of state (leased by whom, retried)."""
    deadline = time.monotonic() + timeout
    shown_state, shown_reason = "", reason
    tty = sys.stderr.isatty()
    started = time.monotonic()
    while record.state not in TERMINAL_STATES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return record
        state = _state(record)
        if tty and state != shown_state:
            print(f"  {time.monotonic() - started:5.1f}s  job {record.job.id}: {state}", file=sys.stderr, flush=True)
        shown_state = state
        if record.state == admin_pb2.JOB_STATE_QUEUED:
            now_reason = why_not_taken(admin, record.connector_id, record.job.integration.type)
            if now_reason != shown_reason:
                text = f"warning: job {record.job.id}: {now_reason}" if now_reason else "a replica can take it now"
                print(text, file=sys.stderr, flush=True)
            shown_reason = now_reason
        record = admin.wait(record.job.id, timeout=min(remaining, WAIT_STEP))
    return record


def outcome_exit(record: admin_pb2.JobRecord) -> int:
    if record.state == admin_pb2.JOB_STATE_SUCCEEDED:
        return EXIT_OK
    if record.state in TERMINAL_STATES:
        return EXIT_JOB_FAILED
    print(f"job {record.job.id} is still {admin_pb2.JobState.Name(record.state)} after the wait", file=sys.stderr)
    return EXIT_WAIT_TIMEOUT


def cmd_jobs(args: argparse.Namespace) -> int:
    with admin_client(args) as admin:
        if args.jobs_command == "list":
            records = admin.list(args.connector_id or "", STATES[args.state] if args.state else 0, args.limit)
            if args.json:
                print(json.dumps([record_dict(r) for r in records], indent=2))
            else:
                for record in records:
                    print(record_line(record))
            return EXIT_OK
        if args.jobs_command == "show":
            record = admin.get(args.job_id)
        elif args.jobs_command == "wait":
            record = wait_reporting(admin, admin.get(args.job_id), args.timeout)
            print_record(record, args.json)
            return outcome_exit(record)
        else:
            record = admin.cancel(args.job_id)
            if record.state == admin_pb2.JOB_STATE_LEASED:
                every = heartbeat_interval(admin)
                print(
                    f"cancel requested: {record.leased_by} learns it with its next heartbeat (every {every:g} s) and "
                    f"stops the job; it turns CANCELLED once the replica has reported "
                    f"({'waiting' if args.wait else f'`jobs wait {record.job.id}` or cancel --wait'})",
                    file=sys.stderr,
                    flush=True,
                )
            if args.wait:
                record = wait_reporting(admin, record, args.timeout)
                print_record(record, args.json)
                return EXIT_OK if record.state in TERMINAL_STATES else outcome_exit(record)
    print_record(record, args.json)
    return EXIT_OK


def cmd_connectors(args: argparse.Namespace) -> int:
    with admin_client(args) as admin:
        response = admin.connectors(args.connector_id or "")
    if args.json:
        print(json.dumps(json_format.MessageToDict(response, preserving_proto_field_name=True), indent=2))
        return EXIT_OK
    live = {(r.connector_id, r.host_id) for r in live_replicas(response, time.time())}
    for r in response.replicas:
        seen = time.time() - r.last_seen.ToNanoseconds() / 1e9
        state = "live" if (r.connector_id, r.host_id) in live else "gone"
        print(
            f"{r.connector_id}  {r.host_id}  {state}  version={r.version}  last_seen={seen:.0f}s ago  "
            f"types={','.join(r.capabilities)}"
        )
    if not response.replicas:
        print("no connector has said Hello to this control plane since it started", file=sys.stderr)
    return EXIT_OK


def cmd_inventory(args: argparse.Namespace) -> int:
    with admin_client(args) as admin:
        response = admin.inventory(args.integration_id or "", args.type or "", args.account_id or "", args.limit)
    if args.json:
        body = json_format.MessageToDict(response, preserving_proto_field_name=True)
        body["total"] = response.total  # MessageToDict renders uint64 as a string
        print(json.dumps(body, indent=2))
        return EXIT_OK
    columns = ("type", "id", "name", "account_id", "region", "parent_id")
    rows = [[str(getattr(item, c)) for c in columns] for item in response.items]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(rows)} of {response.total} items")
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    with admin_client(args) as admin:
        events = admin.events(args.connector_id or "", args.type or "", args.grant_id or "", args.limit)
    if args.json:
        print(json.dumps([json_format.MessageToDict(e, preserving_proto_field_name=True) for e in events], indent=2))
        return EXIT_OK
    for event in events:
        when = event.time.ToDatetime().isoformat(timespec="seconds") + "Z" if event.HasField("time") else "-"
        outcome = connector_pb2.Outcome.Name(event.outcome).removeprefix("OUTCOME_")
        parts = [when, event.type, outcome, f"integration={event.integration_id}", f"grant={event.grant_id}", event.id]
        if event.error.code:
            parts.append(f"error={event.error.code}: {event.error.message}")
        print("  ".join(parts))
    return EXIT_OK


def cmd_credentials(args: argparse.Namespace) -> int:
    if args.credentials_command == "keygen":
        public = write_keypair(Path(args.out), force=args.force)
        print(f"wrote a new X25519 private key to {args.out} (mode 0600); keep it on the requester's machine")
        print(f"public key (pass as --requester-public-key): {public}")
        return EXIT_OK
    private_key = read_private_key(Path(args.private_key))
    with admin_client(args) as admin:
        record = admin.get(args.job_id)
    opened = open_job_credentials(record, private_key)
    print(json.dumps(opened, indent=2, sort_keys=True))
    return EXIT_OK


def cmd_token_create(args: argparse.Namespace) -> int:
    out = Path(args.out)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    try:
        fd = os.open(out, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"--out: {out} already exists (pass --force to overwrite it)") from None
    except OSError as exc:
        raise UsageError(f"--out: cannot create {out}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # also when --force reused an existing file with wider permissions
        db = Database(args.db)
        try:
            token = store_new_token(db, args.connector_id, replace=args.replace)
        finally:
            db.close()
        os.write(fd, (token + "\n").encode())
    except sqlite3.Error as exc:
        out.unlink(missing_ok=True)
        raise UsageError(f"--db: cannot store the token hash in {args.db}: {exc}") from None
    finally:
        os.close(fd)
    replaced = " (older tokens of this connector revoked)" if args.replace else ""
    print(f"wrote a new token for connector {args.connector_id!r} to {out} (mode 0600){replaced}")
    print(f"its SHA-256 is stored in {args.db}; a running server accepts it without a restart")
    return EXIT_OK


def cmd_signing_key_create(args: argparse.Namespace) -> int:
    out, public_out = Path(args.out), Path(args.public_out) if args.public_out else None
    try:
        signer = create_key_file(out, public_out, force=args.force)
    except FileExistsError:
        raise UsageError(f"--out: {out} already exists (pass --force to overwrite it)") from None
    except OSError as exc:
        raise UsageError(f"cannot write the key ({exc.filename}): {exc.strerror}") from None
    print(f"wrote a new Ed25519 job-signing key to {out} (mode 0600), key id {signer.key_id}")
    if public_out is not None:
        print(f"wrote its public key to {public_out}")
    print("pin this public key in the connector (CONNECTOR_JOB_SIGNING_KEYS; during a rotation pin old,new):")
    print(signer.public_key_b64)
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------------


def _admin_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server connection")
    group.add_argument(
        "--server",
        default=os.environ.get("CONTROLPLANE_ADDRESS", "127.0.0.1:50051"),
        help="HOST:PORT of the control plane (env CONTROLPLANE_ADDRESS; default %(default)s)",
    )
    group.add_argument(
        "--admin-token-file",
        help="file holding the admin token (or env CONTROLPLANE_ADMIN_TOKEN_FILE / CONTROLPLANE_ADMIN_TOKEN)",
    )
    group.add_argument("--tls-ca", help="CA bundle to verify the server; enables TLS (env CONTROLPLANE_TLS_CA)")
    group.add_argument("--tls", action="store_true", help="use TLS with the system's CA roots")
    group.add_argument("--tls-client-cert", help="client certificate for mTLS (env CONTROLPLANE_TLS_CLIENT_CERT)")
    group.add_argument("--tls-client-key", help="client private key for mTLS (env CONTROLPLANE_TLS_CLIENT_KEY)")
    parser.add_argument("--json", action="store_true", help="print JSON (proto field names) instead of text")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="connector controlplane",
        description="The reference control plane: serve it, dispatch jobs to connectors, inspect jobs, inventory "
        "and connector events.",
        epilog=EXIT_CODES,
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the server",
        description="Run the control plane. Prints 'listening on HOST:PORT' once ready; SIGTERM stops it "
        "gracefully. Plaintext is allowed only on a loopback bind; otherwise pass --tls-cert and --tls-key.",
        epilog=__doc__,
        formatter_class=fmt,
    )
    serve.add_argument("--bind", default="127.0.0.1:50051", help="HOST:PORT to listen on (port 0: any free port)")
    serve.add_argument("--db", default="controlplane.sqlite", help="SQLite file (':memory:' for a throwaway store)")
    serve.add_argument(
        "--connector-token",
        action="append",
        default=[],
        metavar="ID=FILE",
        help="a connector id and the file holding its token (repeatable); tokens made with "
        "`token create` are in the db already",
    )
    serve.add_argument("--admin-token-file", help="file holding the admin token (or CONTROLPLANE_ADMIN_TOKEN_FILE)")
    serve.add_argument("--tls-cert", help="PEM certificate chain (TLS)")
    serve.add_argument("--tls-key", help="PEM private key (TLS)")
    serve.add_argument(
        "--tls-client-ca", help="PEM CA bundle: require every client to present a certificate it issued (mTLS)"
    )
    serve.add_argument(
        "--job-signing-key",
        help="Ed25519 key file (raw 32-byte seed or PKCS#8 PEM) that signs every job; see `signing-key create`",
    )
    serve.add_argument("--lease-seconds", type=float, default=30.0, help="lease length (default %(default)s)")
    serve.add_argument("--heartbeat-interval", type=float, default=5.0, help="told to connectors (default %(default)s)")
    serve.add_argument(
        "--poll-wait", type=float, default=20.0, help="long-poll wait told to connectors (default %(default)s)"
    )
    serve.add_argument("--max-attempts", type=int, default=5, help="attempts before a job fails (default %(default)s)")
    serve.add_argument(
        "--retry-backoff", type=float, default=2.0, help="delay before a retryable failure is re-offered"
    )
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.add_argument("--log-format", default="auto", choices=("auto", "json", "console"))
    serve.set_defaults(func=cmd_serve)

    dispatch = sub.add_parser("dispatch", help="enqueue a sync, grant or revoke job", epilog=EXIT_CODES)
    kinds = dispatch.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, text in (
        ("sync", "sync an integration's inventory"),
        ("grant", "grant access"),
        ("revoke", "revoke a grant"),
    ):
        p = kinds.add_parser(kind, help=text, description=f"Enqueue a {kind} job.", epilog=EXIT_CODES)
        _admin_options(p)
        p.add_argument("--connector-id", required=True, help="the connector that runs the job")
        p.add_argument("--integration-id", required=True, help="integration id, e.g. org-main")
        p.add_argument(
            "--integration-type",
            required=True,
            help=f"integration type, e.g. {', '.join(INTEGRATION_TYPE_EXAMPLES)} (`connector controlplane connectors` "
            "lists the types each connector runs)",
        )
        p.add_argument("--settings", help="integration settings as a JSON object (or @FILE)")
        p.add_argument("--job-timeout", type=float, help="seconds from now until the job's deadline (default 900)")
        p.add_argument("--idempotency-key", help="enqueueing the same key again returns the first job")
        p.add_argument("--wait", action="store_true", help="wait for the outcome; exit 1 if the job fails")
        p.add_argument("--timeout", type=float, default=300.0, help="how long --wait waits (default %(default)s s)")
        if kind == "sync":
            p.add_argument("--resource-type", action="append", default=[], help="only this resource type (repeatable)")
            p.add_argument("--account-id", action="append", default=[], help="only this account (repeatable)")
            p.add_argument(
                "--split-accounts",
                type=int,
                default=0,
                metavar="N",
                help="run a discovery job, then per-account child jobs of at most N accounts (several replicas share them)",
            )
        else:
            p.add_argument("--grant-id", required=True, help="stable grant id (shared by the grant and its revoke)")
            p.add_argument("--principal", required=True, help="who gets access: role ARN, user/group id, ...")
            p.add_argument("--target", help="integration-specific target as a JSON object (or @FILE)")
            p.add_argument("--dry-run", action="store_true", help="list the calls it would make; make none")
        if kind == "grant":
            p.add_argument("--expires-in", type=float, help="seconds until the grant expires")
            p.add_argument("--requester", help="who asked for the access (audit)")
            p.add_argument(
                "--requester-public-key",
                metavar="BASE64",
                help="the requester's X25519 public key (`credentials keygen`): credentials are sealed to it",
            )
        p.set_defaults(func=cmd_dispatch)

    jobs = sub.add_parser("jobs", help="list, show, wait for or cancel jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    listing = jobs_sub.add_parser("list", help="newest jobs first")
    _admin_options(listing)
    listing.add_argument("--connector-id", help="only this connector's jobs")
    listing.add_argument("--state", choices=sorted(STATES), help="only jobs in this state")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default %(default)s)")
    for action, text in (("show", "one job"), ("wait", "wait until a job finishes"), ("cancel", "cancel a job")):
        p = jobs_sub.add_parser(action, help=text)
        _admin_options(p)
        p.add_argument("job_id")
        if action == "cancel":
            p.add_argument("--wait", action="store_true", help="wait until the replica has stopped the job")
        if action in ("wait", "cancel"):
            p.add_argument("--timeout", type=float, default=300.0, help="seconds (default %(default)s)")
    jobs.set_defaults(func=cmd_jobs)

    connectors = sub.add_parser(
        "connectors", help="the connector replicas that said Hello: version, last seen, integration types they run"
    )
    _admin_options(connectors)
    connectors.add_argument("--connector-id", help="only this connector's replicas")
    connectors.set_defaults(func=cmd_connectors)

    inventory = sub.add_parser("inventory", help="query the synced inventory")
    _admin_options(inventory)
    inventory.add_argument("--integration-id", help="only this integration")
    inventory.add_argument("--type", help="only this item type, e.g. aws.account")
    inventory.add_argument("--account-id", help="only this AWS account")
    inventory.add_argument("--limit", type=int, default=100, help="at most this many rows (default %(default)s)")
    inventory.set_defaults(func=cmd_inventory)

    events = sub.add_parser("events", help="what connectors did on their own (e.g. expiry revokes), newest first")
    _admin_options(events)
    events.add_argument("--connector-id", help="only this connector's events")
    events.add_argument("--type", help="only this event type, e.g. grant.expired_revoked")
    events.add_argument("--grant-id", help="only events about this grant")
    events.add_argument("--limit", type=int, default=50, help="at most this many (default %(default)s)")
    events.set_defaults(func=cmd_events)

    credentials = sub.add_parser(
        "credentials",
        help="the requester's side of sealed credentials: make a key pair, open a grant's credentials",
    )
    cred_sub = credentials.add_subparsers(dest="credentials_command", required=True, metavar="ACTION")
    keygen = cred_sub.add_parser("keygen", help="write a new X25519 private key (0600) and print its public key")
    keygen.add_argument("--out", required=True, help="file for the private key")
    keygen.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    keygen.set_defaults(func=cmd_credentials)
    opener = cred_sub.add_parser("open", help="open the credentials a grant job sealed to your key")
    opener.add_argument("job_id")
    opener.add_argument("--private-key", required=True, help="the file `credentials keygen` wrote")
    _admin_options(opener)
    opener.set_defaults(func=cmd_credentials)

    token = sub.add_parser("token", help="manage connector tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_sub.add_parser(
        "create",
        help="create a connector token",
        description="Generate a random connector token, store its SHA-256 in the db and write the token to a "
        "new 0600 file: the only place it appears (it is never printed).",
    )
    create.add_argument("--db", required=True, help="the control plane's SQLite file")
    create.add_argument("--connector-id", required=True)
    create.add_argument("--out", required=True, help="file to write the token to (created with mode 0600)")
    create.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    create.add_argument("--replace", action="store_true", help="revoke this connector's other tokens")
    create.set_defaults(func=cmd_token_create)

    signing = sub.add_parser("signing-key", help="manage the job-signing key")
    signing_sub = signing.add_subparsers(dest="signing_command", required=True, metavar="ACTION")
    key_create = signing_sub.add_parser(
        "create",
        help="create an Ed25519 job-signing key",
        description="Write a new Ed25519 private key (PKCS#8 PEM, mode 0600) for `serve --job-signing-key` and "
        "print its base64 public key: the value connectors pin in CONNECTOR_JOB_SIGNING_KEYS.",
    )
    key_create.add_argument("--out", required=True, help="private key file to create (mode 0600)")
    key_create.add_argument("--public-out", help="also write the base64 public key to this file")
    key_create.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    key_create.set_defaults(func=cmd_signing_key_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already explained
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.func(args))
    except (UsageError, SealedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        name = code.name if code is not None else "UNKNOWN"
        print(f"error: the control plane answered {name}: {details}", file=sys.stderr)
        hint = tls_hint(args, details or "") if code == grpc.StatusCode.UNAVAILABLE else None
        if hint:
            print(f"hint: {hint}", file=sys.stderr)
        return EXIT_RPC


def _uses_tls(args: argparse.Namespace) -> bool:
    return bool(
        getattr(args, "tls", False)
        or getattr(args, "tls_ca", None)
        or os.environ.get("CONTROLPLANE_TLS_CA")
        or getattr(args, "tls_client_cert", None)
        or os.environ.get("CONTROLPLANE_TLS_CLIENT_CERT")
    )


def _speaks_tls(address: str, timeout: float = 5.0) -> bool:
    """Whether the server at host:port answers a TLS handshake (its certificate is not judged here)."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host.strip("[]") or None),
        ):
            return True
    except (OSError, ValueError):
        return False


def tls_hint(args: argparse.Namespace, details: str) -> str | None:
    """Why an operator command could not connect, when TLS is the reason: a plaintext client against a TLS
    control plane (gRPC only says "Socket closed"), or a certificate this client does not trust."""
    server = getattr(args, "server", None)
    if not server:
        return None
    if not _uses_tls(args):
        if _speaks_tls(server):
            return (
                f"the control plane at {server} serves TLS: pass --tls-ca CA.pem (the CA that issued its certificate; "
                "env CONTROLPLANE_TLS_CA), or --tls to trust the system's roots"
            )
        return None
    lowered = details.lower()
    if "certificate" in lowered or "handshake" in lowered:
        return (
            "the control plane's certificate is not trusted: pass --tls-ca with the CA that issued it, and use the "
            "host name the certificate names in --server"
        )
    return None
