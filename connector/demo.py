"""`connector demo`: the embedded AWS sandbox, the reference control plane and the agent in one process.

It dispatches an organisation sync, then a namespace-scoped EKS grant and its revoke, prints an inventory
summary and each job's outcome as tables, and checks through boto3 that the access entry existed after the
grant and is gone after the revoke. Then a database: a local PostgreSQL stands behind a tagged RDS instance
(the endpoint map leads there); the connector discovers it, grants a read-only user on one schema, the
requester logs in with the sealed password and reads, and after the revoke the login is refused. Without
PostgreSQL server binaries on the machine that part is skipped with a message. Then EC2 through Systems
Manager: instances discovered with whether a session reaches them, a grant, a session opened as the
requester, a drift item once someone widens the connector's policy, and the revoke ending the session. Exit
code 0 only if every step did what it should.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError
from google.protobuf import json_format

from connector.agent.runtime import AgentRuntime
from connector.config import load_config
from connector.controlplane.client import AdminClient
from connector.controlplane.sealed import SealedError, open_job_credentials, read_private_key, write_keypair
from connector.controlplane.server import ControlPlaneThread
from connector.controlplane.settings import ServerSettings
from connector.jobs.runtime import build_dispatcher
from connector.logging import configure_logging
from connector.v1 import admin_pb2

INTEGRATION_ID = "demo-org"
TERMINAL = (admin_pb2.JOB_STATE_SUCCEEDED, admin_pb2.JOB_STATE_FAILED, admin_pb2.JOB_STATE_CANCELLED)
GRANT_ID = "demo-grant-0001"
DB_LOGIN = ("apono_connector", "demo-" + secrets.token_urlsafe(12))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class Demo:
    def __init__(self, accounts: int) -> None:
        self.accounts = accounts
        self.jobs: list[tuple[str, admin_pb2.JobRecord, float]] = []
        self.checks: list[tuple[str, bool, str]] = []

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, ok, detail))
        self.say(f"  [{'ok' if ok else 'FAILED'}] {name}{': ' + detail if detail else ''}")

    def run_job(
        self,
        admin: AdminClient,
        label: str,
        record: admin_pb2.JobRecord,
        timeout: float = 120,
        started: float | None = None,
    ) -> admin_pb2.JobRecord:
        started = time.monotonic() if started is None else started
        done = admin.wait(record.job.id, timeout=timeout)
        self.jobs.append((label, done, time.monotonic() - started))
        state = admin_pb2.JobState.Name(done.state).removeprefix("JOB_STATE_").lower()
        error = f" — {done.error.code}: {done.error.message}" if done.error.code else ""
        self.say(f"  {label}: {state} (attempt {done.job.attempt}, {time.monotonic() - started:.2f} s){error}")
        return done


@contextmanager
def agent_thread(env: dict[str, str]) -> Iterator[AgentRuntime]:
    config = load_config(env)
    runtime = AgentRuntime(config, build_dispatcher(config))
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(code=asyncio.run(runtime.run())), name="agent", daemon=True)
    thread.start()
    try:
        yield runtime
    finally:
        runtime.request_stop_threadsafe("demo finished")
        thread.join(timeout=runtime.max_shutdown_seconds())


def _connector_session(sandbox: Any, region: str) -> boto3.Session:
    env = sandbox.env(region)
    return boto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
        region_name=region,
    )


def member_eks(sandbox: Any, account_id: str, region: str) -> Any:
    """An EKS client in a member account, reached the way the connector does: connector role ->
    management role (ExternalId) -> member role. Used only to check what the grant did."""
    info = sandbox.seed_info
    session = _connector_session(sandbox, region)
    for arn, external in ((info.management_role_arn, info.external_id), (info.member_role_arn(account_id), None)):
        kwargs: dict[str, Any] = {"RoleArn": arn, "RoleSessionName": "demo-check"}
        if external:
            kwargs["ExternalId"] = external
        creds = session.client("sts", endpoint_url=sandbox.endpoint).assume_role(**kwargs)["Credentials"]
        session = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=region,
        )
    return session.client("eks", endpoint_url=sandbox.endpoint)


def run(accounts: int, partition: str = "aws") -> int:
    try:
        import connector.sandbox  # noqa: F401 - the sandbox extra (moto) must be installed
    except ImportError as exc:  # the sandbox extra is what makes the demo self-contained
        print(f"the demo needs the 'demo' extra: pip install 'access-connector[demo]' ({exc})", file=sys.stderr)
        return 2
    demo = Demo(accounts)
    t0 = time.monotonic()
    demo.say("== starting the AWS sandbox, the control plane and the agent")
    with _local_postgres(demo) as pg:
        return _run(demo, accounts, pg, t0, partition)


@contextmanager
def _local_postgres(demo: Demo) -> Iterator[Any]:
    """A throwaway PostgreSQL with the connector's user and an `orders` database, or None (said why)."""
    try:
        from connector.sandbox.postgres import LocalPostgres, NoPostgres
    except ImportError:  # pragma: no cover - part of the sandbox
        yield None
        return
    try:
        pg = LocalPostgres.start()
    except (NoPostgres, OSError) as exc:
        demo.say(f"  (database part skipped: {exc})")
        yield None
        return
    try:
        with pg.admin() as conn:
            conn.execute(f"CREATE ROLE {DB_LOGIN[0]} LOGIN CREATEROLE PASSWORD '{DB_LOGIN[1]}'")
            conn.execute(f"GRANT pg_signal_backend TO {DB_LOGIN[0]}")
            conn.execute(f"CREATE DATABASE orders OWNER {DB_LOGIN[0]}")
        with pg.admin("orders") as conn:
            conn.execute(f"SET ROLE {DB_LOGIN[0]}")
            conn.execute("CREATE SCHEMA sales")
            conn.execute("CREATE TABLE sales.orders (id int, item text)")
            conn.execute("INSERT INTO sales.orders VALUES (1, 'book'), (2, 'lamp')")
            conn.execute("CREATE TABLE public.payroll (name text, salary int)")
        yield pg
    finally:
        pg.stop()


def _run(demo: Demo, accounts: int, pg: Any, t0: float, partition: str) -> int:
    from connector.sandbox import Sandbox, SeedDatabase, SeedSpec
    from connector.sandbox.seed import PARTITION_REGIONS

    databases: tuple[Any, ...] = ()
    if pg is not None:
        # In the organisation's home region, whatever its partition (an integration cannot span partitions).
        home = PARTITION_REGIONS.get(partition, PARTITION_REGIONS["aws"])[0]
        databases = (
            SeedDatabase("orders", credentials=DB_LOGIN, db_name="orders", connect_to=(pg.host, pg.port), region=home),
        )
    try:
        spec = SeedSpec(accounts=accounts, partition=partition, databases=databases)
    except ValueError as exc:
        print(f"connector demo: {exc}", file=sys.stderr)
        return 2
    with Sandbox.start(seed=spec) as sandbox:
        info = sandbox.seed_info
        assert info is not None  # seeded above
        os.environ.update(sandbox.env())  # the agent's AWS identity: the sandbox's connector role
        token, admin_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        cp_settings = ServerSettings(
            bind="127.0.0.1:0",
            db_path=":memory:",
            connector_tokens={info.connector_id: token},
            admin_token=admin_token,
            lease_seconds=30.0,
            heartbeat_interval=2.0,
            poll_wait=10.0,
        )
        with ControlPlaneThread(cp_settings) as cp:
            agent_env = {
                "CONNECTOR_ID": info.connector_id,
                "CONTROL_PLANE_URL": cp.url,
                "CONNECTOR_TOKEN": token,
                "CONNECTOR_ALLOW_INSECURE_LOOPBACK": "true",
                "CONNECTOR_HEALTH_ADDR": "127.0.0.1:0",
                "CONNECTOR_CONCURRENCY": "4",
                "CONNECTOR_DRAIN_GRACE_SECONDS": "10",
                "CONNECTOR_DATABASE_ENDPOINTS": info.database_endpoints,
            }
            with agent_thread(agent_env) as runtime, cp.admin as admin:
                demo.say(
                    f"  sandbox {sandbox.endpoint}: organisation {info.organization_id}, {len(info.accounts)} accounts, "
                    f"{len(info.clusters)} EKS clusters (partition {info.partition}); control plane {cp.address}; "
                    f"connector {info.connector_id}"
                )
                settings = {
                    "integration_name": "demo-organization",
                    "management_account_role_arn": info.management_role_arn,
                    "member_role_name": info.member_role_name,
                    "regions": sorted({c.region for c in info.clusters}),
                    "region": info.home_region,
                    "sso_region": info.identity_center.region if info.identity_center else info.home_region,
                    "excluded_account_ids": [info.management_account_id],
                }
                sync_ok = _sync(demo, admin, runtime, info, settings)
                grant_ok = _grant_and_revoke(demo, admin, sandbox, info, settings)
                ec2_ok = _ec2_through_ssm(demo, admin, sandbox, info, settings)
                sealed_ok = _sealed_credentials(demo, admin, sandbox, info)
                if pg is not None:
                    _database(demo, admin, info, settings, pg)
    demo.say("\n== jobs")
    demo.say(
        table(
            [
                (
                    label,
                    rec.job.id[:12],
                    admin_pb2.JobState.Name(rec.state).removeprefix("JOB_STATE_"),
                    rec.job.attempt,
                    f"{seconds:.2f}s",
                    rec.error.code or "-",
                )
                for label, rec, seconds in demo.jobs
            ],
            ["job", "id", "state", "attempt", "took", "error"],
        )
    )
    failed = [name for name, ok, _ in demo.checks if not ok]
    demo.say(
        f"\n== {'all checks passed' if not failed else 'FAILED: ' + ', '.join(failed)} in {time.monotonic() - t0:.1f} s"
    )
    return 0 if sync_ok and grant_ok and ec2_ok and sealed_ok and not failed else 1


def _sync(demo: Demo, admin: AdminClient, runtime: AgentRuntime, info: Any, settings: dict[str, Any]) -> bool:
    demo.say("\n== sync: organisation, accounts, EKS clusters and their access, Identity Center, IAM roles")
    started = time.monotonic()
    queued = admin.enqueue_sync(info.connector_id, INTEGRATION_ID, "aws_organization", settings)
    shown = (0, 0)
    while admin.wait(queued.job.id, timeout=0.3).state not in TERMINAL:  # progress, as the agent reports it
        progress, scopes = max(
            ((r.progress, r.scopes) for r in list(runtime.running.values())), default=((0, 0), (0, 0))
        )
        if progress != shown and progress[1]:
            demo.say(f"  ... accounts done {progress[0]}/{progress[1]}, scopes done {scopes[0]}/{scopes[1]}")
            shown = progress
    record = demo.run_job(admin, "sync", queued, started=started)
    ok = record.state == admin_pb2.JOB_STATE_SUCCEEDED
    demo.check("sync succeeded", ok, record.error.message)
    if not ok:
        return False
    result = json_format.MessageToDict(record.result)
    counts = result.get("items", {})
    demo.say(table(sorted((k, int(v)) for k, v in counts.items()), ["inventory type", "items"]))
    accounts = admin.inventory(integration_id=INTEGRATION_ID, type="aws.account").items
    by_path: dict[str, list[str]] = {}
    for item in accounts:
        attrs = json_format.MessageToDict(item.attributes)
        by_path.setdefault(attrs.get("path", "?"), []).append(f"{item.name} ({attrs.get('state', '?')})")
    demo.say("")
    demo.say(
        table(sorted((p, len(v), ", ".join(sorted(v))[:70]) for p, v in by_path.items()), ["OU", "accounts", "names"])
    )
    clusters = admin.inventory(integration_id=INTEGRATION_ID, type="eks.cluster").items
    demo.say("")
    demo.say(
        table(
            sorted(
                (c.account_id, c.region, c.name, json_format.MessageToDict(c.attributes).get("authentication_mode", ""))
                for c in clusters
            ),
            ["account", "region", "cluster", "authentication mode"],
        )
    )
    errors = admin.inventory(integration_id=INTEGRATION_ID, type="error").items
    if errors:
        demo.say("\n  recorded per-scope errors (the rest of the sync finished):")
        for e in errors[:5]:
            demo.say(f"  - {e.id}: {json_format.MessageToDict(e.attributes).get('hint', '')}")
    demo.check(
        "inventory holds every active member account",
        len(accounts) == sum(1 for a in info.accounts[1:]),
        f"{len(accounts)} accounts",
    )
    reachable = [
        c for c in info.clusters if c.account not in (info.management_account_id, info.account_without_member_role)
    ]
    demo.check(
        f"every cluster ARN is in the organisation's partition ({info.partition})",
        all(c.id.startswith(f"arn:{info.partition}:eks:") for c in clusters),
    )
    demo.check(
        "inventory holds every EKS cluster the member roles can reach",
        {c.id for c in clusters} == {c.arn for c in reachable},
        f"{len(clusters)} clusters",
    )
    return True


def _grant_and_revoke(demo: Demo, admin: AdminClient, sandbox: Any, info: Any, settings: dict[str, Any]) -> bool:
    cluster = next(
        c
        for c in info.clusters
        if c.mode in ("API", "API_AND_CONFIG_MAP") and c.account != info.account_without_member_role
    )
    role = f"arn:{info.partition}:iam::{cluster.account}:role/demo-developers"
    target = {
        "resource_type": "eks_cluster",
        "account_id": cluster.account,
        "region": cluster.region,
        "cluster": cluster.name,
        "access_policies": ["AmazonEKSViewPolicy"],
        "scope": "namespace",
        "namespaces": ["team-a", "team-b"],
    }
    eks = member_eks(sandbox, cluster.account, cluster.region)
    demo.say(
        f"\n== grant: AmazonEKSViewPolicy in namespaces team-a, team-b of {cluster.name} ({cluster.account}/{cluster.region}) to {role}"
    )
    record = demo.run_job(
        admin,
        "grant",
        admin.enqueue_grant(
            info.connector_id,
            INTEGRATION_ID,
            "aws_organization",
            grant_id=GRANT_ID,
            principal=role,
            target=target,
            settings=settings,
            expires_in=3600,
        ),
    )
    demo.check("grant succeeded", record.state == admin_pb2.JOB_STATE_SUCCEEDED, record.error.message)
    try:
        policies = eks.list_associated_access_policies(clusterName=cluster.name, principalArn=role)[
            "associatedAccessPolicies"
        ]
        scopes = [(p["policyArn"].rsplit("/", 1)[-1], p["accessScope"]) for p in policies]
        prefix = f"arn:{info.partition}:eks::aws:cluster-access-policy/"
        demo.check(
            f"the access policy is named in the cluster's partition ({info.partition})",
            bool(policies) and all(p["policyArn"].startswith(prefix) for p in policies),
            ", ".join(p["policyArn"] for p in policies),
        )
        demo.check(
            "access entry exists with the namespace-scoped policy (checked through boto3)",
            bool(scopes) and scopes[0][1].get("namespaces") == ["team-a", "team-b"],
            str(scopes),
        )
    except ClientError as exc:
        demo.check("access entry exists after the grant (checked through boto3)", False, str(exc))
    demo.say("\n== revoke")
    record = demo.run_job(
        admin,
        "revoke",
        admin.enqueue_revoke(
            info.connector_id,
            INTEGRATION_ID,
            "aws_organization",
            grant_id=GRANT_ID,
            principal=role,
            target=target,
            settings=settings,
        ),
    )
    demo.check("revoke succeeded", record.state == admin_pb2.JOB_STATE_SUCCEEDED, record.error.message)
    try:
        eks.describe_access_entry(clusterName=cluster.name, principalArn=role)
        demo.check("access entry is gone after the revoke (checked through boto3)", False, "it still exists")
    except ClientError as exc:
        demo.check(
            "access entry is gone after the revoke (checked through boto3)",
            exc.response["Error"]["Code"] == "ResourceNotFoundException",
        )
    return True


def _admin_in(sandbox: Any, service: str, account: str, region: str) -> Any:
    """The customer's own admin client in a member account (moto's account header): what the customer does."""
    client = sandbox.client(service, region)
    client.meta.events.register(
        "before-call.*.*", lambda params, **_: params["headers"].__setitem__("x-moto-account-id", account)
    )
    return client


def _ec2_through_ssm(demo: Demo, admin: AdminClient, sandbox: Any, info: Any, settings: dict[str, Any]) -> bool:
    """The customer's instances (one with the AmazonSSMManagedInstanceCore role, one without), the sync's view
    of them, a Session Manager grant, a session as the requester, a drift item, the revoke ending the session."""
    from connector.sandbox import ssm_sessions

    region = settings["regions"][0]
    partition = info.partition
    account = next(c.account for c in info.clusters if c.account != info.account_without_member_role)
    iam, ec2 = _admin_in(sandbox, "iam", account, region), _admin_in(sandbox, "ec2", account, region)
    ec2_trust = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    iam.create_role(RoleName="ec2-ssm", AssumeRolePolicyDocument=json.dumps({"Statement": [ec2_trust]}))
    iam.attach_role_policy(
        RoleName="ec2-ssm", PolicyArn=f"arn:{partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
    )
    iam.create_instance_profile(InstanceProfileName="ec2-ssm")
    iam.add_role_to_instance_profile(InstanceProfileName="ec2-ssm", RoleName="ec2-ssm")
    ami = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    instances = {}
    for name, extra in (("web-1", {"IamInstanceProfile": {"Name": "ec2-ssm"}}), ("legacy-1", {})):
        tags = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}]
        made = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=tags, **extra)
        instances[name] = made["Instances"][0]["InstanceId"]
    requester_trust = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
        "Action": "sts:AssumeRole",
    }
    iam.create_role(
        RoleName="demo-ssm-users",
        AssumeRolePolicyDocument=json.dumps({"Statement": [requester_trust]}),
        Tags=[{"Key": ssm_sessions.ENFORCE_TAG, "Value": "true"}],  # the sandbox checks this role's sessions
    )

    demo.say(f"\n== EC2 through Systems Manager: instances of {account}/{region} and whether a session reaches them")
    record = demo.run_job(
        admin,
        "sync ec2",
        admin.enqueue_sync(
            info.connector_id, INTEGRATION_ID, "aws_organization", settings, resource_types=["ec2_instance"],
            account_ids=[account],
        ),
    )  # fmt: skip
    demo.check("ec2 sync succeeded", record.state == admin_pb2.JOB_STATE_SUCCEEDED, record.error.message)
    found = {
        i.name: json_format.MessageToDict(i.attributes)
        for i in admin.inventory(integration_id=INTEGRATION_ID, type="ec2.instance").items
    }
    demo.say(
        table(
            sorted((n, a.get("instance_id"), a.get("ssm", {}).get("ping_status", "-"), a.get("unreachable_reason") or "reachable")
                   for n, a in found.items()),
            ["instance", "id", "SSM ping", "Session Manager"],
        )
    )  # fmt: skip
    demo.check(
        "the sync says which instance a session reaches and why the other is not",
        found.get("web-1", {}).get("reachable") is True and "instance profile" in found.get("legacy-1", {}).get("unreachable_reason", ""),
    )  # fmt: skip

    target = {"resource_type": "ec2_ssm_session", "account_id": account, "region": region, "role": "demo-ssm-users",
              "instances": [instances["web-1"]]}  # fmt: skip
    demo.say(f"\n== grant: Session Manager shell on web-1 ({instances['web-1']}) to role demo-ssm-users")
    record = demo.run_job(
        admin,
        "grant ec2",
        admin.enqueue_grant(info.connector_id, INTEGRATION_ID, "aws_organization", grant_id="demo-grant-ec2",
                            principal="alice@example.com", target=target, settings=settings, expires_in=3600),
    )  # fmt: skip
    demo.check("ec2 grant succeeded", record.state == admin_pb2.JOB_STATE_SUCCEEDED, record.error.message)
    connect = json_format.MessageToDict(record.result).get("connect", {}).get("shell", ["?"])
    demo.say(f"  the requester connects with: {connect[0]}")
    creds = (
        sandbox.account_session(account).client("sts", endpoint_url=sandbox.endpoint)
        .assume_role(RoleArn=f"arn:{partition}:iam::{account}:role/demo-ssm-users", RoleSessionName="alice")["Credentials"]
    )  # fmt: skip
    requester = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"], region_name=region,
    ).client("ssm", endpoint_url=sandbox.endpoint)  # fmt: skip
    try:
        session = requester.start_session(Target=instances["web-1"])["SessionId"]
        demo.check("the requester opens a session on the granted instance", True, session)
    except ClientError as exc:
        demo.check("the requester opens a session on the granted instance", False, str(exc))
        return True

    demo.say("\n== drift: someone adds a statement to the connector's policy; a drift sync reports it")
    policy = next(n for n in iam.list_role_policies(RoleName="demo-ssm-users")["PolicyNames"] if "ssm" in n)
    document = iam.get_role_policy(RoleName="demo-ssm-users", PolicyName=policy)["PolicyDocument"]
    document["Statement"].append(
        {"Sid": "AddedByHand", "Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "*"}
    )
    iam.put_role_policy(RoleName="demo-ssm-users", PolicyName=policy, PolicyDocument=json.dumps(document))
    record = demo.run_job(
        admin,
        "sync drift",
        admin.enqueue_sync(info.connector_id, INTEGRATION_ID, "aws_organization", settings, resource_types=["drift"],
                           account_ids=[account]),
    )  # fmt: skip
    drift = [
        json_format.MessageToDict(i.attributes)
        for i in admin.inventory(integration_id=INTEGRATION_ID, type="drift").items
    ]
    demo.say(table([(d.get("kind"), d.get("problem"), d.get("where"), d.get("what_to_do", "")[:60]) for d in drift],
                   ["kind", "problem", "where", "what to do"]))  # fmt: skip
    demo.check(
        "one drift item: access added to a connector-made policy",
        record.state == admin_pb2.JOB_STATE_SUCCEEDED and [d.get("problem") for d in drift] == ["foreign_access"],
    )

    demo.say("\n== revoke: the policy goes and the requester's live session ends")
    record = demo.run_job(
        admin,
        "revoke ec2",
        admin.enqueue_revoke(info.connector_id, INTEGRATION_ID, "aws_organization", grant_id="demo-grant-ec2",
                             principal="alice@example.com", target=target, settings=settings),
    )  # fmt: skip
    demo.check("ec2 revoke succeeded", record.state == admin_pb2.JOB_STATE_SUCCEEDED, record.error.message)
    active = [
        s["SessionId"] for s in _admin_in(sandbox, "ssm", account, region).describe_sessions(State="Active")["Sessions"]
    ]
    demo.check(
        "the session is terminated and the policy is gone (checked through boto3)",
        session not in active and policy not in iam.list_role_policies(RoleName="demo-ssm-users")["PolicyNames"],
    )
    return True


def _sealed_credentials(demo: Demo, admin: AdminClient, sandbox: Any, info: Any) -> bool:
    """A Lambda custom integration hands out credentials: the connector seals them to the requester's key,
    the control plane stores only ciphertext, and the requester opens them with their private key."""
    region = info.home_region
    demo.say("\n== credentials only the requester can read: a Lambda custom integration's create-credentials")
    session = _connector_session(sandbox, region)
    iam = session.client("iam", endpoint_url=sandbox.endpoint)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam.create_role(RoleName="demo-credentials-fn", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    session.client("lambda", endpoint_url=sandbox.endpoint).create_function(
        FunctionName="demo-credentials",
        Runtime="nodejs20.x",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        Tags={"apono-connector-access": "true"},
    )
    password = secrets.token_urlsafe(18)
    # The sandbox's Lambda answers from a queue: grant-access, then create-credentials (the seed's contract).
    queued = {
        "account_id": info.connector_account_id,
        "region": region,
        "results": [
            json.dumps({"status": "ok"}),
            json.dumps({"status": "ok", "username": "jit-alice", "password": password}),
        ],
    }
    request = urllib.request.Request(  # noqa: S310 (the sandbox, on loopback)
        f"{sandbox.endpoint}/moto-api/static/lambda-simple/response", data=json.dumps(queued).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        answer.read()
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "requester.key"
        public_key = base64.b64decode(write_keypair(key_file))
        record = demo.run_job(
            admin,
            "grant+credentials",
            admin.enqueue_grant(
                info.connector_id,
                "demo-lambda",
                "lambda_custom",
                grant_id="demo-grant-0002",
                principal="alice",
                target={"resources": ["reports-db"], "permission": "reader", "credentials": "create"},
                settings={"function_name": "demo-credentials", "region": region},
                requester="alice@example.com",
                requester_public_key=public_key,
                expires_in=3600,
            ),
        )
        demo.check("credentials grant succeeded", record.state == admin_pb2.JOB_STATE_SUCCEEDED, record.error.message)
        stored = json_format.MessageToJson(record)
        demo.check("the control plane holds only ciphertext", password not in stored and "ciphertext" in stored)
        try:
            opened = open_job_credentials(record, read_private_key(key_file))
        except SealedError as exc:
            demo.check("the requester opens them with their private key", False, str(exc))
            return True
    demo.check(
        "the requester opens them with their private key",
        opened.get("password") == password,
        f"username={opened.get('username')}, password of {len(str(opened.get('password', '')))} characters",
    )
    return True


def _database(demo: Demo, admin: AdminClient, info: Any, settings: dict[str, Any], pg: Any) -> None:
    """A tagged RDS instance whose endpoint leads to the local PostgreSQL: discover, grant, log in, revoke."""
    import psycopg

    db = info.databases[0]
    excluded = [a for a in (info.management_account_id, info.account_without_member_role) if a]
    org = settings | {
        "resource_types": ["rds_instance"],
        "regions": [db.region],
        "database_ssl_mode": "disable",  # loopback to a throwaway server without TLS
        "excluded_account_ids": excluded,
    }
    demo.say(
        f"\n== database: RDS instance {db.identifier} ({db.account}/{db.region}) tagged apono-connector-id, "
        f"auth_type user-password, apono-secret; its endpoint {db.address}:{db.port} leads to {pg.host}:{pg.port}"
    )
    record = demo.run_job(
        admin, "database sync", admin.enqueue_sync(info.connector_id, INTEGRATION_ID, "aws_organization", org,
                                                     resource_types=["rds_instance"]),
    )  # fmt: skip
    tables = [i.name for i in admin.inventory(INTEGRATION_ID, type="postgresql.table").items]
    demo.check(
        "the tagged instance's tables are in the inventory", "orders" in tables and "payroll" in tables, str(tables)
    )
    target = {
        "resource_type": "rds_database", "account_id": db.account, "region": db.region, "instance_id": db.identifier,
        "database": "orders", "schema": "sales", "level": "read-only",
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "requester.key"
        public_key = base64.b64decode(write_keypair(key_file))
        record = demo.run_job(
            admin, "database grant", admin.enqueue_grant(
                info.connector_id, INTEGRATION_ID, "aws_organization", grant_id="demo-grant-0003",
                principal="alice@example.com", target=target, settings=org, expires_in=3600,
                requester_public_key=public_key,
            ),
        )  # fmt: skip
        demo.check("database grant succeeded", record.state == admin_pb2.JOB_STATE_SUCCEEDED, record.error.message)
        try:
            login = open_job_credentials(record, read_private_key(key_file))
        except SealedError as exc:
            demo.check("the requester logs in with the sealed password", False, str(exc))
            return

    def connect() -> Any:
        return psycopg.connect(
            host=pg.host, port=pg.port, user=login["username"], password=login["password"], dbname="orders",
            sslmode="disable", connect_timeout=5, autocommit=True,
        )  # fmt: skip

    try:
        with connect() as conn:
            rows = conn.execute("SELECT item FROM sales.orders ORDER BY id").fetchall()
            try:
                conn.execute("SELECT * FROM public.payroll")
                other = "read public.payroll too"
            except psycopg.errors.InsufficientPrivilege:
                other = ""
        demo.check(
            "the requester reads sales.orders and nothing else",
            rows == [("book",), ("lamp",)] and not other,
            f"user {login['username']}: {[r[0] for r in rows]}{'; ' + other if other else ''}",
        )
    except psycopg.Error as exc:
        demo.check("the requester reads sales.orders and nothing else", False, type(exc).__name__)
    record = demo.run_job(
        admin, "database revoke", admin.enqueue_revoke(
            info.connector_id, INTEGRATION_ID, "aws_organization", grant_id="demo-grant-0003",
            principal="alice@example.com", target=target, settings=org,
        ),
    )  # fmt: skip
    demo.check("database revoke succeeded", record.state == admin_pb2.JOB_STATE_SUCCEEDED, record.error.message)
    try:
        connect().close()
        demo.check("the login is refused after the revoke", False, "it still logs in")
    except psycopg.OperationalError:
        demo.check("the login is refused after the revoke", True)


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(
        prog="connector demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--accounts", type=int, default=12, help="member accounts in the sandbox organisation (default 12)"
    )
    parser.add_argument("--verbose", action="store_true", help="show the agent's and control plane's logs")
    parser.add_argument(
        "--partition",
        default="aws",
        choices=("aws", "aws-us-gov", "aws-cn"),
        help="the AWS partition the sandbox organisation lives in (GovCloud, China): every ARN and region follows",
    )
    opts = parser.parse_args(list(argv))
    configure_logging("info" if opts.verbose else "error", "console")
    return run(opts.accounts, opts.partition)
