from datetime import UTC, datetime

import pytest

from connector.errors import InvalidJob
from connector.integrations.eks_access import (
    TAG_VALUE_MAX,
    covers,
    decode_grant,
    encode_grant,
    grant_tag_key,
    parse_target,
    union_scope,
    validate_principal,
)

TARGET = {
    "resource_type": "eks_cluster",
    "account_id": "111122223333",
    "region": "eu-west-1",
    "cluster": "prod",
    "access_policies": ["AmazonEKSViewPolicy"],
    "scope": "namespace",
    "namespaces": ["b", "a"],
}


def test_target_normalises_policies_and_namespaces():
    t = parse_target(TARGET)
    assert t.access_policies == ("arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy",)
    assert t.namespaces == ("a", "b")
    assert t.grant_scope == ("a", "b")
    assert t.username == "apono:{{SessionName}}"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"scope": "namespace", "namespaces": []}, "namespace"),
        ({"scope": "cluster"}, "cluster"),
        ({"access_policies": ["arn:aws:iam::aws:policy/AdministratorAccess"]}, "access_policies"),
        ({"namespaces": ["Bad_NS"]}, "namespaces"),
        ({"account_id": "12"}, "account_id"),
        ({"cluster": "../etc"}, "cluster"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_targets_name_the_field(change, where):
    with pytest.raises(InvalidJob) as err:
        parse_target(TARGET | change)
    assert where in str(err.value)


def test_assumed_role_arn_refused_with_role_arn_hint():
    with pytest.raises(InvalidJob) as err:
        validate_principal("arn:aws:sts::111122223333:assumed-role/Dev/alice")
    assert "arn:aws:iam::111122223333:role/Dev" in str(err.value)
    with pytest.raises(InvalidJob):
        validate_principal("arn:aws:s3:::bucket")
    assert validate_principal("arn:aws:iam::111122223333:role/team/Dev")


def test_grant_record_round_trip_and_union():
    exp = datetime(2030, 1, 1, tzinfo=UTC)
    value = encode_grant(exp, ["AmazonEKSViewPolicy", "AmazonEKSEditPolicy"], ("a", "b"))
    rec = decode_grant(value)
    assert rec.expires_epoch == int(exp.timestamp())
    assert rec.scopes == {"AmazonEKSViewPolicy": ("a", "b"), "AmazonEKSEditPolicy": ("a", "b")}
    assert decode_grant(encode_grant(None, ["AmazonEKSViewPolicy"], None)).scopes == {"AmazonEKSViewPolicy": None}
    assert union_scope([("a",), ("c", "b")]) == ("a", "b", "c")
    assert union_scope([("a",), None]) is None
    assert union_scope([]) is False
    assert covers(None, ("x",)) and covers(("a", "b"), ("a",)) and not covers(("a",), None)


def test_tag_keys_are_valid_and_deterministic():
    assert grant_tag_key("g-1") == "access-connector/grant/g-1"
    long_key = grant_tag_key("x" * 300)
    assert long_key == grant_tag_key("x" * 300) and len(long_key) <= 128
    assert grant_tag_key("a b*c") != grant_tag_key("a-b-c")


def test_too_many_namespaces_refused_before_any_call():
    with pytest.raises(InvalidJob, match="too many namespaces"):
        encode_grant(None, ["AmazonEKSViewPolicy"], tuple(f"namespace-{i:03d}" for i in range(30)))
    assert TAG_VALUE_MAX == 256
