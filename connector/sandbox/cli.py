"""`connector sandbox serve`: run the sandbox standalone until SIGINT/SIGTERM.

The first line printed is `endpoint: http://127.0.0.1:PORT` (flushed), so a parent process can parse it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from connector.sandbox.databases import SeedDatabase
from connector.sandbox.seed import ADMIN_ROLE_NAME, PARTITION_REGIONS, SeedInfo, SeedSpec
from connector.sandbox.server import ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY, Sandbox


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connector sandbox", description="The embedded AWS sandbox (moto + extensions)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the sandbox on 127.0.0.1 until SIGINT/SIGTERM")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    serve.add_argument("--port", type=int, default=0, help="port (default 0: a free port, printed on start)")
    serve.add_argument("--accounts", type=int, default=12, help="member accounts to seed (default 12, min 4)")
    serve.add_argument(
        "--seed", action=argparse.BooleanOptionalAction, default=True, help="seed an organisation (default: yes)"
    )
    serve.add_argument("--connector-id", default=SeedSpec.connector_id, help="connector id = management ExternalId")
    serve.add_argument("--member-role-name", default=SeedSpec.member_role_name, help="member-account role name")
    serve.add_argument(
        "--partition",
        default=SeedSpec.partition,
        choices=sorted(PARTITION_REGIONS),
        help="the partition the organisation lives in (default %(default)s); its regions follow",
    )
    serve.add_argument(
        "--admin-config",
        help="write the AWS config file with an administrator profile per account here (default: a temporary file)",
    )
    serve.add_argument(
        "--database",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="a PostgreSQL RDS instance tagged for the connector (auth_type user-password, apono-secret) whose "
        "endpoint leads to HOST:PORT through the printed CONNECTOR_DATABASE_ENDPOINTS; its secret holds the login "
        f"in ${LOGIN_ENV} (user:password). Repeatable.",
    )
    return parser


def admin_config(sandbox: Sandbox, info: SeedInfo) -> str:
    """An AWS config file (CLI v2 and boto3) with profile `sandbox-admin` (the sandbox's admin keys: the management
    account's root) and `sandbox-<account id>` per account (its OrganizationAccountAccessRole, assumed from the
    admin), each pointed at the sandbox. The keys are the sandbox's fixed, local ones."""
    lines = [
        "[profile sandbox-admin]",
        f"aws_access_key_id = {ROOT_ACCESS_KEY_ID}",
        f"aws_secret_access_key = {ROOT_SECRET_ACCESS_KEY}",
        f"region = {info.home_region}",
        f"endpoint_url = {sandbox.endpoint}",
        "",
    ]
    for account in info.accounts[1:]:
        lines += [
            f"[profile sandbox-{account.id}]",
            f"role_arn = arn:{info.partition}:iam::{account.id}:role/{ADMIN_ROLE_NAME}",
            "source_profile = sandbox-admin",
            "role_session_name = sandbox-admin",
            f"region = {info.home_region}",
            f"endpoint_url = {sandbox.endpoint}",
            "",
        ]
    return "\n".join(lines)


def _admin_lines(sandbox: Sandbox, info: SeedInfo, path: str) -> list[str]:
    with_clusters = {c.account for c in info.clusters}
    member = next((a for a in info.accounts[1:] if a.id in with_clusters), info.accounts[0])
    return [
        "admin: look at any account as an administrator (profiles sandbox-admin and sandbox-<account id>):",
        f"  export AWS_CONFIG_FILE={shlex.quote(path)}",
        f"  aws --profile sandbox-{member.id} eks list-clusters          # account {member.id} ({member.name})",
        f"  aws --profile sandbox-admin organizations list-accounts     # the management account {info.management_account_id}",
        "  (an explicit --profile wins over the AWS_* keys exported above)",
    ]


LOGIN_ENV = "SANDBOX_DATABASE_LOGIN"


def _databases(values: list[str]) -> tuple[SeedDatabase, ...]:
    """--database NAME=HOST:PORT entries (ValueError naming the bad one)."""
    if not values:
        return ()
    user, sep, password = os.environ.get(LOGIN_ENV, "").partition(":")
    if not sep or not user or not password:
        raise ValueError(f"--database needs the connector's database login in {LOGIN_ENV}=user:password")
    out = []
    for value in values:
        name, sep, where = value.partition("=")
        host, colon, port = where.rpartition(":")
        if not sep or not colon or not host or not port.isdigit():
            raise ValueError(f"--database {value!r}: expected NAME=HOST:PORT")
        out.append(SeedDatabase(name, credentials=(user, password), connect_to=(host, int(port))))
    return tuple(out)


def _summary(info: SeedInfo) -> list[str]:
    modes: dict[str, int] = {}
    for cluster in info.clusters:
        modes[cluster.mode] = modes.get(cluster.mode, 0) + 1
    lines = [
        f"seed: organization {info.organization_id} (root {info.root_id}, partition {info.partition}, home region "
        f"{info.home_region}), {len(info.accounts)} accounts "
        f"(management {info.management_account_id}), {len(info.ou_ids) - 1} OUs, seeded in {info.seconds:.2f}s",
        f"seed: connector role {info.connector_role_arn}",
        f"seed: management role {info.management_role_arn} (ExternalId {info.external_id})",
        f"seed: member role name {info.member_role_name}; account without it: {info.account_without_member_role}",
        f"seed: {len(info.clusters)} EKS clusters ({', '.join(f'{k}={v}' for k, v in sorted(modes.items()))})",
        *(
            f"seed: {d.kind} {d.identifier} in {d.account}/{d.region} at {d.address}:{d.port}, secret {d.secret_arn}"
            for d in info.databases
        ),
    ]
    if info.identity_center is not None:
        ic = info.identity_center
        lines.append(
            f"seed: Identity Center {ic.instance_arn} (store {ic.identity_store_id}): "
            f"{len(ic.users)} users, {len(ic.groups)} groups, {len(ic.permission_sets)} permission sets"
        )
    return lines


def serve(args: argparse.Namespace) -> int:
    spec = None
    if args.seed:
        try:
            spec = SeedSpec(
                accounts=args.accounts,
                connector_id=args.connector_id,
                member_role_name=args.member_role_name,
                partition=args.partition,
                # The account without the member role is the fourth workload account: a small seed has none.
                account_without_member_role=SeedSpec.account_without_member_role if args.accounts >= 5 else None,
                databases=_databases(args.database),
            )
        except ValueError as exc:
            print(f"connector sandbox serve: {exc}", file=sys.stderr)
            return 2
    try:
        sandbox = Sandbox.start(seed=spec, port=args.port, host=args.host)
    except OSError as exc:
        print(f"connector sandbox serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"endpoint: {sandbox.endpoint}", flush=True)
        print("# use it from a shell (AWS CLI v2 and boto3 honour AWS_ENDPOINT_URL):")
        for key, value in sandbox.env().items():
            print(f"export {key}={shlex.quote(value)}")
        if sandbox.seeded:
            for line in _summary(sandbox.seed_info):
                print(line)
            path = args.admin_config or str(Path(tempfile.mkdtemp(prefix="sandbox-")) / "aws-config")
            Path(path).write_text(admin_config(sandbox, sandbox.seed_info), encoding="utf-8")
            for line in _admin_lines(sandbox, sandbox.seed_info, path):
                print(line)
            if sandbox.seed_info.database_endpoints:
                print(f"export CONNECTOR_DATABASE_ENDPOINTS={shlex.quote(sandbox.seed_info.database_endpoints)}")
        print(f"control: {sandbox.endpoint}/_sandbox/faults, /_sandbox/calls, /_sandbox/seed; moto: /moto-api/")
        print(
            f"lambda: every Invoke your function received: curl -s {sandbox.endpoint}/_sandbox/lambda/invocations"
            "  (filters: ?function=NAME&event_type=grant-access&account=ID; DELETE clears them)"
        )
        print("serving until SIGINT/SIGTERM", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        sandbox.stop()
    print("sandbox stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover - argparse enforces the sub-command
