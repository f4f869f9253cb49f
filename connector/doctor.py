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
for CONFIG_MAP: access entries unavailable); the guardrail file.

Exit codes: 0 nothing failed (warnings allowed), 1 a check failed (something would stop a sync or a grant),
2 bad arguments. `--json` prints {"ok", "summary", "checks": [{"id", "status", "message", "fix"}]}.
Nothing secret is printed: the token is never shown, only whether the control plane accepted it.
"""

from __future__ import annotations

import argparse
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

import grpc
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from connector import __version__
from connector.aws.errors import error_code
from connector.aws.sessions import AwsSessions, ClientSettings, clamp_session_duration
from connector.config import AgentConfig, ConfigError, load_config
from connector.errors import InvalidSettings
from connector.integrations.aws_organization import explorer
from connector.integrations.aws_organization.settings import OrgSettings, parse_settings
from connector.jobs.guardrails import GuardrailError, load_guardrails
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
    checks = [_ok("control_plane.reachable", f"TCP connection to {host}:{port} opened")]
    with raw:  # the TLS check shakes hands on this same connection
        tls = _tls_check(config, host, port, raw)
    checks.append(tls)
    if tls.status == "fail":
        return checks
    checks.append(_hello_check(config))
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


def _channel(config: AgentConfig) -> grpc.Channel:
    if config.plaintext:
        return grpc.insecure_channel(config.target)
    root = config.tls_ca_file.read_bytes() if config.tls_ca_file else None
    key = config.tls_client_key_file.read_bytes() if config.tls_client_key_file else None
    chain = config.tls_client_cert_file.read_bytes() if config.tls_client_cert_file else None
    return grpc.secure_channel(config.target, grpc.ssl_channel_credentials(root, key, chain))


def _hello_check(config: AgentConfig) -> Check:
    try:
        token = config.read_token()
    except (ConfigError, OSError) as exc:
        return _fail("control_plane.token", f"cannot read the token: {exc}", "check CONNECTOR_TOKEN_FILE")
    request = connector_pb2.HelloRequest(
        connector_id=config.id, version=__version__, host_id=f"doctor-{socket.gethostname()}"
    )
    channel = _channel(config)
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
        return _fail(
            "aws.identity",
            f"sts:GetCallerIdentity failed: {_aws_error(exc)}",
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


def organizations_check(ctx: AwsContext) -> tuple[Check, list[dict[str, Any]], str]:
    """The check, the organisation's accounts, and the management account id."""
    try:
        org = ctx.aws.client(ctx.management, "organizations", ctx.settings.region)
        described = org.describe_organization()["Organization"]
        accounts = [
            a
            for page in org.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 20})
            for a in page.get("Accounts", [])
        ]
    except (ClientError, BotoCoreError) as exc:
        code = error_code(exc) if isinstance(exc, ClientError) else ""
        fix = (
            "the management role's account is not in an AWS Organization: check management_account_role_arn"
            if code == "AWSOrganizationsNotInUseException"
            else "allow organizations:DescribeOrganization, ListAccounts, ListRoots, ListOrganizationalUnitsForParent, "
            "ListAccountsForParent, ListParents and ListTagsForResource to the management role (its template)"
        )
        return _fail("aws.organizations", f"cannot read the organisation: {_aws_error(exc)}", fix), [], ""
    active = [a for a in accounts if (a.get("State") or a.get("Status")) == "ACTIVE"]
    management_id = str(described.get("MasterAccountId", ""))
    message = f"organization {described.get('Id')}: {len(accounts)} accounts ({len(active)} active)"
    return _ok("aws.organizations", message), accounts, management_id


def sample_accounts(ctx: AwsContext, accounts: list[dict[str, Any]], management_id: str, size: int) -> list[str]:
    excluded = set(ctx.settings.excluded_account_ids) | {management_id}
    active = sorted(
        str(a["Id"])
        for a in accounts
        if (a.get("State") or a.get("Status")) == "ACTIVE" and str(a["Id"]) not in excluded
    )
    return active[:size]


def member_checks(ctx: AwsContext, accounts: list[str]) -> tuple[list[Check], dict[str, str]]:
    checks, sessions = [], {}
    partition = (ctx.settings.management_account_role_arn or "arn:aws:").split(":")[1]
    for account in accounts:
        arn = f"arn:{partition}:iam::{account}:role/{ctx.settings.member_role_name}"
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
                    "to excluded_account_ids",
                )
            )
            continue
        sessions[account] = key
        checks.append(_ok(f"aws.member_role:{account}", f"assumed {arn}"))
    return checks, sessions


def _regions(settings: OrgSettings) -> tuple[str, ...]:
    if settings.regions == "enabled":
        return (settings.region,)
    return settings.regions or (settings.region,)


def region_and_eks_checks(ctx: AwsContext, sessions: Mapping[str, str]) -> list[Check]:
    checks: list[Check] = []
    modes: dict[str, int] = {}
    config_map: list[tuple[str, str, str]] = []
    for region in _regions(ctx.settings):
        denied, disabled, failed, ok = [], [], [], 0
        for account, key in sessions.items():
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


def aws_checks(settings: OrgSettings | None, connector_id: str, sample: int) -> list[Check]:
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
                f"arn:{(settings.management_account_role_arn or 'arn:aws:').split(':')[1]}:iam::{account}:role/"
                f"{settings.member_role_name}",
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
        for region in _regions(settings):
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
            _ok("resource_explorer.indexes", f"every sampled account has an index in {', '.join(_regions(settings))}")
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
        checks += aws_checks(settings, connector_id, args.sample)
    checks.append(guardrail_check(config, environ))
    return checks


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
