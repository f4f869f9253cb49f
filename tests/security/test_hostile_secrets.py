"""A planted secret in every error path of every kind, with the shipped agent: none may come out.

`connector run` (sweeper on, debug logs, JSON to a file) and the reference control plane (a process, SQLite on
disk) handle jobs whose every way of failing carries a secret:
- the connector token (the agent's CONNECTOR_TOKEN and the control plane's token file);
- secret-looking settings of every integration type (password, api_token, client_secret, external_id), a
  password in a cluster URL (reachable, so the grant goes through, and unreachable), Lambda custom_parameters;
- AWS errors whose message quotes a bearer token or a session token (sandbox fault rules on STS AssumeRole,
  EKS CreateAccessEntry, IAM PutRolePolicy, sso-admin CreateAccountAssignment, Organizations), in jobs and
  in the expiry sweeper's scans (sso-admin ListInstances, SSM GetParametersByPath);
- Kubernetes API refusals whose Status message holds a service-account token (a JWT) or a bearer token, when
  a grant reads a role, creates a RoleBinding, replaces aws-auth, and when the sweeper lists bindings;
- the customer's Lambda function answering a status text, raising an errorMessage or an errorType that is a
  secret, failing or refusing create-credentials with one, a revoke and a sync failing with one, and a
  successful create-credentials whose secret must only come out sealed to the requester's key.
Then the agent's log, the control plane's log, every job record (results and errors, via Admin.GetJob),
/metrics and the SQLite database (the bytes of the file, its -wal and -shm; for secrets the job itself carried,
every row and column but the stored job request) are searched for every planted secret: 0 found. Each path is
shown to have run (fault hits, hook calls, Lambda invocations, the job's error naming the failed call), so the
test cannot pass by not exercising it.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from nacl.public import PrivateKey

from connector.sandbox import LambdaContext, Sandbox
from connector.sealing import open_sealed
from connector.v1 import admin_pb2
from tests.agent.agent_harness import wait_for
from tests.k8s.fake_apiserver import ApiError, FakeApiServer
from tests.security import world
from tests.security.shipped import Agent, ControlPlane
from tests.security.world import World

pytestmark = pytest.mark.timeout(300)

CONNECTOR_ID = "conn-secrets"
HOUR = 3600.0


def _planted(label: str) -> str:
    return "PLANTED" + hashlib.sha256(label.encode()).hexdigest()[:20]


def _jwt(label: str) -> str:
    """A service-account-token-shaped JWT (header.payload.signature), unique per label."""
    b64 = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    payload = {"sub": "system:serviceaccount:kube-system:admin", "jti": _planted(label)}
    return f"{b64({'alg': 'RS256', 'kid': 'x'})}.{b64(payload)}.{_planted(label + 'sig')}{'A' * 20}"


SECRET_ERROR_TYPE = "Pl4ntedErrorType" + hashlib.sha256(b"type").hexdigest()[:12]  # an exception class name


@dataclass
class Plant:
    """One planted secret: where it went in, and whether the job itself carried it (then the control plane
    stores it with the job, and only the rest of the database is searched)."""

    path: str
    value: str
    in_job: bool = False
    found: list[str] = field(default_factory=list)


PLANTS: dict[str, Plant] = {
    p.path: p
    for p in [
        Plant("connector token", "tok-" + _planted("token")),
        Plant("setting password", "pw-" + _planted("setting password"), in_job=True),
        Plant("setting api_token", "at-" + _planted("setting api_token"), in_job=True),
        Plant("setting client_secret", "cs-" + _planted("setting client_secret"), in_job=True),
        Plant("setting external_id", "ext-" + _planted("setting external_id"), in_job=True),
        Plant("url password (reachable cluster)", "urlpw-" + _planted("url reachable"), in_job=True),
        Plant("url password (unreachable cluster)", "urlpw-" + _planted("url unreachable"), in_job=True),
        Plant("lambda custom_parameters", "cp-" + _planted("custom"), in_job=True),
        Plant("aws sts AssumeRole session token", "IQoJb3JpZ2luX2Vj" + _planted("sts")),
        Plant("aws eks CreateAccessEntry bearer", "k8s-aws-v1." + _planted("eks")),
        Plant("aws iam PutRolePolicy security token", "FwoGZXIvYXdz" + _planted("iam")),
        Plant("aws ec2 DescribeInstances security token", "FwoGZXIvYXdz" + _planted("ec2")),
        Plant("aws sso-admin CreateAccountAssignment bearer", _jwt("sso")),
        Plant("aws organizations session token", "IQoJb3JpZ2luX2Vj" + _planted("org")),
        Plant("aws sweeper sso-admin ListInstances bearer", _planted("sweep sso")),
        Plant("aws sweeper ssm GetParametersByPath session token", "FwoGZXIvYXdz" + _planted("sweep ssm")),
        Plant("k8s read clusterrole bearer", _planted("k8s read")),
        Plant("k8s create rolebinding service-account JWT", _jwt("k8s rbac")),
        Plant("k8s replace aws-auth service-account JWT", _jwt("k8s aws-auth")),
        Plant("k8s sweeper list bindings JWT", _jwt("k8s sweep")),
        Plant("lambda status text", "st-" + _planted("status")),
        Plant("lambda errorMessage", "em-" + _planted("message")),
        Plant("lambda errorType", SECRET_ERROR_TYPE),
        Plant("lambda create-credentials failure", "cf-" + _planted("create fails")),
        Plant("lambda create-credentials refusal", "cr-" + _planted("create refused")),
        Plant("lambda revoke-access status", "rv-" + _planted("revoke")),
        Plant("lambda list-resources failure", "ls-" + _planted("sync")),
        Plant("lambda credentials (sealed)", "sealed-" + _planted("sealed")),
    ]
}


def secret(path: str) -> str:
    return PLANTS[path].value


# -- what each path needs ------------------------------------------------------------------------------------
AWS_FAULTS = {  # plant -> (service, operation, status, code, message)
    "aws sts AssumeRole session token": (
        "sts",
        "AssumeRole",
        403,
        "AccessDenied",
        "Request carried SessionToken={}: not authorized to perform sts:AssumeRole",
    ),
    "aws eks CreateAccessEntry bearer": (
        "eks",
        "CreateAccessEntry",
        400,
        "InvalidParameterException",
        "The request was signed with Authorization: Bearer {} and refused",
    ),
    "aws iam PutRolePolicy security token": (
        "iam",
        "PutRolePolicy",
        501,  # a 5xx botocore does not retry itself: the job fails (UNAVAILABLE) in moments, not in a minute
        "ServiceFailure",
        "Internal failure for request with x-amz-security-token: {}",
    ),
    "aws ec2 DescribeInstances security token": (
        "ec2",
        "DescribeInstances",
        400,
        "UnauthorizedOperation",
        "You are not authorized to perform this operation (x-amz-security-token: {})",
    ),
    "aws sso-admin CreateAccountAssignment bearer": (
        "sso-admin",
        "CreateAccountAssignment",
        400,
        "ValidationException",
        "Invalid principal in request authorized by Bearer {}",
    ),
    "aws organizations session token": (
        "organizations",
        None,
        400,
        "AccessDeniedException",
        "You don't have permissions to access this resource (aws_session_token={})",
    ),
}
SWEEPER_FAULTS = {
    "aws sweeper sso-admin ListInstances bearer": (
        "sso-admin",
        "ListInstances",
        400,
        "ValidationException",
        "Authorization: Bearer {} is not valid here",
    ),
    "aws sweeper ssm GetParametersByPath session token": (
        "ssm",
        "GetParametersByPath",
        400,
        "ValidationException",
        "x-amz-security-token={} rejected",
    ),
}


class Hooks:
    """Kubernetes API refusals carrying a secret, counted."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()

    def refuse(self, api: FakeApiServer, plant: str, method: str, resource: str, status: int, text: str) -> None:
        def hook(_: FakeApiServer) -> None:
            self.calls[plant] += 1
            reason = {401: "Unauthorized", 403: "Forbidden", 422: "Invalid"}.get(status, "BadRequest")
            raise ApiError(status, reason, text.format(secret(plant)))

        api.before(method, resource, hook)


class SecretClass(Exception):
    pass


SecretClass.__name__ = SecretClass.__qualname__ = SECRET_ERROR_TYPE  # the errorType the sandbox reports


def customer_function(sealed_username: str) -> Callable[[Any, LambdaContext], Any]:
    """The customer's function: what it does depends on the user it is asked about (one case per user)."""

    def handler(event: Any, context: LambdaContext) -> Any:
        kind, params = event["event_type"], event.get("params") or {}
        user = params.get("username", "")
        if kind == "list-resources":
            raise RuntimeError(f"cannot reach inventory db with token {secret('lambda list-resources failure')}")
        if kind == "grant-access" and user == "lam-status":
            return {"status": secret("lambda status text")}
        if kind == "grant-access" and user == "lam-message":
            raise RuntimeError(f"postgres://app:{secret('lambda errorMessage')}@db/app refused the connection")
        if kind == "grant-access" and user == "lam-type":
            raise SecretClass("boom")
        if kind == "create-credentials" and user == "lam-create-fails":
            raise RuntimeError(f"vault write failed for password={secret('lambda create-credentials failure')}")
        if kind == "create-credentials" and user == "lam-create-refused":
            return {"status": "denied", "password": secret("lambda create-credentials refusal")}
        if kind == "create-credentials" and user == sealed_username:
            return {"status": "ok", "username": user, "password": secret("lambda credentials (sealed)")}
        if kind == "revoke-access" and user == "lam-revoke":
            return {"status": secret("lambda revoke-access status")}
        return {"status": "ok"}

    return handler


@dataclass
class Case:
    name: str
    plant: str  # the planted secret this job carries or makes the world say ("" for none)
    enqueue: Callable[[], admin_pb2.JobRecord]
    expect: str  # SUCCEEDED or the error code ("|" between acceptable ones)
    mentions: str = ""  # what the error message names (proves the failing call was the planted one); "|" too


@dataclass
class Phase:
    name: str
    cases: list[Case]
    setup: Callable[[], None] = lambda: None


class Jobs:
    """Enqueues (lazily: a phase's setup comes first) the jobs of the cases, for the one connector."""

    def __init__(self, admin: Any) -> None:
        self.admin = admin
        self.n = 0

    def grant(
        self, integration: str, kind: str, settings: dict[str, Any], principal: str, target: dict[str, Any], **kw: Any
    ) -> Callable[[], admin_pb2.JobRecord]:
        self.n += 1
        grant_id = kw.pop("grant_id", f"secret-{integration}-{self.n}")
        return lambda: self.admin.enqueue_grant(
            CONNECTOR_ID,
            integration,
            kind,
            grant_id=grant_id,
            principal=principal,
            target=target,
            settings=settings,
            expires_in=HOUR,
            **kw,
        )

    def sync(self, integration: str, kind: str, settings: dict[str, Any]) -> Callable[[], admin_pb2.JobRecord]:
        return lambda: self.admin.enqueue_sync(CONNECTOR_ID, integration, kind, settings)

    def revoke(
        self,
        integration: str,
        kind: str,
        settings: dict[str, Any],
        principal: str,
        target: dict[str, Any],
        grant_id: str,
    ) -> Callable[[], admin_pb2.JobRecord]:
        return lambda: self.admin.enqueue_revoke(
            CONNECTOR_ID, integration, kind, grant_id=grant_id, principal=principal, target=target, settings=settings
        )


SETTINGS_PLANTS = ("setting password", "setting api_token", "setting client_secret")
RBAC_VIEW = {"scope": "namespace", "namespaces": ["team-a"], "role": "view"}
LAMBDA_TARGET = {"resources": ["lambda-r-1"], "permission": "reader"}


def settings_of(w: World) -> dict[str, dict[str, Any]]:
    k8s = w.k8s_settings(w.prod)
    return {
        "org": w.org_settings(),
        "k8s": k8s,
        "lambda": w.lambda_settings(),
        "reachable": k8s
        | {"host": w.prod.url.replace("://", f"://admin:{secret('url password (reachable cluster)')}@")},
        "unreachable": {
            "connection": "host",
            "host": f"http://admin:{secret('url password (unreachable cluster)')}@127.0.0.1:1",
        },
        "extra": {p.removeprefix("setting "): secret(p) for p in SETTINGS_PLANTS},
    }


def phases(w: World, sb: Sandbox, jobs: Jobs, hooks: Hooks, public_key: bytes, sealed_user: str) -> list[Phase]:
    s = settings_of(w)
    org, k8s, lam, extra = s["org"], s["k8s"], s["lambda"], s["extra"]
    prod, dev = w.prod_account, w.dev_account
    eks = {
        "resource_type": "eks_cluster",
        "account_id": prod,
        "region": world.REGION,
        "cluster": w.cluster(prod),
        "access_policies": ["AmazonEKSViewPolicy"],
        "scope": "namespace",
        "namespaces": ["team-a"],
    }
    iam = {"resource_type": "iam_resource_access", "account_id": dev, "role": world.ROLE}
    iam["resources"] = [f"arn:aws:sqs:{world.REGION}:{dev}:team-q"]
    ec2 = {"resource_type": "ec2_ssm_session", "account_id": dev, "region": world.REGION, "role": world.ROLE}
    ec2["instances"] = [w.instances[dev]]
    ic = {"resource_type": "identity_center_assignment", "account_id": dev, "permission_set": "ReadOnly"}
    ic["principal_type"] = "USER"
    role = f"arn:aws:iam::{prod}:role/secrets-mapped"
    creds = LAMBDA_TARGET | {"credentials": "create"}
    custom = lam | {"custom_parameters": {"api_token": secret("lambda custom_parameters"), "team": "a"}}
    aws_kinds = [p for p in AWS_FAULTS if p != "aws sts AssumeRole session token"]
    org_sync = org | {"resource_types": ["organization"]}

    def k8s_refusals() -> None:
        hooks.refuse(w.prod, "k8s read clusterrole bearer", "GET", "clusterroles", 401, "Unauthorized: Bearer {}")
        text = 'rolebindings is forbidden: User "system:serviceaccount:kube-system:admin" (token {}) cannot create'
        hooks.refuse(w.prod, "k8s create rolebinding service-account JWT", "POST", "rolebindings", 403, text)
        text = "ConfigMap is invalid: token {} was found in data"
        hooks.refuse(w.prod, "k8s replace aws-auth service-account JWT", "PUT", "configmaps", 422, text)

    def sweeper_refusals() -> None:
        for plant in SWEEPER_FAULTS:
            fault(sb, plant)
        hooks.refuse(w.prod, "k8s sweeper list bindings JWT", "GET", "clusterrolebindings", 403, "forbidden: {}")

    return [
        # STS first and alone: every AWS job assumes the management role (the session is cached after).
        Phase(
            "sts",
            [
                Case(
                    "sts",
                    "aws sts AssumeRole session token",
                    jobs.grant("org-sts", "aws_organization", org, f"arn:aws:iam::{prod}:role/secrets-sts", eks),
                    "ACCESS_DENIED",
                    "AssumeRole",
                )
            ],
            lambda: fault(sb, "aws sts AssumeRole session token"),
        ),
        # Each AWS kind failing on its own call, with a message that quotes a token.
        Phase(
            "aws",
            [
                Case(
                    "eks",
                    "aws eks CreateAccessEntry bearer",
                    jobs.grant("org", "aws_organization", org, f"arn:aws:iam::{prod}:role/secrets-eks", eks),
                    "INVALID_JOB",
                    "CreateAccessEntry",
                ),
                Case(
                    "iam",
                    "aws iam PutRolePolicy security token",
                    jobs.grant("org", "aws_organization", org, "secrets-requester", iam),
                    "UNAVAILABLE",
                    "PutRolePolicy",
                ),
                Case(
                    "ec2 through ssm",
                    "aws ec2 DescribeInstances security token",
                    jobs.grant("org", "aws_organization", org, "secrets-requester", ec2),
                    "ACCESS_DENIED",
                    "DescribeInstances",
                ),
                Case(
                    "identity center",
                    "aws sso-admin CreateAccountAssignment bearer",
                    jobs.grant("org", "aws_organization", org, w.user, ic),
                    "INVALID_JOB",
                    "CreateAccountAssignment",
                ),
                Case(
                    "organizations",
                    "aws organizations session token",
                    jobs.sync("org", "aws_organization", org_sync),
                    "ACCESS_DENIED",
                    "DescribeOrganization: AccessDeniedException",
                ),
            ],
            lambda: [fault(sb, p) for p in aws_kinds] and None,
        ),
        # Kubernetes refusals quoting tokens (the role read first: the binding's grant reads it too).
        Phase(
            "k8s read",
            [
                Case(
                    "rbac read role",
                    "k8s read clusterrole bearer",
                    jobs.grant("k8s", "kubernetes", k8s, "team-reader", RBAC_VIEW),
                    "ACCESS_DENIED",
                    "read clusterrole view",
                )
            ],
            k8s_refusals,
        ),
        Phase(
            "k8s write",
            [
                Case(
                    "rbac create binding",
                    "k8s create rolebinding service-account JWT",
                    jobs.grant("k8s", "kubernetes", k8s, "team-binder", RBAC_VIEW),
                    "ACCESS_DENIED",
                    "rolebindings",
                ),
                Case(
                    "aws-auth replace",
                    "k8s replace aws-auth service-account JWT",
                    jobs.grant("auth", "eks_aws_auth", k8s, role, {"groups": ["dev-team"]}),
                    "INVALID_JOB",
                    "replace configmap",
                ),
                # A password in the cluster URL: the grant goes through (or the setting is refused for it).
                Case(
                    "url password reachable",
                    "url password (reachable cluster)",
                    jobs.grant("k8s-url", "kubernetes", s["reachable"], "team-url", RBAC_VIEW, grant_id="secret-url"),
                    "SUCCEEDED|INVALID_SETTINGS",
                    "|setting 'host'",
                ),
                Case(
                    "url password unreachable",
                    "url password (unreachable cluster)",
                    jobs.grant("k8s-down", "kubernetes", s["unreachable"], "team-down", RBAC_VIEW),
                    "UNAVAILABLE|INVALID_SETTINGS",
                    "unreachable|setting 'host'",
                ),
            ],
        ),
        # The customer's function saying secrets every way it can.
        Phase(
            "lambda",
            [
                Case(
                    "lambda status",
                    "lambda status text",
                    jobs.grant("lam", "lambda_custom", lam, "lam-status", LAMBDA_TARGET),
                    "INTERNAL",
                    "status other than 'ok'",
                ),
                Case(
                    "lambda errorMessage",
                    "lambda errorMessage",
                    jobs.grant("lam", "lambda_custom", lam, "lam-message", LAMBDA_TARGET),
                    "INTERNAL",
                    "failed (Unhandled",
                ),
                Case(
                    "lambda errorType",
                    "lambda errorType",
                    jobs.grant("lam", "lambda_custom", lam, "lam-type", LAMBDA_TARGET),
                    "INTERNAL",
                    "of the function's own type",
                ),
                Case(
                    "lambda create fails",
                    "lambda create-credentials failure",
                    jobs.grant("lam", "lambda_custom", lam, "lam-create-fails", creds, requester_public_key=public_key),
                    "INTERNAL",
                    "create-credentials",
                ),
                Case(
                    "lambda create refused",
                    "lambda create-credentials refusal",
                    jobs.grant(
                        "lam", "lambda_custom", lam, "lam-create-refused", creds, requester_public_key=public_key
                    ),
                    "INTERNAL",
                    "create-credentials",
                ),
                Case(
                    "lambda revoke",
                    "lambda revoke-access status",
                    jobs.revoke("lam", "lambda_custom", lam, "lam-revoke", LAMBDA_TARGET, grant_id="secret-revoke"),
                    "INTERNAL",
                    "revoke-access",
                ),
                Case(
                    "lambda sync",
                    "lambda list-resources failure",
                    jobs.sync("lam", "lambda_custom", lam),
                    "INTERNAL",
                    "list-resources",
                ),
                Case(
                    "lambda custom parameters (dry run)",
                    "lambda custom_parameters",
                    jobs.grant("lam-custom", "lambda_custom", custom, "lam-dry", LAMBDA_TARGET, dry_run=True),
                    "SUCCEEDED",
                ),
                Case(
                    "lambda custom parameters",
                    "lambda custom_parameters",
                    jobs.grant("lam-custom", "lambda_custom", custom, "lam-custom", LAMBDA_TARGET),
                    "SUCCEEDED",
                ),
                Case(
                    "lambda sealed credentials",
                    "lambda credentials (sealed)",
                    jobs.grant(
                        "lam",
                        "lambda_custom",
                        lam,
                        sealed_user,
                        creds,
                        requester_public_key=public_key,
                        grant_id="secret-sealed",
                    ),
                    "SUCCEEDED",
                ),
            ],
        ),
        # Secret-looking settings of every integration type.
        Phase(
            "settings",
            [
                Case(
                    "org external_id",
                    "setting external_id",
                    jobs.sync("org-ext", "aws_organization", org | {"external_id": secret("setting external_id")}),
                    "ACCESS_DENIED",
                    "AssumeRole",
                ),
                Case(
                    "org settings",
                    "setting password",
                    jobs.grant("org-extra", "aws_organization", org | extra, f"arn:aws:iam::{prod}:role/x", eks),
                    "INVALID_SETTINGS",
                    "setting",
                ),
                Case(
                    "kubernetes settings",
                    "setting api_token",
                    jobs.grant(
                        "k8s-extra", "kubernetes", k8s | extra, "team-extra", RBAC_VIEW, grant_id="secret-extra"
                    ),
                    "SUCCEEDED",
                ),
                Case(
                    "aws-auth settings",
                    "setting client_secret",
                    jobs.grant("auth-extra", "eks_aws_auth", k8s | extra, role, {"groups": ["dev-team"]}, dry_run=True),
                    "SUCCEEDED",
                ),
                Case(
                    "lambda settings",
                    "setting password",
                    jobs.grant("lam-extra", "lambda_custom", lam | extra, "lam-extra", LAMBDA_TARGET | {"nope": 1}),
                    "INVALID_JOB",
                    "target.nope",
                ),
                Case(
                    "noop settings",
                    "setting api_token",
                    jobs.sync("noop-extra", "noop", extra | {"fail_with": "ACCESS_DENIED"}),
                    "ACCESS_DENIED",
                    "noop",
                ),
            ],
        ),
        # The expiry sweeper meeting the same while it scans. New integration ids (not backed off after the
        # failures above): their jobs offer the settings and fail before reaching the faulted calls.
        Phase(
            "sweeper",
            [
                Case("sweeper org", "", jobs.sync("org-sweep", "aws_organization", org_sync), "SUCCEEDED"),
                Case(
                    "sweeper lambda",
                    "",
                    jobs.grant("lam-sweep", "lambda_custom", lam, "lam-sweep", LAMBDA_TARGET | {"nope": 1}),
                    "INVALID_JOB",
                    "target.nope",
                ),
                Case(
                    "sweeper k8s",
                    "",
                    jobs.grant("k8s-sweep", "kubernetes", k8s, "team-sweep", {"nope": 1}),
                    "INVALID_JOB",
                    "target.nope",
                ),
            ],
            sweeper_refusals,
        ),
    ]


@pytest.fixture
def shipped(sandbox: Sandbox, hostile_world: World, tmp_path: Path) -> Iterator[tuple[ControlPlane, Agent]]:
    token = secret("connector token")
    cp = ControlPlane(tmp_path, {CONNECTOR_ID: token}, max_attempts=2)
    agent = None
    sandbox.faults.clear()
    sandbox.faults.reset_counts()
    try:
        agent = Agent(sandbox, cp, tmp_path, CONNECTOR_ID, token, CONNECTOR_LOG_LEVEL="debug")
        yield cp, agent
    finally:
        sandbox.faults.clear()
        sandbox.lambdas.register(world.FUNCTION, hostile_world.function)
        if agent is not None:
            agent.stop()
        cp.stop()


def test_no_planted_secret_comes_out_of_any_error_path(
    sandbox: Sandbox, hostile_world: World, shipped: tuple[ControlPlane, Agent]
) -> None:
    (cp, agent), w, sb = shipped, hostile_world, sandbox
    hooks, key, jobs = Hooks(), PrivateKey.generate(), Jobs(cp.admin)
    sealed_user = f"lam-sealed-{int(time.time())}"
    sb.lambdas.register(world.FUNCTION, customer_function(sealed_user))
    records: dict[str, admin_pb2.JobRecord] = {}
    problems: list[str] = []
    timings: dict[str, float] = {}
    sweeps_before = 0.0
    plan = phases(w, sb, jobs, hooks, bytes(key.public_key), sealed_user)
    for phase in plan:
        started = time.monotonic()
        if phase.name == "sweeper":
            sweeps_before = agent.sweeps()
        phase.setup()
        enqueued = [(c, c.enqueue()) for c in phase.cases]
        for case, record in enqueued:
            done = records[case.name] = cp.admin.wait(record.job.id, timeout=120)
            got = "SUCCEEDED" if done.state == admin_pb2.JOB_STATE_SUCCEEDED else done.error.code
            if got not in case.expect.split("|") or not any(m in done.error.message for m in case.mentions.split("|")):
                problems.append(
                    f"{case.name}: expected {case.expect} ({case.mentions!r}), got {got}: {done.error.message}"
                )
        if phase.name != "sweeper":
            sb.faults.clear()  # the sweeper phase's faults stay until the sweeper met them (below)
        timings[phase.name] = round(time.monotonic() - started, 1)

    def sweeper_met_all() -> bool:
        hit = sb.faults.counts()["faulted"]
        return bool(hooks.calls["k8s sweeper list bindings JWT"]) and all(
            hit.get(f"{service}:{operation}") for service, operation, *_ in SWEEPER_FAULTS.values()
        )

    wait_for(sweeper_met_all, 60, "the sweeper met every planted refusal")
    wait_for(lambda: agent.sweeps() >= sweeps_before + 3, 30, "more sweeps after them")
    hits = sb.faults.counts()["faulted"]
    sb.faults.clear()

    # Each path ran: its job ended as expected and the fault fired, the hook refused, the function was asked.
    invoked = collections.Counter(
        (i.event_type, (i.event.get("params") or {}).get("username")) for i in sb.lambdas.invocations(world.FUNCTION)
    )
    evidence: dict[str, float] = {
        "connector token": len(agent.events("registered")),
        **{p: hits.get(f"{svc}:{op}", 0) for p, (svc, op, *_) in SWEEPER_FAULTS.items()},
        **{p: n for p, n in hooks.calls.items()},
        "lambda status text": invoked[("grant-access", "lam-status")],
        "lambda errorMessage": invoked[("grant-access", "lam-message")],
        "lambda errorType": invoked[("grant-access", "lam-type")],
        "lambda create-credentials failure": invoked[("create-credentials", "lam-create-fails")],
        "lambda create-credentials refusal": invoked[("create-credentials", "lam-create-refused")],
        "lambda revoke-access status": invoked[("revoke-access", "lam-revoke")],
        "lambda list-resources failure": invoked[("list-resources", None)],
        "lambda credentials (sealed)": invoked[("create-credentials", sealed_user)],
        "lambda custom_parameters": sum(
            secret("lambda custom_parameters") in json.dumps(i.event) for i in sb.lambdas.invocations(world.FUNCTION)
        ),
    }
    failed = {line.split(":", 1)[0] for line in problems}
    cases = [c for phase in plan for c in phase.cases]
    for plant in PLANTS:  # what only rides in a job (settings, URLs) ran when its jobs ended as expected
        carriers = [c for c in cases if c.plant == plant or (plant in SETTINGS_PLANTS and c.name.endswith(" settings"))]
        if plant not in evidence and carriers:
            evidence[plant] = all(c.name in records and c.name not in failed for c in carriers)
    for plant, (service, operation, *_) in AWS_FAULTS.items():  # and the fault fired
        fired = sum(
            n for op, n in hits.items() if op == f"{service}:{operation}" or (not operation and op.startswith(service))
        )
        evidence[plant] = fired if evidence.get(plant, True) else 0
    not_run = sorted(p for p in PLANTS if not evidence.get(p))

    # The sealed credential opens with the requester's key (and only there: it is searched for below).
    sealed = json_format.MessageToDict(records["lambda sealed credentials"].result).get("credentials") or {}
    opened = open_sealed(bytes(key), sealed) if sealed else {}

    # Clean up what succeeded, so the next test starts from the same world.
    settings = settings_of(w)
    cleanup = [
        jobs.revoke("k8s-url", "kubernetes", settings["reachable"], "team-url", {}, grant_id="secret-url"),
        jobs.revoke("k8s-extra", "kubernetes", settings["k8s"], "team-extra", {}, grant_id="secret-extra"),
        jobs.revoke("lam", "lambda_custom", settings["lambda"], sealed_user, LAMBDA_TARGET, grant_id="secret-sealed"),
    ]
    revokes = [cp.admin.wait(enqueue().job.id, timeout=60) for enqueue in cleanup]

    # Search everything for every planted secret.
    metrics = agent.metrics()
    final = [cp.admin.get(r.job.id) for r in [*records.values(), *revokes]]
    agent.terminate()
    raw_db = cp.sqlite_bytes()
    cp.stop()
    raw_db += cp.sqlite_bytes()  # and after the control plane's last checkpoint
    places = {
        "agent log": agent.log_text(),
        "control plane log": cp.log.read_text(errors="replace"),
        "job records": "\n".join(
            json.dumps({"error": json_format.MessageToDict(r.error), "result": json_format.MessageToDict(r.result)})
            for r in final
        ),
        "/metrics": metrics,
        "sqlite rows": _rows_but_the_job(cp.db),
    }
    for p in PLANTS.values():
        p.found = [where for where, text in places.items() if p.value in text]
        if not p.in_job and p.value.encode() in raw_db:
            p.found.append("sqlite file bytes")
    leaked = {p.path: p.found for p in PLANTS.values() if p.found}
    print(
        f"\nHOSTILE secrets: planted={len(PLANTS)} paths_run={len(PLANTS) - len(not_run)} found={len(leaked)} "
        f"jobs={len(records)} aws_fault_hits={sum(hits.values())} "
        f"k8s_refusals={sum(hooks.calls.values())} lambda_invocations={sum(invoked.values())} seconds={timings}"
    )
    for path, where in sorted(leaked.items()):
        print(f"  LEAKED {path}: {where}")
    assert not problems, "\n".join(problems)
    assert not not_run, f"paths that did not run: {not_run}"
    assert opened.get("password") == secret("lambda credentials (sealed)"), "the credential was not sealed to the key"
    assert not leaked, json.dumps(leaked, indent=1)


def fault(sb: Sandbox, plant: str) -> None:
    service, operation, status, code, message = {**AWS_FAULTS, **SWEEPER_FAULTS}[plant]
    rule: dict[str, Any] = {"kind": "error", "service": service, "status": status, "code": code}
    if operation is not None:
        rule["operation"] = operation
    sb.faults.add(**rule, message=message.format(secret(plant)))


def _rows_but_the_job(db: Path) -> str:
    """Every value of every table, but the job request the control plane stores to deliver (jobs.job)."""
    out = []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cursor = conn.execute(f"SELECT * FROM {table}")  # table names from sqlite_master
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                for column, value in zip(columns, row, strict=True):
                    if table == "jobs" and column == "job":
                        continue
                    out.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
    return "\n".join(out)
