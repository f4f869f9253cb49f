"""botocore's own endpoint settings work with our sessions (the identity's clients, every role's clients and the
STS clients that assume roles), and `resolved` names what decided each. Resolution only: no call is made."""

from __future__ import annotations

import os

import pytest

from connector.aws.endpoints import env_name, resolved
from connector.aws.partitions import sts_region
from connector.aws.sessions import AwsSessions

GOV_ROLE = "arn:aws-us-gov:iam::111122223333:role/ConnectorManagementRole"


@pytest.fixture
def aws_env(no_proxy_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    mp = no_proxy_env
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        mp.delenv(name)
    mp.setenv("AWS_CONFIG_FILE", os.devnull)
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    mp.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret-for-tests")
    mp.setenv("AWS_REGION", "us-east-1")
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return mp


def test_fips_for_identity_and_role_clients(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    aws = AwsSessions("c")
    role = aws.assume("arn:aws:iam::111122223333:role/ConnectorMemberRole")
    eks = resolved(aws.client(role, "eks", "us-east-1"))
    assert eks.url == "https://fips.eks.us-east-1.amazonaws.com", eks
    assert "AWS_USE_FIPS_ENDPOINT" in eks.source
    assert "fips" in resolved(aws.client(aws.identity(), "sts", "us-east-1")).url


@pytest.mark.parametrize(
    ("setting", "url"), [("regional", "https://sts.us-east-1.amazonaws.com"), ("legacy", "https://sts.amazonaws.com")]
)
def test_sts_regional_endpoints(aws_env: pytest.MonkeyPatch, setting: str, url: str) -> None:
    aws_env.setenv("AWS_STS_REGIONAL_ENDPOINTS", setting)
    sts = resolved(AwsSessions("c").client("identity", "sts", "us-east-1"))
    assert sts.url == url
    assert ("global STS" in sts.source) is (setting == "legacy")


def test_per_service_endpoint_for_role_clients(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_ENDPOINT_URL_SSO_ADMIN", "https://vpce-sso.example.internal")
    aws_env.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", "https://vpce-org.example.internal")
    aws = AwsSessions("c")
    role = aws.assume("arn:aws:iam::111122223333:role/ConnectorManagementRole")
    sso = resolved(aws.client(role, "sso-admin", "us-east-1"))
    assert (sso.url, sso.source) == ("https://vpce-sso.example.internal", "AWS_ENDPOINT_URL_SSO_ADMIN")
    org = resolved(aws.client(role, "organizations", "us-east-1"))
    assert (org.url, org.source) == ("https://vpce-org.example.internal", "AWS_ENDPOINT_URL_ORGANIZATIONS")
    assert env_name("SSO Admin") == "AWS_ENDPOINT_URL_SSO_ADMIN"


def test_roles_are_assumed_in_their_own_partition(aws_env: pytest.MonkeyPatch) -> None:
    """A GovCloud role from a connector whose region is commercial (or unset) is assumed at GovCloud's STS:
    the commercial one does not know it."""
    assert sts_region("us-east-1", GOV_ROLE) == "us-gov-west-1"
    assert sts_region(None, GOV_ROLE) == "us-gov-west-1"
    assert sts_region("us-gov-east-1", GOV_ROLE) == "us-gov-east-1"  # the connector's own region, when it can
    assert sts_region(None, "arn:aws-cn:iam::111122223333:role/r") == "cn-north-1"
    assert sts_region("eu-west-1", "arn:aws:iam::111122223333:role/r") == "eu-west-1"
    aws = AwsSessions("c")
    create = aws._sts_client_creator("identity", sts_region("us-east-1", GOV_ROLE))
    client = create("sts", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x", aws_session_token="y")
    assert client.meta.endpoint_url == "https://sts.us-gov-west-1.amazonaws.com"
