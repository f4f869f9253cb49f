"""Hypothesis strategies for malformed and hostile jobs and integration settings, shared by the hostile suite.

Every integration type's settings and every kind's target are drawn: well-formed values mixed with wrong
types, NaN and Infinity, nesting past what protobuf parses, path tricks, confusable names, decoy keys (a
`cluster` in a kubernetes_rbac target), and expiries that are missing, past, before 1970, in year 1 or after
9999, or carry nanos out of range. Secrets are planted where a careless integration or log line would leak
them: the connector token, the ExternalId, secret-looking extra settings, the password part of a URL and the
Lambda function's custom parameters. No test output may contain them.

`Places` says where the real things are (the management role, the fake Kubernetes API, the customer's Lambda
function), so part of the jobs get past the settings and reach each kind's target parsing and the real
system behind it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from connector.errors import ErrorCode
from connector.v1 import admin_pb2, connector_pb2

CONNECTOR_ID = "conn-fuzz"
PLANTED_TOKEN = "tok-PLANTED-9b1c7e52d4a8f3061e2d"
PLANTED_SETTING = "sk-PLANTED-4f2a9c81e6b37d05aa91"
PLANTED_EXTERNAL_ID = "ext-PLANTED-71d3e9b0c5a24f86"
PLANTED_URL_PASSWORD = "pw-PLANTED-c08e17f5b9a3"
PLANTED_CUSTOM = "cp-PLANTED-2d7e91f0b4c3a658"  # in a Lambda function's custom_parameters
PLANTED = (PLANTED_TOKEN, PLANTED_SETTING, PLANTED_EXTERNAL_ID, PLANTED_URL_PASSWORD, PLANTED_CUSTOM)

NOOP_FAILURE = "failure requested by the noop job"  # a noop job's fail_with: the failure it asked for
TYPES = ("aws_organization", "kubernetes", "eks_aws_auth", "lambda_custom", "noop")

PATH_TRICKS = (
    "../",
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2F",
    "a%2Fb",
    "..\\..\\windows",
    "/absolute/path",
    "name%00.txt",
    "name\x00null",
    "~root",
    "${HOME}",
    "$(id)",
    "`id`",
    "'; DROP TABLE jobs; --",
    '{"json": "in a string"}',
    "line\nbreak",
    "tab\there",
    "\r\ncrlf: injected",
)
CONFUSABLES = (
    "n\u043e\u043ep",  # Cyrillic o
    "aws_organizat\u0456on",  # Cyrillic i
    "\uff4e\uff4f\uff4f\uff50",  # fullwidth noop
    "noop\u200b",  # zero-width space
    "\u202enoop",  # right-to-left override
    "kubernete\u0455",  # Cyrillic dze
    "NOOP",
    "noop ",
    " noop",
    "arn:aws:iam::111111111111:role/\u0410dmin",  # Cyrillic A
    "\U0001f600",
    "\ufffd",
)
ARNS = (
    "arn:aws:iam::111111111111:role/ConnectorManagementRole",
    "arn:aws-cn:iam::111111111111:role/ConnectorManagementRole",  # other partition
    "arn:aws-us-gov:iam::111111111111:role/Admin",
    "arn:aws:sts::111111111111:assumed-role/Admin/session",  # session, not a role
    "arn:aws:iam::111111111111:user/alice",
    "arn:aws:s3:::bucket/../../other",  # wrong service
    "arn:aws:iam::1111:role/short-account",
    "arn:aws:iam::111111111111:role/../../root",
    "arn:aws:iam::111111111111:role/a%2Fb",
    "arn:aws:iam::111111111111:role/" + "x" * 300,
    "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
    "arn:aws:eks:us-east-1:111111111111:cluster/prod",
    "arn:aws:sso:::permissionSet/ssoins-1234/ps-5678",
    "arn:aws:sqs:us-east-1:111111111111:queue",
    "arn:aws:dynamodb:us-east-1:111111111111:table/*",
    "arn:aws:iam::*:role/*",
    "arn:",
    "arn:aws:iam:::role/",
)
HUGE = ("A" * 70_000, "\u00e9" * 20_000, "../" * 10_000, "%2F" * 15_000)


# Placeholders replaced by the real thing (Places) when the request is built.
MANAGEMENT_ROLE = "arn:aws:iam::{management}:role/{role}"
API_URL = "{fake kubernetes api}"
API_URL_WITH_PASSWORD = "{fake kubernetes api, with a password in the URL}"
FUNCTION = "{customer function}"


@dataclass(frozen=True)
class Places:
    management_role_arn: str
    api_url: str  # a Kubernetes API that answers (tests/k8s FakeApiServer)
    function_name: str  # the customer's Lambda function, tagged for the connector
    external_id: str = ""  # the management role's real ExternalId (deep jobs reach the member accounts)
    member_role_name: str = "ConnectorMemberRole"
    eks_target: dict[str, Any] = field(default_factory=dict)  # a well-formed grant on a real cluster

    def real(self, value: Any) -> Any:
        if value == MANAGEMENT_ROLE:
            return self.management_role_arn
        if value == API_URL:
            return self.api_url
        if value == API_URL_WITH_PASSWORD:  # reachable: the grant gets as far as naming the cluster
            return self.api_url.replace("://", f"://admin:{PLANTED_URL_PASSWORD}@", 1)
        if value == FUNCTION:
            return self.function_name
        return value


def _numbers() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf, -1, -0.0, 0, 1e308, -1e308, 2**53 + 1, 1e-320, 3600.5]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(2**62), max_value=2**62),
    )


def _strings() -> st.SearchStrategy[str]:
    return st.one_of(
        # No planted secret here: these land in fields whose bad values the error rightly quotes (a region,
        # a grant id); secrets are planted where secrets belong (see SECRET_EXTRAS, external_id, the URL).
        st.sampled_from(PATH_TRICKS + CONFUSABLES + ARNS + HUGE + ("", " ")),
        st.text(max_size=40),
        st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
    )


NUMBERS = _numbers()
STRINGS = _strings()
SCALARS = st.one_of(STRINGS, NUMBERS, st.booleans(), st.none())


def _deep() -> st.SearchStrategy[Any]:
    """Objects nested 2..40 levels (past what protobuf parsers accept)."""

    def build(depth: int, leaf: Any, as_list: bool) -> Any:
        value = leaf
        for _ in range(depth):
            value = [value] if as_list else {"n": value}
        return value

    depths = st.one_of(st.integers(min_value=2, max_value=16), st.integers(min_value=2, max_value=40))
    return st.builds(build, depths, SCALARS, st.booleans())


# Any JSON-able value, nested (deeply now and then), wrong types included. Strategies are built once:
# building them per draw costs more than the whole job's trip through gRPC.
NESTED = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=8,
)
VALUES = st.one_of(SCALARS, SCALARS, NESTED, NESTED, _deep())


def numbers() -> st.SearchStrategy[Any]:
    return NUMBERS


def strings() -> st.SearchStrategy[str]:
    return STRINGS


def values() -> st.SearchStrategy[Any]:
    return VALUES


def _maybe(key: str, value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), value.map(lambda v: {key: v}))


def merged(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    def merge(dicts: tuple[dict[str, Any], ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for d in dicts:
            out.update(d)
        return out

    return st.tuples(*parts).map(merge)


SECRET_EXTRAS = st.sampled_from(
    [
        {},
        {"password": PLANTED_SETTING},
        {"api_token": PLANTED_SETTING},
        {"client_secret": PLANTED_SETTING, "note": "secret-looking extra setting"},
        {"aws_secret_access_key": PLANTED_SETTING},
    ]
)


def _org_settings() -> st.SearchStrategy[dict[str, Any]]:
    # management_account_role_arn is always present and the ExternalId always wrong (planted), so nothing
    # here can run a whole organisation sync: at best the sandbox refuses the AssumeRole.
    return merged(
        st.fixed_dictionaries(
            {
                "management_account_role_arn": st.one_of(st.just(MANAGEMENT_ROLE), st.sampled_from(ARNS), values()),
                "external_id": st.one_of(st.just(PLANTED_EXTERNAL_ID), st.just(PLANTED_EXTERNAL_ID), values()),
            }
        ),
        _maybe("region", st.one_of(st.sampled_from(["us-east-1", "us-east-1\n", "US-EAST-1", "../"]), values())),
        _maybe("regions", values()),
        _maybe("session_duration_hours", numbers()),
        _maybe("member_role_name", st.one_of(st.sampled_from(PATH_TRICKS), values())),
        _maybe("organizational_unit_id", values()),
        _maybe("excluded_account_ids", values()),
        _maybe("resource_types", st.one_of(st.just(["organization"]), values())),
        _maybe("max_parallelism", numbers()),
        _maybe("sso_portal_url", st.one_of(st.sampled_from(["https://a@x/start", "https://x/start?r=y"]), values())),
        _maybe("ssm_session_documents", st.one_of(st.sampled_from(["shell,ssh", "telnet"]), values())),
        _maybe("enable_audit", values()),
        _maybe("unknown_setting", values()),
        SECRET_EXTRAS,
    )


def _k8s_settings(*, aws_auth: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    planted_url = st.just(f"https://admin:{PLANTED_URL_PASSWORD}@127.0.0.1:1")
    hosts = st.one_of(
        planted_url,
        st.just(API_URL),
        st.just(API_URL),
        st.just(API_URL_WITH_PASSWORD),
        st.just("http://127.0.0.1:1"),  # nothing listens: the job meets an unreachable API server
        st.sampled_from(
            [
                f"http://admin:{PLANTED_URL_PASSWORD}@127.0.0.1:1",
                "https://127.0.0.1:1",
                "http://127.0.0.1:1",
                "http://10.0.0.1:443",  # plaintext off loopback: refused
                "ftp://127.0.0.1",
                "https://",
                "127.0.0.1:1",
                "https://%2F..%2F@127.0.0.1:1",
                "http://[::1",
                "http://127.0.0.1:99999",
            ]
        ),
    )
    extra = (
        # allow_system_groups used to loosen the aws-auth policy: now refused whatever its value
        _maybe("allow_system_groups", st.one_of(st.booleans(), st.sampled_from(["true", 1, math.nan]), values()))
        if aws_auth
        else _maybe("allowed_roles", st.one_of(st.lists(st.sampled_from(["view", "cluster-admin", "*"])), values()))
    )
    return merged(
        st.fixed_dictionaries(
            {
                "connection": st.one_of(
                    st.just("host"), st.just("host"), st.sampled_from(["in_cluster", "eks", "EKS", "../"]), values()
                )
            }
        ),
        _maybe("host", st.one_of(hosts, hosts, values())),
        _maybe("cluster_name", st.one_of(st.sampled_from(["prod", "../prod", "prod%2F..", "a" * 300]), values())),
        _maybe("region", st.one_of(st.sampled_from(["us-east-1", "us-east-1/../x", "moon-1"]), values())),
        _maybe("page_size", numbers()),
        _maybe("allow_cluster_admin", st.one_of(st.just(True), values())),  # settings never loosen the policy
        extra,
        SECRET_EXTRAS,
    )


def _lambda_settings() -> st.SearchStrategy[dict[str, Any]]:
    names = st.sampled_from(
        [
            FUNCTION,
            FUNCTION,
            FUNCTION,
            "no-such-function",
            "arn:aws:lambda:us-east-1:111111111111:function:elsewhere",
            "arn:aws-cn:lambda:cn-north-1:111111111111:function:f",
            "f:$LATEST",
            "f:1:2",
            "../f",
            "a" * 65,
        ]
    )
    custom = st.one_of(
        st.just({"api_token": PLANTED_CUSTOM, "database_url": f"postgres://app:{PLANTED_CUSTOM}@db/app"}),
        st.dictionaries(st.text(max_size=8), values(), max_size=4),
        values(),
    )
    return merged(
        st.fixed_dictionaries({"function_name": st.one_of(names, names, values())}),
        _maybe(
            "region",
            st.one_of(st.just("us-east-1"), st.just("us-east-1"), st.sampled_from(["eu-west-9", "x"]), values()),
        ),
        _maybe("custom_parameters", custom),
        _maybe("resource_type", st.one_of(st.sampled_from(["app", "", "../"]), values())),
        _maybe("timeout_seconds", numbers()),
        _maybe("allow_cluster_admin", values()),
        SECRET_EXTRAS,
    )


def _noop_params() -> st.SearchStrategy[dict[str, Any]]:
    # Bounded: a well-formed sleep is at most 20 ms and a sync at most 3 items (the fuzz is about input).
    sleeps = st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf, -1, -1e-9, 601, 1e308, "0.01", None, True, [0.01]]),
        st.floats(min_value=0, max_value=0.02),
    )
    items = st.one_of(st.sampled_from([-1, math.nan, math.inf, 1e12, "2", None, [1]]), st.integers(0, 3))
    fail = st.one_of(st.sampled_from([*(c.value for c in ErrorCode), "NOPE", ""]), values())
    return merged(_maybe("sleep_seconds", sleeps), _maybe("items", items), _maybe("fail_with", fail), SECRET_EXTRAS)


DECOYS = st.sampled_from(["cluster", "context", "kubeconfig", "namespace", "host", "account_id", "allow_cluster_admin"])


def _with_decoy(target: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Now and then a key that looks like it steers where the grant lands (it must be refused, not obeyed)."""
    decoy = st.one_of(st.just({}), st.just({}), st.tuples(DECOYS, values()).map(lambda kv: {kv[0]: kv[1]}))
    return merged(target, decoy)


def _targets() -> st.SearchStrategy[dict[str, Any]]:
    eks = st.fixed_dictionaries(
        {"resource_type": st.just("eks_cluster")},
        optional={
            "cluster": st.one_of(st.sampled_from(["prod", "../prod", "prod%2Fx"]), values()),
            "account_id": st.one_of(st.sampled_from(["111111111111", "1111", "11111111111a", "../"]), values()),
            "region": st.one_of(st.just("us-east-1"), st.sampled_from(["cn-north-1", "us-gov-west-1"]), values()),
            "access_policies": st.one_of(st.lists(st.sampled_from(ARNS), max_size=3), values()),
            "scope": st.one_of(st.sampled_from(["cluster", "namespace"]), values()),
            "namespaces": st.one_of(st.lists(strings(), max_size=3), values()),
            "username": st.one_of(st.sampled_from(["system:admin", "eks:x", "alice", "a b"]), values()),
            "kubernetes_groups": st.one_of(st.lists(st.sampled_from(["system:masters", "dev", " "])), values()),
        },
    )
    identity_center = st.fixed_dictionaries(
        {"resource_type": st.just("identity_center_assignment")},
        optional={
            "account_id": values(),
            "permission_set": st.one_of(st.sampled_from(ARNS), values()),
            "principal_type": st.one_of(st.sampled_from(["USER", "GROUP", "ROLE"]), values()),
        },
    )
    iam = st.fixed_dictionaries(
        {"resource_type": st.just("iam_resource_access")},
        optional={
            "account_id": values(),
            "role": st.one_of(st.sampled_from(ARNS), values()),
            "resources": st.one_of(st.lists(st.sampled_from(ARNS), max_size=30), values()),
            "access_level": st.one_of(st.sampled_from(["read", "write", "admin"]), values()),
        },
    )
    ec2_ssm = st.fixed_dictionaries(
        {"resource_type": st.just("ec2_ssm_session")},
        optional={
            "account_id": st.one_of(st.sampled_from(["111111111111", "1111", "../"]), values()),
            "region": st.one_of(st.sampled_from(["us-east-1", "cn-north-1", "us-east-1\n"]), values()),
            "role": st.one_of(st.sampled_from(ARNS), values()),
            "instances": st.one_of(
                st.lists(st.sampled_from(["i-0123456789abcdef0", "i-1", "i-*", "../i-0123456789abcdef0"]), max_size=4),
                st.lists(st.just("i-0123456789abcdef0"), min_size=101, max_size=101),
                values(),
            ),
            "documents": st.one_of(
                st.lists(st.sampled_from(["shell", "ssh", "port_forwarding", "AWS-StartInteractiveCommand"])), values()
            ),
        },
    )
    rbac = st.fixed_dictionaries(
        {},
        optional={
            "resource_type": st.one_of(st.just("kubernetes_rbac"), values()),
            "scope": st.one_of(st.sampled_from(["namespace", "cluster"]), values()),
            "namespaces": st.one_of(
                st.lists(st.sampled_from((*PATH_TRICKS, "default", "kube-system", "team-a")), max_size=4), values()
            ),
            "role_kind": st.one_of(st.sampled_from(["ClusterRole", "Role"]), values()),
            "role": st.one_of(st.sampled_from(["view", "cluster-admin", "harmless-viewer", "a/b", "a%2Fb"]), values()),
            "subject_kind": st.one_of(st.sampled_from(["User", "Group", "ServiceAccount"]), values()),
        },
    )
    aws_auth = st.fixed_dictionaries(
        {},
        optional={
            "resource_type": st.one_of(st.just("aws_auth_mapping"), values()),
            "groups": st.one_of(
                st.lists(st.sampled_from(["system:masters", "system:nodes", "dev", "", " ", "a b", "x" * 300])),
                st.lists(strings(), max_size=25),
                values(),
            ),
        },
    )
    lambda_custom = st.fixed_dictionaries(
        {},
        optional={
            "resource_type": st.one_of(st.just("lambda_custom"), values()),
            "resources": st.one_of(st.lists(st.sampled_from(["r1", "", "../r", "x" * 300]), max_size=4), values()),
            "permission": st.one_of(st.sampled_from(["reader", "admin", ""]), values()),
            "credentials": st.one_of(st.sampled_from(["create", "reset", "steal"]), values()),
        },
    )
    kinds = (eks, identity_center, iam, ec2_ssm, rbac, aws_auth, lambda_custom, NOOP_PARAMS)
    return st.one_of(
        *(_with_decoy(k) for k in kinds),
        _near_valid(),
        _near_valid(),
        st.dictionaries(st.text(max_size=8), values(), max_size=5),
    )


# Targets the Kubernetes API of the suite and the customer's function accept (tests/security/world.py), as
# they are or with one field replaced or added: they get past the parsing, to the describe, the guardrails
# and the grant, where an Effect names the cluster and an audit line is written.
NEAR_VALID = (
    {"scope": "namespace", "namespaces": ["team-a"], "role": "view"},
    {"scope": "namespace", "namespaces": ["team-a"], "role": "harmless-viewer"},
    {"scope": "namespace", "namespaces": ["team-a"], "role": "harmless-aggregate"},
    {"scope": "cluster", "role": "cluster-admin"},
    {"scope": "namespace", "namespaces": ["team-a"], "role": "team-binder", "role_kind": "Role"},
    {"groups": ["dev-team"]},
    {"groups": ["system:masters"]},
    {"groups": ["ops-admins"]},
    {"resources": ["r1"], "permission": "reader"},
    {"resources": ["r1"], "permission": "reader", "credentials": "create"},
)


def _near_valid() -> st.SearchStrategy[dict[str, Any]]:
    base = st.sampled_from(NEAR_VALID)
    keys = st.one_of(DECOYS, st.sampled_from(sorted({k for t in NEAR_VALID for k in t})), st.text(max_size=10))
    changed = st.tuples(base, keys, values()).map(lambda t: {**t[0], t[1]: t[2]})
    return st.one_of(base, changed)


NOOP_PARAMS = _noop_params()
SETTINGS = {
    "aws_organization": _org_settings(),
    "kubernetes": _k8s_settings(),
    "eks_aws_auth": _k8s_settings(aws_auth=True),
    "lambda_custom": _lambda_settings(),
    "noop": NOOP_PARAMS,
}
OTHER_SETTINGS = st.dictionaries(st.text(max_size=8), VALUES, max_size=4)
TARGETS = _targets()


IDS = st.one_of(st.uuids().map(str), STRINGS.filter(lambda s: s != ""))
TYPE_NAMES = st.one_of(st.sampled_from(TYPES), st.sampled_from(TYPES), st.sampled_from(CONFUSABLES + PATH_TRICKS))
KINDS = st.sampled_from(["sync", "grant", "grant", "revoke"])
PRINCIPALS = st.one_of(st.sampled_from(ARNS), IDS)
STRING_LISTS = st.lists(STRINGS, max_size=3)
MIN_TIMESTAMP, MAX_TIMESTAMP = -62_135_596_800, 253_402_300_799  # year 1, the end of year 9999
# (seconds from now, or an absolute epoch when `absolute`), nanos
EXPIRIES = st.one_of(
    st.none(),
    st.tuples(st.just("in"), st.sampled_from([3600, 7200, 11 * 3600])),  # sane: the job reaches its target
    st.tuples(st.just("in"), st.sampled_from([3600, 7200])),
    st.tuples(st.just("in"), st.sampled_from([-60, -86400, 13 * 3600, 10 * 365 * 86400])),  # past, too long
    st.tuples(
        st.just("at"),
        st.one_of(
            st.sampled_from([-1, 0, MIN_TIMESTAMP, MIN_TIMESTAMP - 1, MAX_TIMESTAMP, MAX_TIMESTAMP + 1, -(2**63)]),
            st.integers(min_value=-(2**40), max_value=2**40),  # beyond year 1 and 9999 either way
            st.integers(min_value=1_700_000_000, max_value=1_900_000_000),
        ),
    ),
)
NANOS = st.sampled_from([0, 0, 0, 999_999_999, 1_000_000_000, -1, 2**31 - 1, -(2**31)])
TIMEOUTS = st.sampled_from([None] * 4 + [60.0] * 12 + [-5.0, 0.0, 1e12, math.nan])


def _real(value: Any, places: Places) -> Any:
    """The placeholders of a drawn settings object replaced by the real places (one level deep)."""
    if isinstance(value, dict):
        return {k: places.real(v) for k, v in value.items()}
    return places.real(value)


def _grant_fields(draw: st.DrawFn, grant: connector_pb2.GrantJob) -> None:
    expires = draw(EXPIRIES)
    if expires is not None:
        how, value = expires
        seconds = int(time.time()) + value if how == "in" else value
        grant.expires_at.seconds = max(-(2**63), min(seconds, 2**63 - 1))
        grant.expires_at.nanos = draw(NANOS)
    grant.requester_public_key = draw(st.one_of(st.binary(max_size=40), st.binary(min_size=32, max_size=32)))
    grant.requester = draw(STRINGS)


def _timeout(draw: st.DrawFn, request: admin_pb2.EnqueueJobRequest) -> None:
    timeout = draw(TIMEOUTS)
    if timeout is not None:
        if math.isnan(timeout):
            request.timeout.seconds, request.timeout.nanos = 10, -5  # mixed signs: an invalid Duration
        else:
            request.timeout.FromNanoseconds(int(timeout * 1e9))


@st.composite
def _anything(draw: st.DrawFn, places: Places) -> admin_pb2.EnqueueJobRequest:
    """Every field drawn on its own: mostly refused at the envelope, the settings or the target."""
    integration_type = draw(TYPE_NAMES)
    request = admin_pb2.EnqueueJobRequest(
        connector_id=CONNECTOR_ID,
        integration=connector_pb2.Integration(id=draw(IDS), type=integration_type),
    )
    request.integration.settings.update(_real(draw(SETTINGS.get(integration_type, OTHER_SETTINGS)), places))
    kind = draw(KINDS)
    if kind == "sync":
        request.sync.resource_types.extend(draw(STRING_LISTS))
        request.sync.account_ids.extend(draw(STRING_LISTS))
    else:
        body = request.grant if kind == "grant" else request.revoke
        body.grant_id = draw(IDS)
        body.principal = draw(PRINCIPALS)
        body.target.update(draw(TARGETS))
        body.dry_run = draw(st.booleans())
        if kind == "grant":
            _grant_fields(draw, request.grant)
    _timeout(draw, request)
    return request


DEEP_PRINCIPALS = st.sampled_from(
    ["team-fuzz", "arn:aws:iam::111111111111:role/fuzz-mapped", "system:masters", "eks:x", "alice", "dev-x"]
)


@st.composite
def _deep(draw: st.DrawFn, places: Places) -> admin_pb2.EnqueueJobRequest:
    """Well-formed settings that reach the real thing (secrets planted in them), a target that is right or
    has one field wrong, and an expiry that is mostly sane: these get to the describe, the guardrails, the
    grant, the audit line and the expiry sweeper."""
    integration_type = draw(st.sampled_from(TYPES))
    host = draw(st.sampled_from([API_URL, API_URL, API_URL_WITH_PASSWORD]))
    settings: dict[str, Any] = {
        "aws_organization": {
            "management_account_role_arn": MANAGEMENT_ROLE,
            "external_id": draw(st.sampled_from([places.external_id, PLANTED_EXTERNAL_ID])),
            "member_role_name": places.member_role_name,
            "regions": ["us-east-1"],
        },
        "kubernetes": {"connection": "host", "host": host},
        "eks_aws_auth": {"connection": "host", "host": host},
        "lambda_custom": {
            "function_name": FUNCTION,
            "region": "us-east-1",
            "custom_parameters": {"api_token": PLANTED_CUSTOM},
        },
        "noop": {},
    }[integration_type]
    settings = {k: places.real(v) for k, v in (settings | draw(SECRET_EXTRAS)).items()}
    if integration_type in ("kubernetes", "eks_aws_auth", "lambda_custom"):
        settings.pop("password", None)  # secret-looking extras stay, but not every key is a valid setting
    request = admin_pb2.EnqueueJobRequest(
        connector_id=CONNECTOR_ID,
        integration=connector_pb2.Integration(id=f"deep-{integration_type}", type=integration_type),
    )
    request.integration.settings.update(settings)
    kind = draw(st.sampled_from(["grant", "grant", "grant", "revoke", "sync"]))
    if kind == "sync":
        request.sync.SetInParent()
    else:
        body = request.grant if kind == "grant" else request.revoke
        body.grant_id = f"deep-{draw(st.integers(0, 10**6))}"
        body.principal = draw(DEEP_PRINCIPALS)
        target = draw(
            st.one_of(
                _near_valid(),
                st.just(places.eks_target),
                st.just(dict(places.eks_target) | {"scope": "cluster", "namespaces": []}),
            )
        )
        body.target.update(target)
        body.dry_run = draw(st.booleans())
        if kind == "grant":
            _grant_fields(draw, request.grant)
    return request


def enqueue_requests(places: Places) -> st.SearchStrategy[admin_pb2.EnqueueJobRequest]:
    return st.one_of(_anything(places), _anything(places), _deep(places))
