"""`connector doctor`: a preflight run where the connector runs. One line per check (PASS / WARN / FAIL) and,
for anything not passing, the fix.

    connector doctor --settings integration.json [--sample 3] [--json]

It reads the same CONNECTOR_* configuration as `connector run` (connector.config.load_config) plus the
integration settings (a JSON file with the settings the control plane sends with every job:
management_account_role_arn, external_id, member_role_name, regions, excluded_account_ids, ...; flags
override single settings), and keeps going when parts are missing: an unset control plane is a failed
check with its fix, not a crash.

Checks: configuration; control plane reachable, TLS valid, token accepted (Hello); connector identity
(sts:GetCallerIdentity via the default credential chain); management-account role assumable (trust policy,
ExternalId); Organizations readable; member-account role assumable in a sample of accounts; each region
reachable in those accounts or denied by a service control policy; EKS clusters' authentication modes (WARN
for CONFIG_MAP: access entries unavailable); when the settings' resource_types name database types, each
database tagged for this connector (tags, secret readable, endpoint reachable); with ec2_instance, the EC2
and SSM reads and how many running instances Session Manager reaches; the guardrail file.

Exit codes: 0 nothing failed (warnings allowed), 1 a check failed (something would stop a sync or a grant),
2 bad arguments. `--json` prints {"ok", "summary", "checks": [{"id", "status", "message", "fix"}]}.
Nothing secret is printed: the token is never shown, only whether the control plane accepted it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import ssl
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import botocore.session
import grpc
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from connector import __version__
from connector.aws.endpoints import resolved
from connector.aws.errors import classify_aws_error, error_code
from connector.aws.partitions import iam_role_arn, sts_region
from connector.aws.sessions import AwsSessions, ClientSettings, clamp_session_duration
from connector.config import AgentConfig, ConfigError, load_config
from connector.errors import InvalidSettings
from connector.integrations.aws_organization import explorer
from connector.integrations.aws_organization import scope as scope_rules
from connector.integrations.aws_organization.database_discovery import DATABASE_RESOURCE_TYPES, DiscoveredDatabase
from connector.integrations.aws_organization.database_scope import DatabaseScope, ReadyDatabase
from connector.integrations.aws_organization.ec2_inventory import instance_items
from connector.integrations.aws_organization.org_tree import Account
from connector.integrations.aws_organization.settings import OrgSettings, parse_settings, partition_of_settings
from connector.integrations.base import InventoryItem
from connector.integrations.endpoints import EndpointMap
from connector.jobs.guardrails import GuardrailError, load_guardrails
from connector.net.proxy import ProxyError, grpc_channel_options, grpc_proxy, open_tunnel
from connector.v1 import connector_pb2, connector_pb2_grpc

Status = Literal["pass", "warn", "fail"]
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
RPC_TIMEOUT = 10.0
CERT_EXPIRY_WARN_DAYS = 14
# Few retries and short timeouts: a preflight should answer in seconds, and say what it could not reach.
DOCTOR_CLIENTS = ClientSettings(max_attempts=3, connect_timeout=5.0, read_timeout=15.0)


@dataclass(frozen=True)
class Check:
    id: str
    status: Status
    message: str
    fix: str = ""


def _ok(check_id: str, message: str) -> Check:
    return Check(check_id, "pass", message)


def _warn(check_id: str, message: str, fix: str) -> Check:
    return Check(check_id, "warn", message, fix)


def _fail(check_id: str, message: str, fix: str) -> Check:
    return Check(check_id, "fail", message, fix)


# -- configuration -------------------------------------------------------------------------------------


def _load(environ: Mapping[str, str]) -> tuple[AgentConfig | None, list[Check]]:
    """The agent config, or the best that can be had: a bad guardrail path is its own check, so retry
    without it before giving up on the control-plane checks."""
    env = dict(environ)
    try:
        return load_config(env), [_ok("config", "CONNECTOR_* configuration is valid")]
    except ConfigError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        problem = lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")
        check = _fail("config", problem, "set or correct the variables named above (see docs/deploy.md)")
    if env.pop("CONNECTOR_GUARDRAILS_FILE", None) is not None:
        try:
            return load_config(env), [check]
        except ConfigError:
            pass
    return None, [check]


# -- control plane -------------------------------------------------------------------------------------


def control_plane_checks(config: AgentConfig | None, environ: Mapping[str, str]) -> list[Check]:
    if config is None:
        if not environ.get("CONTROL_PLANE_URL"):
            fix = "set CONTROL_PLANE_URL=https://HOST:PORT (and CONNECTOR_ID, CONNECTOR_TOKEN_FILE)"
            return [_fail("control_plane.reachable", "no control plane configured (CONTROL_PLANE_URL is unset)", fix)]
        return [
            _fail(
                "control_plane.reachable",
                "not checked: the configuration is invalid",
                "fix the `config` check first, then run doctor again",
            )
        ]
    parts = urlsplit(config.control_plane_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = grpc_proxy(host, port, environ)
    checks: list[Check] = []
    if proxy is not None:  # the agent's path: a CONNECT tunnel through the proxy, then TLS inside it
        try:
            raw = open_tunnel(proxy, host, port, RPC_TIMEOUT)
        except ProxyError as exc:
            return [
                _fail(
                    "control_plane.proxy",
                    str(exc),
                    f"check {proxy.variable} (the proxy's address) and that the proxy allows CONNECT to {host}:{port}; "
                    "or exempt the control plane in NO_PROXY if it is reachable directly",
                )
            ]
        checks.append(_ok("control_plane.proxy", f"the proxy {proxy.describe()} opened a tunnel to {host}:{port}"))
        checks.append(_ok("control_plane.reachable", f"{host}:{port} reachable through the proxy"))
        with raw:
            tls = _tls_check(config, host, port, raw)
        checks.append(tls)
        if tls.status != "fail":
            checks.append(_hello_check(config, environ))
        return checks
    try:
        raw = socket.create_connection((host, port), timeout=RPC_TIMEOUT)
    except OSError as exc:
        return [
            _fail(
                "control_plane.reachable",
                f"cannot connect to {host}:{port}: {exc.strerror or exc}",
                "check CONTROL_PLANE_URL, DNS, and that security groups / network policies / proxies allow "
                f"outbound TCP {port} to the control plane",
            )
        ]
    checks.append(_ok("control_plane.reachable", f"TCP connection to {host}:{port} opened (no proxy)"))
    with raw:  # the TLS check shakes hands on this same connection
        tls = _tls_check(config, host, port, raw)
    checks.append(tls)
    if tls.status == "fail":
        return checks
    checks.append(_hello_check(config, environ))
    return checks


def _tls_check(config: AgentConfig, host: str, port: int, raw: socket.socket) -> Check:
    if config.plaintext:
        return _warn(
            "control_plane.tls",
            "plaintext http:// to a loopback address (CONNECTOR_ALLOW_INSECURE_LOOPBACK)",
            "use an https:// CONTROL_PLANE_URL outside local testing",
        )
    context = ssl.create_default_context(cafile=str(config.tls_ca_file) if config.tls_ca_file else None)
    context.set_alpn_protocols(["h2"])
    if config.tls_client_cert_file and config.tls_client_key_file:
        context.load_cert_chain(str(config.tls_client_cert_file), str(config.tls_client_key_file))
    try:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            cert = tls.getpeercert() or {}
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return _fail(
            "control_plane.tls",
            f"the control plane's certificate is not trusted: {exc.verify_message}",
            "set CONNECTOR_TLS_CA_FILE to the CA bundle that signed it, and make sure CONTROL_PLANE_URL's host "
            "name is in the certificate",
        )
    except (ssl.SSLError, OSError) as exc:
        return _fail(
            "control_plane.tls",
            f"TLS handshake with {host}:{port} failed: {exc}",
            "check that the control plane serves TLS on this port (and that a proxy does not intercept it)",
        )
    not_after = cert.get("notAfter")
    if isinstance(not_after, str):
        expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
        days = (expires - datetime.now(UTC)).days
        if days < CERT_EXPIRY_WARN_DAYS:
            return _warn(
                "control_plane.tls",
                f"certificate valid ({version}) but it expires in {days} days ({expires:%Y-%m-%d})",
                "renew the control plane's certificate",
            )
    return _ok("control_plane.tls", f"certificate verified for {host} ({version})")


def _channel(config: AgentConfig, environ: Mapping[str, str]) -> grpc.Channel:
    """As the agent's channel: the same proxy decision (connector.net.proxy)."""
    host, port = config.host_port
    options = grpc_channel_options(host, port, environ)
    if config.plaintext:
        return grpc.insecure_channel(config.target, options=options)
    root = config.tls_ca_file.read_bytes() if config.tls_ca_file else None
    key = config.tls_client_key_file.read_bytes() if config.tls_client_key_file else None
    chain = config.tls_client_cert_file.read_bytes() if config.tls_client_cert_file else None
    return grpc.secure_channel(config.target, grpc.ssl_channel_credentials(root, key, chain), options=options)


def _hello_check(config: AgentConfig, environ: Mapping[str, str]) -> Check:
    try:
        token = config.read_token()
    except (ConfigError, OSError) as exc:
        return _fail("control_plane.token", f"cannot read the token: {exc}", "check CONNECTOR_TOKEN_FILE")
    request = connector_pb2.HelloRequest(
        connector_id=config.id, version=__version__, host_id=f"doctor-{socket.gethostname()}"
    )
    channel = _channel(config, environ)
    try:
        stub = connector_pb2_grpc.ControlPlaneStub(channel)
        response = stub.Hello(request, metadata=(("authorization", f"Bearer {token}"),), timeout=RPC_TIMEOUT)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return _fail(
                "control_plane.token",
                f"the control plane refused the token (UNAUTHENTICATED: {details})",
                "put this connector's current token in CONNECTOR_TOKEN_FILE (or CONNECTOR_TOKEN)",
            )
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return _fail(
                "control_plane.token",
                f"the token is valid but not for connector {config.id!r} (PERMISSION_DENIED: {details})",
                "set CONNECTOR_ID to the connector the token was issued for",
            )
        name = code.name if code is not None else "UNKNOWN"
        return _fail(
            "control_plane.token",
            f"Hello failed ({name}: {details})",
            "check that CONTROL_PLANE_URL points at the connector API (gRPC), not a web page or a proxy",
        )
    finally:
        channel.close()
    lease = response.lease_duration.seconds
    return _ok("control_plane.token", f"Hello accepted for connector {config.id!r} (lease {lease}s)")


# -- AWS -----------------------------------------------------------------------------------------------


def _aws_error(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        message = str(exc.response.get("Error", {}).get("Message", ""))[:300]
        return f"{error_code(exc)}: {message}"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


@dataclass
class AwsContext:
    aws: AwsSessions
    settings: OrgSettings
    connector_id: str
    identity_arn: str = ""
    management: str = ""  # session key once the management role was assumed


def identity_check(ctx: AwsContext) -> Check:
    try:
        sts = ctx.aws.client(ctx.aws.identity(), "sts", ctx.settings.region)
        ident = sts.get_caller_identity()
    except NoCredentialsError:
        return _fail(
            "aws.identity",
            "no AWS credentials found by the default chain",
            "run with the connector's task role (ECS), IRSA or EKS Pod Identity (Kubernetes), or AWS_* env vars",
        )
    except (ClientError, BotoCoreError) as exc:
        mapped = classify_aws_error(exc)
        return _fail(
            "aws.identity",
            f"sts:GetCallerIdentity failed: {mapped.message if mapped else _aws_error(exc)}",
            "check the connector's credentials and that STS is reachable (VPC endpoint / NAT)",
        )
    ctx.identity_arn = str(ident.get("Arn", ""))
    return _ok("aws.identity", f"connector identity {ctx.identity_arn} (account {ident.get('Account')})")


def management_check(ctx: AwsContext) -> Check:
    role = ctx.settings.management_account_role_arn
    if role is None:
        ctx.management = ctx.aws.identity()
        return _warn(
            "aws.management_role",
            "no management_account_role_arn: the connector identity itself must be in the management account",
            "set management_account_role_arn (the ManagementAccountRoleArnOutput of the CloudFormation stack)",
        )
    external_id = ctx.settings.external_id or ctx.connector_id
    seconds, _ = clamp_session_duration(ctx.settings.session_duration_hours)
    key = ctx.aws.assume(role, external_id=external_id, duration_seconds=seconds)
    try:
        ctx.aws.credentials_of(key)
    except (ClientError, BotoCoreError) as exc:
        ctx.aws.forget(key)
        return _fail(
            "aws.management_role",
            f"cannot assume {role} with ExternalId {external_id!r}: {_aws_error(exc)}",
            f"the role's trust policy must admit {ctx.identity_arn or 'the connector identity'} with "
            f"sts:ExternalId = {external_id!r} (cloudformation/management-account-role.yaml: ConnectorRoleArn and "
            "the connector id); set external_id in the settings if the stack used another value",
        )
    ctx.management = key
    return _ok("aws.management_role", f"assumed {role} (ExternalId {external_id!r})")


def organizations_check(ctx: AwsContext) -> tuple[Check, list[Account], str]:
    """The check, the accounts the sync would cover (the sync's own walk and scoping rules), and the management
    account id."""
    try:
        org = ctx.aws.client(ctx.management, "organizations", ctx.settings.region)
        described = org.describe_organization()["Organization"]
        walk = scope_rules.org_walk(org, ctx.settings, with_tags=False)
        accounts = [node for node in scope_rules.walk_scope(walk, ctx.settings) if isinstance(node, Account)]
    except (ClientError, BotoCoreError) as exc:
        code = error_code(exc) if isinstance(exc, ClientError) else ""
        fix = (
            "the management role's account is not in an AWS Organization: check management_account_role_arn"
            if code == "AWSOrganizationsNotInUseException"
            else "allow organizations:DescribeOrganization, ListRoots, ListOrganizationalUnitsForParent, "
            "ListAccountsForParent, ListParents, DescribeOrganizationalUnit and ListTagsForResource to the "
            "management role (its template); check organizational_unit_id"
        )
        return _fail("aws.organizations", f"cannot read the organisation: {_aws_error(exc)}", fix), [], ""
    visited = [a for a in accounts if scope_rules.visited(a)]
    management_id = str(described.get("MasterAccountId", ""))
    scope = f" under {ctx.settings.organizational_unit_id}" if ctx.settings.organizational_unit_id else ""
    skipped = (
        f"; skipped by the settings: {', '.join(f'{i} ({why})' for i, why in walk.skipped)}" if walk.skipped else ""
    )
    message = (
        f"organization {described.get('Id')}: {len(accounts)} accounts in the sync's scope{scope} "
        f"({len(visited)} active){skipped}"
    )
    return _ok("aws.organizations", message), accounts, management_id


def sample_accounts(ctx: AwsContext, accounts: list[Account], management_id: str, size: int) -> list[str]:
    """The first `size` accounts the sync visits (active, in scope, not excluded), but the management account:
    StackSets never deploy the member role there, which the sync reports with its own hint."""
    return sorted(a.id for a in accounts if scope_rules.visited(a) and a.id != management_id)[:size]


def member_checks(ctx: AwsContext, accounts: list[str]) -> tuple[list[Check], dict[str, str]]:
    checks, sessions = [], {}
    partition = partition_of_settings(ctx.settings)
    for account in accounts:
        arn = iam_role_arn(partition, account, ctx.settings.member_role_name)
        key = ctx.aws.assume(arn, via=ctx.management, duration_seconds=3600)
        try:
            ctx.aws.credentials_of(key)
        except (ClientError, BotoCoreError) as exc:
            ctx.aws.forget(key)
            checks.append(
                _fail(
                    f"aws.member_role:{account}",
                    f"cannot assume {arn}: {_aws_error(exc)}",
                    f"deploy cloudformation/member-account-role.yaml (e.g. as a StackSet) to account {account} with "
                    f"role name {ctx.settings.member_role_name!r}, trusting the management role; or add the account "
                    "to excluded_account_ids (or its OU to excluded_ou_ids)",
                )
            )
            continue
        sessions[account] = key
        checks.append(_ok(f"aws.member_role:{account}", f"assumed {arn}"))
    return checks, sessions


def account_regions(ctx: AwsContext, sessions: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """The regions the sync reads in each account: the settings' list, or (`regions: enabled`) the account's
    enabled regions, as the sync lists them."""
    fixed = scope_rules.regions(ctx.settings)
    out: dict[str, tuple[str, ...]] = {}
    for account, key in sessions.items():
        if fixed is not None:
            out[account] = fixed
            continue
        try:
            ec2 = ctx.aws.client(key, "ec2", ctx.settings.region)
            out[account] = tuple(sorted(r["RegionName"] for r in ec2.describe_regions(AllRegions=False)["Regions"]))
        except (ClientError, BotoCoreError):
            out[account] = (ctx.settings.region,)
    return out


def region_and_eks_checks(ctx: AwsContext, sessions: Mapping[str, str]) -> list[Check]:
    checks: list[Check] = []
    if "eks_cluster" not in ctx.settings.resource_types:
        return [_ok("aws.regions", "eks_cluster is not in resource_types: the sync reads no region, none checked")]
    modes: dict[str, int] = {}
    config_map: list[tuple[str, str, str]] = []
    per_account = account_regions(ctx, sessions)
    for region in sorted({r for regions in per_account.values() for r in regions}) or [ctx.settings.region]:
        denied, disabled, failed, ok = [], [], [], 0
        for account, key in sessions.items():
            if region not in per_account.get(account, ()):
                continue
            try:
                eks = ctx.aws.client(key, "eks", region)
                names = [n for page in eks.get_paginator("list_clusters").paginate() for n in page.get("clusters", [])]
                for name in names:
                    cluster = eks.describe_cluster(name=name)["cluster"]
                    mode = str(cluster.get("accessConfig", {}).get("authenticationMode", "CONFIG_MAP"))
                    modes[mode] = modes.get(mode, 0) + 1
                    if mode == "CONFIG_MAP":
                        config_map.append((account, region, name))
                ok += 1
            except (ClientError, BotoCoreError) as exc:
                code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
                if "service control policy" in str(exc):
                    denied.append(account)
                elif code in ("UnrecognizedClientException", "InvalidClientTokenId", "AuthFailure"):
                    disabled.append(account)
                else:
                    failed.append(f"{account} ({_aws_error(exc)[:120]})")
        check_id = f"aws.region:{region}"
        if denied:
            checks.append(
                _fail(
                    check_id,
                    f"a service control policy denies EKS in {region} for accounts {', '.join(denied)}",
                    "in AWS Organizations > Policies, find the SCP with the Deny (often an aws:RequestedRegion "
                    f"allow-list) and add {region} or exempt the connector's member role; or remove {region} from "
                    "the integration's regions",
                )
            )
        elif disabled:
            checks.append(
                _fail(
                    check_id,
                    f"{region} is not enabled in accounts {', '.join(disabled)}",
                    f"enable the opt-in region {region} in those accounts, or remove it from regions",
                )
            )
        elif failed:
            checks.append(
                _fail(
                    check_id,
                    f"EKS calls failed in {region}: {'; '.join(failed)}",
                    "compare the member role's policy with cloudformation/member-account-role.yaml "
                    "(eks:ListClusters, eks:DescribeCluster)",
                )
            )
        elif not sessions:
            checks.append(_warn(check_id, f"{region}: not checked, no member account could be assumed", ""))
        else:
            checks.append(_ok(check_id, f"{region} reachable in {ok} sampled account(s)"))
    for account, region, name in config_map:
        checks.append(
            _warn(
                f"eks.auth_mode:{account}/{region}/{name}",
                f"cluster {name} uses authenticationMode CONFIG_MAP: access entries are unavailable, so EKS grants "
                "to it fail",
                f"aws eks update-cluster-config --name {name} --region {region} "
                "--access-config authenticationMode=API_AND_CONFIG_MAP",
            )
        )
    if sessions and not config_map:
        summary = ", ".join(f"{m}: {n}" for m, n in sorted(modes.items())) or "no clusters"
        checks.append(_ok("eks.auth_mode", f"every sampled cluster takes access entries ({summary})"))
    return checks


def _client_in(aws: AwsSessions, key: str, service: str, region: str) -> Any:
    return aws.client(key, service, region)


def database_checks(ctx: AwsContext, sessions: Mapping[str, str], endpoints: EndpointMap) -> list[Check]:
    """Each database tagged for this connector in the sampled accounts: its tags, its secret readable by the
    member role, its endpoint (after CONNECTOR_DATABASE_ENDPOINTS) reachable over TCP. Only when the settings'
    resource_types name a database type."""
    kinds = frozenset(set(ctx.settings.resource_types) & set(DATABASE_RESOURCE_TYPES))
    if not kinds:
        return []
    checks: list[Check] = []

    def reachable(db: DiscoveredDatabase, ready: ReadyDatabase) -> Iterator[InventoryItem]:
        host, port = ready.connect_to
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as exc:
            checks.append(
                _fail(
                    f"database:{db.account_id}/{db.region}/{db.identifier}",
                    f"{db.identifier} at {host}:{port} is not reachable: {exc.strerror or exc}",
                    "let the connector's network reach it (security group, VPC peering / PrivateLink), or map the "
                    "endpoint with CONNECTOR_DATABASE_ENDPOINTS",
                )
            )
        else:
            checks.append(
                _ok(
                    f"database:{db.account_id}/{db.region}/{db.identifier}",
                    f"{db.identifier}: tags valid, {'secret readable, ' if ready.username else ''}reachable at "
                    f"{host}:{port}",
                )
            )
        return iter(())

    for account, key in sessions.items():
        scope = DatabaseScope(
            ctx.connector_id,
            functools.partial(_client_in, ctx.aws, key),
            endpoints.resolve,
            kinds,
            reachable,
        )
        for region in scope_rules.regions(ctx.settings) or (ctx.settings.region,):
            try:
                for item in scope.items(account, region):
                    if item.type == "error":
                        where = item.id.rsplit("database:", 1)[-1]
                        checks.append(
                            _fail(
                                f"database:{account}/{region}/{where}",
                                str(item.attributes["message"]),
                                str(item.attributes["hint"]),
                            )
                        )
            except (ClientError, BotoCoreError) as exc:
                checks.append(
                    _fail(
                        f"database:{account}/{region}",
                        f"listing databases failed: {_aws_error(exc)}",
                        "compare the member role's policy with cloudformation/member-account-role.yaml "
                        "(rds:DescribeDBInstances, rds:DescribeDBClusters, redshift:DescribeClusters)",
                    )
                )
    if sessions and not checks:
        checks.append(_ok("databases", "no database in the sampled accounts is tagged for this connector"))
    return checks


# The member role's permission for each call the EC2 sync makes (all in cloudformation/member-account-role.yaml).
EC2_SYNC_PERMISSIONS = {
    "DescribeInstances": "ec2:DescribeInstances",
    "DescribeInstanceInformation": "ssm:DescribeInstanceInformation",
    "GetInstanceProfile": "iam:GetInstanceProfile",
    "ListAttachedRolePolicies": "iam:ListAttachedRolePolicies",
}
TOP_REASONS = 3


def ec2_ssm_checks(ctx: AwsContext, sessions: Mapping[str, str]) -> list[Check]:
    """When resource_types include ec2_instance: in each sampled account and region (the sync's regions,
    `enabled` resolved per account), the sync's own instance listing (DescribeInstances joined with SSM's
    DescribeInstanceInformation, ec2_inventory.instance_items) answers, and how many running instances Session
    Manager can reach, with the commonest reasons for the others."""
    if "ec2_instance" not in ctx.settings.resource_types:
        return []
    checks: list[Check] = []
    running = reachable = 0
    reasons: dict[str, int] = {}
    partition = partition_of_settings(ctx.settings)
    for account, regions in account_regions(ctx, sessions).items():
        key = sessions[account]
        for region in regions:
            ec2, ssm, iam = (
                ctx.aws.client(key, "ec2", region),
                ctx.aws.client(key, "ssm", region),
                ctx.aws.client(key, "iam"),
            )
            try:
                items = list(instance_items(ec2, ssm, iam, account, region, partition))
            except (ClientError, BotoCoreError) as exc:
                operation = str(getattr(exc, "operation_name", ""))
                permission = EC2_SYNC_PERMISSIONS.get(operation, operation or "the EC2 sync's calls")
                scp = " (a service control policy denies it)" if "service control policy" in str(exc) else ""
                checks.append(
                    _fail(
                        f"ec2_ssm:{account}/{region}",
                        f"{permission} failed{scp}: {_aws_error(exc)}",
                        f"the member role needs {permission}: deploy the current cloudformation/member-account-role.yaml "
                        "(update the stack set), or remove ec2_instance from resource_types",
                    )
                )
                continue
            for item in items:
                if item.attributes["state"] != "running":
                    continue  # a stopped instance is unreachable by choice, not a problem to fix
                running += 1
                if item.attributes["reachable"]:
                    reachable += 1
                else:  # grouped without the per-instance detail in parentheses (ping times)
                    reason = str(item.attributes["unreachable_reason"]).split(" (", 1)[0]
                    reasons[reason] = reasons.get(reason, 0) + 1
    if not sessions or checks:
        return checks
    top = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]
    message = (
        f"{reachable} of {running} running instance(s) in the sampled accounts are reachable by Session Manager"
        + ("; the others: " + "; ".join(f"{n} x {why}" for why, n in top) if top else "")
    )
    if top:
        fix = "fix the instances (the reasons say how), or grant only reachable ones: the sync's ec2.instance items say why each is not"
        checks.append(_warn("ec2_ssm", message, fix))
    else:
        checks.append(_ok("ec2_ssm", message))
    return checks


def endpoint_checks(ctx: AwsContext) -> list[Check]:
    """Which endpoint each service the connector calls resolves to, what decided it (AWS_ENDPOINT_URL_<SERVICE>,
    AWS_USE_FIPS_ENDPOINT, AWS_STS_REGIONAL_ENDPOINTS...) and the proxy it goes through. Resolving makes no call."""
    settings = ctx.settings
    wanted: list[tuple[str, str | None]] = [("sts", settings.region), ("organizations", settings.region)]
    role = settings.management_account_role_arn
    assume_region = sts_region(botocore.session.get_session().get_config_variable("region"), role) if role else None
    if assume_region and assume_region != settings.region:
        wanted.insert(1, ("sts", assume_region))
    if "iam_role" in settings.resource_types:
        wanted.append(("iam", None))
    if "eks_cluster" in settings.resource_types:
        wanted += [("eks", r) for r in (scope_rules.regions(settings) or (settings.region,))]
    if "identity_center" in settings.resource_types:
        wanted.append(("sso-admin", settings.sso_region or settings.region))
    if "ec2_instance" in settings.resource_types:
        wanted += [(s, r) for r in (scope_rules.regions(settings) or (settings.region,)) for s in ("ec2", "ssm")]
    checks = []
    for service, region in wanted:
        endpoint = resolved(ctx.aws.client(ctx.aws.identity(), service, region))
        checks.append(_ok(f"aws.endpoint:{service}:{endpoint.region or 'global'}", endpoint.line()))
    return checks


def aws_checks(
    settings: OrgSettings | None, connector_id: str, sample: int, endpoints: EndpointMap | None = None
) -> list[Check]:
    aws = AwsSessions(connector_id, DOCTOR_CLIENTS)
    ctx = AwsContext(aws, settings or OrgSettings(), connector_id)
    checks = [identity_check(ctx)]
    if checks[0].status == "fail":
        return checks
    if settings is None:
        checks.append(
            _warn(
                "aws.integration",
                "no integration settings: management role, Organizations, member roles, regions and EKS not checked",
                "pass --settings FILE (the integration's settings as JSON) or --management-role-arn",
            )
        )
        return checks
    checks += endpoint_checks(ctx)
    checks.append(management_check(ctx))
    if checks[-1].status == "fail":
        return checks
    org_check, accounts, management_id = organizations_check(ctx)
    checks.append(org_check)
    if org_check.status == "fail":
        return checks
    sampled = sample_accounts(ctx, accounts, management_id, sample)
    member, sessions = member_checks(ctx, sampled)
    checks += member
    checks += region_and_eks_checks(ctx, sessions)
    checks += database_checks(ctx, sessions, endpoints or EndpointMap())
    checks += ec2_ssm_checks(ctx, sessions)
    checks += resource_explorer_checks(ctx, management_id, sessions)
    return checks


def resource_explorer_checks(ctx: AwsContext, management_id: str, sessions: Mapping[str, str]) -> list[Check]:
    """When S3 / SNS / SQS discovery is on: whether Resource Explorer can serve it (aggregator index, an
    organisation-wide view with tags), and which sampled (account, region) has no index, the docs' pitfall of
    an SCP that denied Quick Setup's CloudFormation there. A warning, not a failure: discovery then uses the
    service APIs (slower, same inventory)."""
    settings = ctx.settings
    if settings.resource_explorer == "off" or not {"s3_bucket", "sns_topic", "sqs_queue"} & set(
        settings.resource_types
    ):
        return []
    account = settings.resource_explorer_account_id or management_id
    try:
        org_id = str(
            ctx.aws.client(ctx.management, "organizations", settings.region).describe_organization()["Organization"][
                "Id"
            ]
        )
        session = (
            ctx.management
            if account == management_id
            else sessions.get(account)
            or ctx.aws.assume(
                f"arn:{partition_of_settings(settings)}:iam::{account}:role/{settings.member_role_name}",
                via=ctx.management,
                duration_seconds=3600,
            )
        )
    except (ClientError, BotoCoreError) as exc:
        return [_warn("resource_explorer", f"not checked: {_aws_error(exc)}", "check the management role")]
    found = explorer.probe(
        lambda region: ctx.aws.client(session, "resource-explorer-2", region), account, settings.region, org_id
    )
    checks: list[Check] = []
    if found.setup is None:
        checks.append(
            _warn(
                "resource_explorer",
                "Resource Explorer cannot serve discovery; S3 / SNS / SQS are listed per account and region: "
                + " / ".join(found.problems),
                "follow seed docs 'Resource Explorer multi-region scans': enable trusted access, run Quick Setup "
                "with Entire Organization as the target and an aggregator region, then create the "
                "organisation-wide view there (or set resource_explorer: off)",
            )
        )
    else:
        checks.append(
            _ok(
                "resource_explorer",
                f"aggregator index in {found.setup.region} (account {account}) and organisation view "
                f"{found.setup.view_arn}: S3 / SNS / SQS discovery uses Search",
            )
        )
    missing: list[str] = []
    for member, key in sessions.items():
        for region in scope_rules.regions(settings) or (settings.region,):
            try:
                ctx.aws.client(key, "resource-explorer-2", region).get_index()
            except (ClientError, BotoCoreError) as exc:
                code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
                missing.append(f"{member}/{region}" + ("" if code == "ResourceNotFoundException" else f" ({code})"))
    if missing:
        checks.append(
            _warn(
                "resource_explorer.indexes",
                f"no Resource Explorer index in {', '.join(missing[:20])}: their resources are missing from the "
                "organisation view (discovery still lists them through the aggregator only where indexed)",
                "a service control policy probably denied CloudFormation there when Quick Setup ran (often an "
                "aws:RequestedRegion allow-list): add the regions to the allow-list or put cloudformation:* in "
                "its NotAction, re-run Quick Setup, or create the indexes by hand; also check that the account "
                "and region were among Quick Setup's targets",
            )
        )
    elif sessions and found.setup is not None:
        checks.append(
            _ok(
                "resource_explorer.indexes",
                f"every sampled account has an index in {', '.join(scope_rules.regions(settings) or (settings.region,))}",
            )
        )
    return checks


# -- guardrails ----------------------------------------------------------------------------------------


def guardrail_check(config: AgentConfig | None, environ: Mapping[str, str]) -> Check:
    raw = str(config.guardrails_file) if config and config.guardrails_file else environ.get("CONNECTOR_GUARDRAILS_FILE")
    if not raw:
        return _ok(
            "guardrails", "no guardrail file (CONNECTOR_GUARDRAILS_FILE unset): the control plane's policy applies"
        )
    try:
        rails = load_guardrails(Path(raw))
    except GuardrailError as exc:
        return _fail("guardrails", str(exc), "correct the file (see connector/jobs/guardrails.py for the rules)")
    if rails is None:  # pragma: no cover - load_guardrails returns None only for no path
        return _ok("guardrails", "no guardrail file")
    return _ok("guardrails", f"{raw} is valid")


# -- settings, running, printing -----------------------------------------------------------------------


def load_settings(args: argparse.Namespace) -> tuple[OrgSettings | None, Check | None]:
    raw: dict[str, Any] = {}
    if args.settings:
        try:
            data = json.loads(Path(args.settings).read_text(encoding="utf-8"))
        except OSError as exc:
            return None, _fail("settings", f"cannot read --settings {args.settings}: {exc.strerror}", "check the path")
        except json.JSONDecodeError as exc:
            return None, _fail(
                "settings", f"--settings {args.settings}: not JSON ({exc.msg}, line {exc.lineno})", "fix the JSON"
            )
        if not isinstance(data, dict):
            return None, _fail("settings", f"--settings {args.settings}: expected a JSON object", "fix the file")
        raw = data
    overrides = {
        "management_account_role_arn": args.management_role_arn,
        "external_id": args.external_id,
        "member_role_name": args.member_role_name,
        "regions": args.region or None,
    }
    raw |= {k: v for k, v in overrides.items() if v is not None}
    if not raw:
        return None, None
    try:
        settings = parse_settings(raw)
    except InvalidSettings as exc:
        return None, _fail("settings", exc.message, "correct that setting (names follow the integration's settings)")
    return settings, _ok("settings", "integration settings are valid")


def run_checks(args: argparse.Namespace, environ: Mapping[str, str]) -> list[Check]:
    config, checks = _load(environ)
    checks += control_plane_checks(config, environ)
    settings, settings_check = load_settings(args)
    if settings_check is not None:
        checks.append(settings_check)
    connector_id = config.id if config else environ.get("CONNECTOR_ID", "") or "doctor"
    if settings_check is None or settings_check.status != "fail":
        checks += aws_checks(settings, connector_id, args.sample, config.endpoint_map if config else None)
    checks.append(guardrail_check(config, environ))
    checks += database_preflight(args.database or [], config.id if config else connector_id)
    return checks


def database_preflight(files: Sequence[str], connector_id: str) -> list[Check]:
    """Each --database FILE: {"type": "postgresql" | "mysql" | "redshift", "settings": {...}}."""
    from connector.integrations.base import Services
    from connector.integrations.databases.preflight import database_checks

    out: list[Check] = []
    for name in files:
        try:
            data = json.loads(Path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            out.append(_fail("database", f"cannot read --database {name}: {type(exc).__name__}", "a JSON file"))
            continue
        if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
            out.append(
                _fail("database", f'--database {name}: expected {{"type": ..., "settings": {{...}}}}', "fix the file")
            )
            continue
        services = Services(connector_id=connector_id)
        for check_id, status, message, fix in database_checks(str(data.get("type", "")), data["settings"], services):
            out.append(Check(check_id, status, message, fix))  # type: ignore[arg-type]
    return out


def report(checks: Sequence[Check]) -> dict[str, Any]:
    summary = {s: sum(1 for c in checks if c.status == s) for s in ("pass", "warn", "fail")}
    return {"ok": summary["fail"] == 0, "summary": summary, "checks": [asdict(c) for c in checks]}


def format_text(checks: Sequence[Check]) -> Iterator[str]:
    for check in checks:
        line = f"{check.status.upper():4}  {check.id}: {check.message}"
        yield line + (f"  -> fix: {check.fix}" if check.fix and check.status != "pass" else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connector doctor",
        description="Preflight checks where the connector runs: control plane, AWS roles, Organizations, "
        "regions, EKS authentication modes, guardrails. Reads the same CONNECTOR_* variables as `connector run`.",
        epilog="exit codes: 0 nothing failed (warnings allowed); 1 a check failed; 2 bad arguments",
    )
    parser.add_argument("--settings", help="integration settings as a JSON file (as the control plane sends them)")
    parser.add_argument("--management-role-arn", help="overrides management_account_role_arn")
    parser.add_argument("--external-id", help="overrides external_id (default: the connector id)")
    parser.add_argument("--member-role-name", help="overrides member_role_name")
    parser.add_argument("--region", action="append", help="overrides regions (repeatable)")
    parser.add_argument("--sample", type=int, default=3, help="member accounts to check (default %(default)s)")
    parser.add_argument(
        "--database",
        action="append",
        help='a database integration to check, as JSON {"type": "postgresql", "settings": {...}} (repeatable)',
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document for machines")
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.sample < 1:
        print("connector doctor: --sample must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    checks = run_checks(args, os.environ if environ is None else environ)
    result = report(checks)
    if args.json:
        print(json.dumps(result | {"seconds": round(time.monotonic() - started, 2)}, indent=2))
    else:
        for line in format_text(checks):
            print(line)
        s = result["summary"]
        print(f"\ndoctor: {s['pass']} pass, {s['warn']} warn, {s['fail']} fail")
    return EXIT_OK if result["ok"] else EXIT_FAILED
