"""Hypothesis strategies for malformed and hostile jobs and integration settings.

Secrets are planted where a careless integration or log line would leak them: the connector token, the
ExternalId, secret-looking extra settings and the password part of a URL. No test output may contain them.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from connector.errors import ErrorCode
from connector.v1 import admin_pb2, connector_pb2

CONNECTOR_ID = "conn-fuzz"
PLANTED_TOKEN = "tok-PLANTED-9b1c7e52d4a8f3061e2d"
PLANTED_SETTING = "sk-PLANTED-4f2a9c81e6b37d05aa91"
PLANTED_EXTERNAL_ID = "ext-PLANTED-71d3e9b0c5a24f86"
PLANTED_URL_PASSWORD = "pw-PLANTED-c08e17f5b9a3"
PLANTED = (PLANTED_TOKEN, PLANTED_SETTING, PLANTED_EXTERNAL_ID, PLANTED_URL_PASSWORD)

TYPES = ("aws_organization", "kubernetes", "noop")

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


MANAGEMENT_ROLE = "arn:aws:iam::{management}:role/{role}"  # replaced by the sandbox's real role ARN


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
        _maybe("sso_portal_url", values()),
        _maybe("enable_audit", values()),
        _maybe("unknown_setting", values()),
        SECRET_EXTRAS,
    )


def _k8s_settings() -> st.SearchStrategy[dict[str, Any]]:
    planted_url = st.just(f"https://admin:{PLANTED_URL_PASSWORD}@127.0.0.1:1")
    hosts = st.one_of(
        planted_url,
        planted_url,
        st.sampled_from(
            [
                f"https://admin:{PLANTED_URL_PASSWORD}@127.0.0.1:1",
                "https://127.0.0.1:1",
                "http://127.0.0.1:1",
                "http://10.0.0.1:443",  # plaintext off loopback: refused
                "ftp://127.0.0.1",
                "https://",
                "127.0.0.1:1",
                "https://%2F..%2F@127.0.0.1:1",
            ]
        ),
    )
    return merged(
        st.fixed_dictionaries(
            {
                "connection": st.one_of(
                    st.just("host"), st.sampled_from(["in_cluster", "eks", "host", "EKS", "../"]), values()
                )
            }
        ),
        _maybe("host", st.one_of(hosts, values())),
        _maybe("cluster_name", st.one_of(st.sampled_from(["prod", "../prod", "prod%2F..", "a" * 300]), values())),
        _maybe("region", st.one_of(st.sampled_from(["us-east-1", "us-east-1/../x", "moon-1"]), values())),
        _maybe("page_size", numbers()),
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


def _targets() -> st.SearchStrategy[dict[str, Any]]:
    eks = st.fixed_dictionaries(
        {"resource_type": st.just("eks_cluster")},
        optional={
            "cluster": st.one_of(st.sampled_from(["prod", "../prod", "prod%2Fx"]), values()),
            "account_id": st.one_of(st.sampled_from(["111111111111", "1111", "11111111111a", "../"]), values()),
            "region": st.one_of(st.just("us-east-1"), values()),
            "access_policies": st.one_of(st.lists(st.sampled_from(ARNS), max_size=3), values()),
            "scope": st.one_of(st.sampled_from(["cluster", "namespace"]), values()),
            "namespaces": st.one_of(st.lists(strings(), max_size=3), values()),
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
    k8s = st.fixed_dictionaries(
        {},
        optional={
            "scope": st.one_of(st.sampled_from(["namespace", "cluster"]), values()),
            "namespaces": st.one_of(
                st.lists(st.sampled_from((*PATH_TRICKS, "default", "kube-system")), max_size=4), values()
            ),
            "role_kind": st.one_of(st.sampled_from(["ClusterRole", "Role"]), values()),
            "role": st.one_of(st.sampled_from(["view", "cluster-admin", "a/b", "a%2Fb"]), values()),
            "subject_kind": st.one_of(st.sampled_from(["User", "Group", "ServiceAccount"]), values()),
        },
    )
    return st.one_of(
        eks, identity_center, iam, k8s, NOOP_PARAMS, st.dictionaries(st.text(max_size=8), values(), max_size=5)
    )


NOOP_PARAMS = _noop_params()
SETTINGS = {"aws_organization": _org_settings(), "kubernetes": _k8s_settings(), "noop": NOOP_PARAMS}
OTHER_SETTINGS = st.dictionaries(st.text(max_size=8), VALUES, max_size=4)
TARGETS = _targets()


IDS = st.one_of(st.uuids().map(str), STRINGS.filter(lambda s: s != ""))
TYPE_NAMES = st.one_of(st.sampled_from(TYPES), st.sampled_from(TYPES), st.sampled_from(CONFUSABLES + PATH_TRICKS))
KINDS = st.sampled_from(["sync", "grant", "grant", "revoke"])
PRINCIPALS = st.one_of(st.sampled_from(ARNS), IDS)
STRING_LISTS = st.lists(STRINGS, max_size=3)
EXPIRIES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**40), max_value=2**40),  # beyond year 1 and 9999 either way
    st.integers(min_value=1_700_000_000, max_value=1_900_000_000),
)
TIMEOUTS = st.sampled_from([None] * 4 + [60.0] * 12 + [-5.0, 0.0, 1e12, math.nan])


def _with_role(value: Any, role_arn: str) -> Any:
    return role_arn if value == MANAGEMENT_ROLE else value


@st.composite
def enqueue_requests(draw: st.DrawFn, management_role_arn: str) -> admin_pb2.EnqueueJobRequest:
    integration_type = draw(TYPE_NAMES)
    request = admin_pb2.EnqueueJobRequest(
        connector_id=CONNECTOR_ID,
        integration=connector_pb2.Integration(id=draw(IDS), type=integration_type),
    )
    settings = draw(SETTINGS.get(integration_type, OTHER_SETTINGS))
    if "management_account_role_arn" in settings:
        settings["management_account_role_arn"] = _with_role(
            settings["management_account_role_arn"], management_role_arn
        )
    request.integration.settings.update(settings)
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
            grant = request.grant
            expires = draw(EXPIRIES)
            if expires is not None:
                grant.expires_at.seconds = expires
                grant.expires_at.nanos = draw(st.sampled_from([0, 999_999_999]))
            grant.requester_public_key = draw(st.binary(max_size=40))
            grant.requester = draw(STRINGS)
    timeout = draw(TIMEOUTS)
    if timeout is not None:
        if math.isnan(timeout):
            request.timeout.seconds, request.timeout.nanos = 10, -5  # mixed signs: an invalid Duration
        else:
            request.timeout.FromNanoseconds(int(timeout * 1e9))
    return request
