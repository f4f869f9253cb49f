"""The sandbox's Resource Explorer and CloudTrail event history, through botocore: the query syntax, the
1,000 cap, paging, and the modelled errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from connector.sandbox import Sandbox, SeedSpec
from connector.sandbox import resource_explorer as sandbox_re
from tests.sandbox_env import in_account, sandbox_as_aws

pytestmark = pytest.mark.timeout(120)
SPEC = SeedSpec(
    accounts=5,
    regions=("us-east-1", "eu-west-1"),
    cluster_accounts=1,
    account_without_member_role=None,
    identity_center=False,
    topics_per_region=3,
    queues_per_region=1,
    buckets_per_account=1,
    resource_explorer=True,
    resource_explorer_without_index=("eu-west-1",),
)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with sandbox_as_aws(SPEC) as sandbox:
        yield sandbox


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _search(client, query, **kwargs):
    pages = client.get_paginator("search").paginate(QueryString=query, **kwargs)
    return [r for page in pages for r in page["Resources"]]


def test_query_syntax(sb):
    re2 = sb.client("resource-explorer-2")
    workloads = [a.id for a in sb.seed_info.accounts if a.ou_path.startswith("Root/Workloads") and a.state == "ACTIVE"]
    topics = _search(re2, "resourcetype:sns:topic")
    # eu-west-1 has no index in member accounts: only us-east-1 topics are in the organisation view
    assert len(topics) == 3 * len(workloads) and {t["Region"] for t in topics} == {"us-east-1"}
    assert {t["Service"] for t in topics} == {"sns"}
    one = _search(re2, f"service:sns accountid:{workloads[0]}")
    assert {t["OwningAccountId"] for t in one} == {workloads[0]}
    both = _search(re2, f"service:sqs accountid:{workloads[0]},{workloads[1]}")
    assert {t["OwningAccountId"] for t in both} == set(workloads[:2])
    tagged = _search(re2, "tag:team=team-1 resourcetype:sns:topic")
    assert tagged and all({"Key": "team", "Value": "team-1"} in t["Properties"][0]["Data"] for t in tagged)
    assert not [t for t in _search(re2, "-tag:team=team-1 service:sns") if t in tagged]
    prefix = _search(re2, "resourcetype:sns:* id:events-0")
    assert prefix and all(t["Arn"].endswith(":events-0") for t in prefix)
    assert _search(re2, "region:eu-west-1 service:sns") == []
    with pytest.raises(ClientError) as bad:
        re2.search(QueryString="region:eu*west-1")
    assert _code(bad) == "ValidationException"


def test_cap_complete_flag_and_paging(sb, monkeypatch):
    re2 = sb.client("resource-explorer-2")
    first = re2.search(QueryString="service:sns", MaxResults=2)
    assert first["Count"]["Complete"] is True and len(first["Resources"]) == 2 and first["NextToken"]
    monkeypatch.setattr(sandbox_re, "RESULT_CAP", 4)
    capped = re2.search(QueryString="service:sns", MaxResults=10)
    assert capped["Count"] == {"TotalResources": 4, "Complete": False} and len(capped["Resources"]) == 4
    assert "NextToken" not in capped
    with pytest.raises(ClientError) as bad:
        re2.search(QueryString="service:sns", MaxResults=1001)
    assert _code(bad) == "ValidationException"


def test_indexes_views_and_errors(sb):
    info = sb.seed_info
    re2 = sb.client("resource-explorer-2")
    assert re2.get_index()["Type"] == "AGGREGATOR"
    view = re2.get_default_view()["ViewArn"]
    assert re2.get_view(ViewArn=view)["View"]["Scope"].endswith(f"organization/{info.organization_id}")
    types = {t["ResourceType"] for t in re2.list_supported_resource_types()["ResourceTypes"]}
    assert {"s3:bucket", "sns:topic", "sqs:queue"} <= types
    member = next(a.id for a in info.accounts if a.ou_path.startswith("Root/Workloads"))
    listed = re2.list_indexes_for_members(AccountIdList=[member])["Indexes"]
    assert [(i["AccountId"], i["Region"]) for i in listed] == [(member, "us-east-1")]
    member_re = in_account(sb, "resource-explorer-2", member, "eu-west-1")
    with pytest.raises(ClientError) as missing:
        member_re.get_index()
    assert _code(missing) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as denied:
        in_account(sb, "resource-explorer-2", member).list_indexes_for_members(AccountIdList=[member])
    assert _code(denied) == "AccessDeniedException"
    with pytest.raises(ClientError) as foreign:
        in_account(sb, "resource-explorer-2", member).get_view(ViewArn=view)
    assert _code(foreign) == "UnauthorizedException"


def test_tag_filters_need_a_view_with_tags(sb):
    explorer = sb.resource_explorer
    info = sb.seed_info
    arn = explorer.add_view(sandbox_re.View(info.management_account_id, "us-east-1", "no-tags", explorer.views[
        sb.client("resource-explorer-2").get_default_view()["ViewArn"]].scope, include_tags=False))  # fmt: skip
    re2 = sb.client("resource-explorer-2")
    with pytest.raises(ClientError) as bad:
        re2.search(QueryString="tag:team=team-1", ViewArn=arn)
    assert _code(bad) == "ValidationException"
    assert all(r["Properties"] == [] for r in _search(re2, "service:sqs", ViewArn=arn))


def test_cloudtrail_lookup_events(sb):
    sqs = sb.client("sqs")
    url = sqs.create_queue(QueueName="trail-q")["QueueUrl"]
    sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    sqs.send_message(QueueUrl=url, MessageBody="not in the history")
    ct = sb.client("cloudtrail")
    events = [
        e
        for page in ct.get_paginator("lookup_events").paginate(
            LookupAttributes=[{"AttributeKey": "EventSource", "AttributeValue": "sqs.amazonaws.com"}]
        )
        for e in page["Events"]
    ]
    names = [e["EventName"] for e in events]
    assert "GetQueueAttributes" in names and "CreateQueue" in names and "SendMessage" not in names
    assert names.index("GetQueueAttributes") < names.index("CreateQueue")  # newest first
    with pytest.raises(ClientError) as two:
        ct.lookup_events(
            LookupAttributes=[
                {"AttributeKey": "EventName", "AttributeValue": "CreateQueue"},
                {"AttributeKey": "EventSource", "AttributeValue": "sqs.amazonaws.com"},
            ]
        )
    assert _code(two) == "InvalidLookupAttributesException"
