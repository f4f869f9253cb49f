from datetime import UTC, datetime

import pytest

from connector.errors import InvalidJob
from connector.integrations import ledger
from connector.integrations.eks_access.entries import covers, encode_grant, scopes_of, union_scope
from connector.integrations.eks_access.target import parse_target, validate_principal

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
    t = parse_target(TARGET | {"access_policies": ["AmazonEKSViewPolicy", "AmazonEKSViewPolicy"]})
    assert t.policy_names == ("AmazonEKSViewPolicy",)
    assert t.policy_arns == {"AmazonEKSViewPolicy": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"}
    assert t.namespaces == ("a", "b")
    assert t.grant_scope == ("a", "b")
    assert t.username == "apono:{{SessionName}}"
    # An ARN and a name of the same policy are one policy.
    both = parse_target(
        TARGET
        | {"access_policies": ["arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy", "AmazonEKSViewPolicy"]}
    )
    assert both.policy_names == ("AmazonEKSViewPolicy",)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"scope": "namespace", "namespaces": []}, "namespace"),
        ({"scope": "cluster"}, "cluster"),
        ({"access_policies": ["arn:aws:iam::aws:policy/AdministratorAccess"]}, "access_policies"),
        ({"namespaces": ["Bad_NS"]}, "namespaces"),
        ({"account_id": "12"}, "account_id"),
        ({"cluster": "../etc"}, "cluster"),
        ({"region": "mars-1"}, "region"),
        ({"kubernetes_groups": ["has space"]}, "kubernetes_groups"),
        ({"username": "has space"}, "username"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_targets_name_the_field(change, where):
    with pytest.raises(InvalidJob) as err:
        parse_target(TARGET | change)
    assert where in str(err.value)


def test_assumed_role_arn_refused_with_role_arn_hint():
    with pytest.raises(InvalidJob) as err:
        validate_principal("arn:aws:sts::111122223333:assumed-role/Dev/alice", "aws")
    assert "arn:aws:iam::111122223333:role/Dev" in str(err.value)
    with pytest.raises(InvalidJob):
        validate_principal("arn:aws:s3:::bucket", "aws")
    assert validate_principal("arn:aws:iam::111122223333:role/team/Dev", "aws")


def test_grant_record_round_trip_and_union():
    exp = datetime(2030, 1, 1, tzinfo=UTC)
    value = encode_grant(exp, ["AmazonEKSViewPolicy", "AmazonEKSEditPolicy"], ("a", "b"))
    rec = ledger.decode(value)
    assert rec.expires_epoch == int(exp.timestamp()) and not rec.problem
    assert scopes_of(rec) == {"AmazonEKSViewPolicy": ("a", "b"), "AmazonEKSEditPolicy": ("a", "b")}
    never = ledger.decode(encode_grant(None, ["AmazonEKSViewPolicy"], None))
    assert scopes_of(never) == {"AmazonEKSViewPolicy": None}
    assert never.expires_epoch is None and not never.expired(2**40)
    assert union_scope([("a",), ("c", "b")]) == ("a", "b", "c")
    assert union_scope([("a",), None]) is None
    assert union_scope([]) is False
    assert covers(None, ("x",)) and covers(("a", "b"), ("a",)) and not covers(("a",), None)


@pytest.mark.parametrize("value", ["AmazonEKSViewPolicy=cluster", "exp=-5 AmazonEKSViewPolicy=cluster", "garbage", ""])
def test_undecodable_grant_records_count_as_expired(value):
    record = ledger.decode(value)
    assert record.problem and record.expired(0)


def test_tag_keys_are_valid_and_deterministic():
    assert ledger.grant_key("g-1") == "access-connector/grant/g-1"
    long_key = ledger.grant_key("x" * 300)
    assert long_key == ledger.grant_key("x" * 300) and len(long_key) <= ledger.TAG_KEY_MAX
    assert ledger.grant_key("a b*c") != ledger.grant_key("a-b-c")
    assert ledger.grant_key(ledger.key_suffix(long_key)) == long_key


def test_too_many_namespaces_refused_before_any_call():
    with pytest.raises(InvalidJob, match=f"where {ledger.TAG_VALUE_MAX} fit"):
        encode_grant(None, ["AmazonEKSViewPolicy"], tuple(f"namespace-{i:03d}" for i in range(30)))
    assert ledger.TAG_VALUE_MAX == 256
