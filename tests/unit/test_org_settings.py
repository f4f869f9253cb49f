import pytest

from connector.aws.sessions import clamp_session_duration, session_name
from connector.errors import InvalidSettings
from connector.integrations.aws_organization.settings import parse_settings


def test_docs_style_comma_lists():
    s = parse_settings(
        {
            "management_account_role_arn": "arn:aws:iam::123456789012:role/ConnectorManagementRole",
            "excluded_ou_ids": "ou-aaa1-11111111, ou-bbb2-22222222",
            "excluded_account_ids": "111111111111,222222222222",
            "regions": "us-east-1,eu-west-1",
        }
    )
    assert s.excluded_ou_ids == ("ou-aaa1-11111111", "ou-bbb2-22222222")
    assert s.regions == ("us-east-1", "eu-west-1")


@pytest.mark.parametrize(
    ("raw", "setting"),
    [
        ({"management_account_role_arn": "arn:aws:iam::123:user/x"}, "management_account_role_arn"),
        ({"excluded_ou_ids": "ou-nope"}, "excluded_ou_ids"),
        ({"excluded_account_ids": ["12345"]}, "excluded_account_ids"),
        ({"regions": ["mars-1"]}, "regions"),
        ({"session_duration_hours": -1}, "session_duration_hours"),
        ({"resource_types": ["s3"]}, "resource_types"),
        ({"max_parallelism": 1000}, "max_parallelism"),
        ({"unexpected": True}, "unexpected"),
        ({"sso_portal_url": "http://insecure"}, "sso_portal_url"),
        ({"sso_portal_url": "https://user:pw@d-1234567890.awsapps.com/start"}, "sso_portal_url"),
        ({"sso_portal_url": "https://d-1234567890.awsapps.com/start?next=https://evil.example"}, "sso_portal_url"),
        ({"sso_portal_url": "https://d-1234567890.awsapps.com/start#/x"}, "sso_portal_url"),
        ({"sso_portal_url": "https:///start"}, "sso_portal_url"),
        ({"sso_portal_url": "https://d-1.awsapps.com/start\n"}, "sso_portal_url"),
        ({"ssm_session_documents": "shell, telnet"}, "ssm_session_documents"),
        ({"resource_types": ["ec2"]}, "resource_types"),
        ({"region": "xx-east-1"}, "region"),
        # One integration is one partition: its roles cannot act in another partition's regions.
        ({"management_account_role_arn": "arn:aws-us-gov:iam::123456789012:role/M"}, "region"),
        ({"region": "us-gov-west-1", "regions": ["us-gov-east-1", "us-east-1"]}, "regions"),
        ({"region": "cn-north-1", "sso_region": "us-east-1"}, "sso_region"),
    ],
)
def test_invalid_settings_name_the_setting(raw, setting):
    with pytest.raises(InvalidSettings) as err:
        parse_settings(raw)
    assert err.value.setting == setting
    assert setting in str(err.value)
    assert not err.value.retryable


def test_session_duration_clamped_for_role_chaining():
    assert clamp_session_duration(None) == (3600, None)
    seconds, note = clamp_session_duration(4)
    assert seconds == 3600 and note and "role chaining" in note
    assert clamp_session_duration(0.5) == (1800, None)
    assert clamp_session_duration(0.1)[0] == 900


def test_session_name_is_valid():
    name = session_name("conn/with spaces" + "x" * 100)
    assert 2 <= len(name) <= 64
    assert all(c.isalnum() or c in "+=,.@-_" for c in name)


def test_partition_follows_the_management_role_or_the_region():
    gov = parse_settings(
        {"management_account_role_arn": "arn:aws-us-gov:iam::123456789012:role/M", "region": "us-gov-west-1"}
    )
    assert gov.region == "us-gov-west-1"
    china = parse_settings({"region": "cn-north-1", "regions": ["cn-northwest-1"]})
    assert china.regions == ("cn-northwest-1",)
