"""AssumeRole refused as AWS refuses it: missing role, untrusted principal, wrong ExternalId, durations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from connector.sandbox import Sandbox, SeedInfo, SeedSpec
from tests.sandbox.sandbox_helpers import connector_session, session_from

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox.start(seed=SeedSpec(identity_center=False)) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def info(sb: Sandbox) -> SeedInfo:
    return sb.seed_info


def _sts(sb: Sandbox) -> Any:
    return connector_session(sb).client("sts", endpoint_url=sb.endpoint)


def _management(sb: Sandbox, info: SeedInfo) -> Any:
    creds = _sts(sb).assume_role(
        RoleArn=info.management_role_arn, RoleSessionName="sync", ExternalId=info.external_id, DurationSeconds=3600
    )["Credentials"]
    return session_from(creds)


def _denied(exc: pytest.ExceptionInfo[ClientError], caller: str, role: str) -> None:
    error = exc.value.response["Error"]
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Code"] == "AccessDenied"
    assert error["Message"] == f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role}"


def test_connector_identity_is_the_task_role(sb: Sandbox, info: SeedInfo) -> None:
    me = _sts(sb).get_caller_identity()
    assert me["Account"] == info.connector_account_id
    assert me["Arn"] == f"arn:aws:sts::{info.connector_account_id}:assumed-role/ConnectorTaskRole/connector"


def test_chain_connector_management_member(sb: Sandbox, info: SeedInfo) -> None:
    management = _management(sb, info)
    who = management.client("sts", endpoint_url=sb.endpoint).get_caller_identity()
    assert who["Account"] == info.management_account_id
    member_account = info.clusters[0].account
    creds = management.client("sts", endpoint_url=sb.endpoint).assume_role(
        RoleArn=info.member_role_arn(member_account), RoleSessionName="sync"
    )["Credentials"]
    who = session_from(creds).client("sts", endpoint_url=sb.endpoint).get_caller_identity()
    assert who["Account"] == member_account
    assert who["Arn"] == f"arn:aws:sts::{member_account}:assumed-role/{info.member_role_name}/sync"


def test_wrong_or_missing_external_id(sb: Sandbox, info: SeedInfo) -> None:
    caller = f"arn:aws:sts::{info.connector_account_id}:assumed-role/ConnectorTaskRole/connector"
    for kwargs in ({"ExternalId": "someone-else"}, {}):
        with pytest.raises(ClientError) as exc:
            _sts(sb).assume_role(RoleArn=info.management_role_arn, RoleSessionName="sync", **kwargs)
        _denied(exc, caller, info.management_role_arn)


def test_member_role_missing(sb: Sandbox, info: SeedInfo) -> None:
    assert info.account_without_member_role is not None
    role = info.member_role_arn(info.account_without_member_role)
    with pytest.raises(ClientError) as exc:
        _management(sb, info).client("sts", endpoint_url=sb.endpoint).assume_role(RoleArn=role, RoleSessionName="sync")
    _denied(exc, f"arn:aws:sts::{info.management_account_id}:assumed-role/ConnectorManagementRole/sync", role)


def test_wrong_principal(sb: Sandbox, info: SeedInfo) -> None:
    # Member roles trust the management role only, not the connector role directly.
    role = info.member_role_arn(info.clusters[0].account)
    with pytest.raises(ClientError) as exc:
        _sts(sb).assume_role(RoleArn=role, RoleSessionName="sync")
    _denied(exc, f"arn:aws:sts::{info.connector_account_id}:assumed-role/ConnectorTaskRole/connector", role)
    # ... nor the organisation's admin (management root) for the management role.
    with pytest.raises(ClientError) as exc:
        sb.client("sts").assume_role(
            RoleArn=info.management_role_arn, RoleSessionName="x1", ExternalId=info.external_id
        )
    _denied(exc, f"arn:aws:iam::{info.management_account_id}:root", info.management_role_arn)


def test_durations(sb: Sandbox, info: SeedInfo) -> None:
    with pytest.raises(ClientError) as exc:  # role chaining caps at one hour
        _sts(sb).assume_role(
            RoleArn=info.management_role_arn, RoleSessionName="s1", ExternalId=info.external_id, DurationSeconds=3601
        )
    assert exc.value.response["Error"]["Code"] == "ValidationError"
    assert exc.value.response["Error"]["Message"] == (
        "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
    )
    # Not chained (admin keys), but above the role's MaxSessionDuration (3600 for member roles).
    account = info.clusters[0].account
    # The admin may assume OrganizationAccountAccessRole (it trusts the management root), but not that long:
    with pytest.raises(ClientError) as exc:
        sb.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
            RoleSessionName="s2",
            DurationSeconds=7200,
        )
    assert exc.value.response["Error"]["Code"] == "ValidationError"
    assert "MaxSessionDuration" in exc.value.response["Error"]["Message"]


def test_suspended_account_roles_cannot_be_assumed(sb: Sandbox, info: SeedInfo) -> None:
    suspended = next(a for a in info.accounts if a.state == "SUSPENDED")
    role = info.member_role_arn(suspended.id)
    with pytest.raises(ClientError) as exc:
        _management(sb, info).client("sts", endpoint_url=sb.endpoint).assume_role(RoleArn=role, RoleSessionName="sync")
    _denied(exc, f"arn:aws:sts::{info.management_account_id}:assumed-role/ConnectorManagementRole/sync", role)


def test_request_accounts_resolve_without_creating_backends(sb: Sandbox, info: SeedInfo) -> None:
    """The sandbox's access-key lookup (moto's, made O(1)): the right account for temporary and IAM user keys,
    no IAM backend created for partitions nobody used, and a deleted key no longer resolves."""
    from moto.iam.models import iam_backends

    from connector.sandbox.identity import account_of

    def partitions() -> set[str]:  # dict's own views: moto's mappings create a backend on lookup
        return {partition for backends in dict.values(iam_backends) for partition in dict.keys(backends)}

    assert account_of("AKIANOBODYHASTHISKEY") == "123456789012"  # moto's default account for unknown keys
    assert partitions() == {"aws"}  # moto's own lookup made one IAM backend per partition in every account

    member = info.clusters[0].account
    iam = sb.account_session(member).client("iam", endpoint_url=sb.endpoint)
    iam.create_user(UserName="key-owner")
    key = iam.create_access_key(UserName="key-owner")["AccessKey"]
    user_sts = session_from(
        {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"], "SessionToken": None}
    ).client("sts", endpoint_url=sb.endpoint)
    for _ in range(2):  # the second answer comes from the remembered owner, checked again
        assert user_sts.get_caller_identity()["Arn"] == f"arn:aws:iam::{member}:user/key-owner"
        assert account_of(key["AccessKeyId"]) == member
    iam.delete_access_key(UserName="key-owner", AccessKeyId=key["AccessKeyId"])
    assert account_of(key["AccessKeyId"]) == "123456789012"
