"""S3 / SNS / SQS discovery through the service APIs and through Resource Explorer, end to end against the
sandbox (real botocore over HTTP; Resource Explorer served by the sandbox from the same moto state)."""

from __future__ import annotations

import pytest

from connector.sandbox import resource_explorer as sandbox_re
from tests.discovery.conftest import SPEC, calls, run_sync, workloads
from tests.sandbox_env import in_account

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def extra(sandbox):
    """One bucket encrypted with a customer-managed KMS key, one in a region the integration does not cover."""
    account = workloads(sandbox)[0]
    kms = in_account(sandbox, "kms", account, "eu-west-1")
    key = kms.create_key(Description="bucket key")["KeyMetadata"]["Arn"]
    s3 = in_account(sandbox, "s3", account, "eu-west-1")
    s3.create_bucket(Bucket="enc-bucket-1", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_encryption(
        Bucket="enc-bucket-1",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]
        },
    )
    s3.put_bucket_tagging(Bucket="enc-bucket-1", Tagging={"TagSet": [{"Key": "team", "Value": "vault"}]})
    in_account(sandbox, "s3", account, "us-west-2").create_bucket(
        Bucket="far-away-bucket", CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    return {"account": account, "key": key}


def _expected(sb):
    n = len(workloads(sb))
    return {
        "s3.bucket": n * SPEC.buckets_per_account + 1,
        "sns.topic": n * SPEC.topics_per_region * len(SPEC.regions),
        "sqs.queue": n * SPEC.queues_per_region * len(SPEC.regions),
    }


def test_service_apis_find_buckets_topics_queues_with_encryption_and_tags(sandbox, extra):
    sandbox.faults.reset_counts()
    run = run_sync(sandbox, resource_explorer="off")
    assert run.outcome.outcome == "succeeded", run.outcome.error
    assert {t: len(run.of(t)) for t in _expected(sandbox)} == _expected(sandbox)
    assert not run.of("error")
    buckets = {i.name: i for i in run.of("s3.bucket")}
    assert "far-away-bucket" not in buckets  # us-west-2 is not among the integration's regions
    enc = buckets["enc-bucket-1"]
    assert enc.region == "eu-west-1" and enc.account_id == extra["account"]
    assert enc.attributes["encryption"]["kms_key"] == extra["key"]
    assert enc.attributes["tags"] == {"team": "vault"}
    seeded = next(i for i in buckets.values() if i.name.endswith("-1") and i.name.startswith("data-"))
    assert seeded.region == "eu-west-1" and seeded.attributes["tags"]["team"] == "team-1"
    topic = run.of("sns.topic")[0]
    assert topic.id.startswith("arn:aws:sns:") and set(topic.attributes["tags"]) == {"team", "environment"}
    queue = next(q for q in run.of("sqs.queue") if q.region == "eu-west-1")
    assert queue.id == f"arn:aws:sqs:eu-west-1:{queue.account_id}:jobs-0"
    counted = calls(sandbox)
    assert counted.get("sns:ListTopics", 0) >= len(workloads(sandbox)) * len(SPEC.regions)
    assert not any(op.startswith("resource-explorer-2:Search") for op in counted)
    assert "resource_explorer" in run.outcome.result and not run.outcome.result["resource_explorer"]["used"]


def test_resource_explorer_gives_the_same_inventory_with_fewer_calls(sandbox, extra):
    plain = run_sync(sandbox, resource_explorer="off")
    sandbox.faults.reset_counts()
    run = run_sync(sandbox)
    assert run.outcome.outcome == "succeeded", run.outcome.error
    summary = run.outcome.result["resource_explorer"]
    assert summary["used"] and set(summary["types"]) == {"s3_bucket", "sns_topic", "sqs_queue"}
    assert summary["splits"] == 0 and summary["fallback_scopes"] == 0
    by_key = lambda r: {(i.type, i.id): (i.account_id, i.region, dict(i.attributes)) for i in r.items}  # noqa: E731
    assert by_key(run) == by_key(plain)
    counted = calls(sandbox)
    # No per-account listing: only the buckets' encryption is read in the accounts that own buckets.
    assert not {"sns:ListTopics", "sqs:ListQueues", "sns:ListTagsForResource", "sqs:ListQueueTags"} & set(counted)
    assert counted["resource-explorer-2:Search"] == 3  # one per type: `region:a,b` ORs the regions


def test_incomplete_counts_split_by_account_then_fall_back(sandbox, extra, monkeypatch):
    # A cap of 3 instead of 1,000: every (type, region) query is incomplete, so it is split by account; one
    # account's SNS topics (2 per region, + 2 more here) are still past the cap and listed through SNS itself.
    account = workloads(sandbox)[1]
    sns = in_account(sandbox, "sns", account, "us-east-1")
    for name in ("extra-a", "extra-b"):
        sns.create_topic(Name=name)
    monkeypatch.setattr(sandbox_re, "RESULT_CAP", 3)
    try:
        plain = run_sync(sandbox, resource_explorer="off")
        sandbox.faults.reset_counts()
        run = run_sync(sandbox)
    finally:
        for name in ("extra-a", "extra-b"):
            sns.delete_topic(TopicArn=f"arn:aws:sns:us-east-1:{account}:{name}")
    assert run.outcome.outcome == "succeeded", run.outcome.error
    summary = run.outcome.result["resource_explorer"]
    assert summary["used"] and summary["splits"] > 0 and summary["incomplete"] > 0
    assert summary["fallback_scopes"] >= 1
    assert {(i.type, i.id) for i in run.items} == {(i.type, i.id) for i in plain.items}
    counted = calls(sandbox)
    assert counted.get("sns:ListTopics", 0) >= 1  # the fallback


def test_search_denied_falls_back_to_the_service_apis(sandbox, extra):
    plain = run_sync(sandbox, resource_explorer="off")
    rule = sandbox.faults.add(kind="scp_deny", service="resource-explorer-2", operation="Search")
    try:
        run = run_sync(sandbox)
    finally:
        sandbox.faults.remove(rule)
    assert run.outcome.outcome == "succeeded", run.outcome.error
    assert {(i.type, i.id) for i in run.items} == {(i.type, i.id) for i in plain.items}
    assert any("service control policy" in n for n in run.outcome.result["resource_explorer"]["notes"])


def test_not_set_up_uses_the_service_apis_and_says_why(sandbox, extra):
    explorer = sandbox.resource_explorer
    info = sandbox.seed_info
    saved = (dict(explorer.indexes), dict(explorer.views), dict(explorer.default_views))
    try:
        explorer.reset()
        explorer.setup_organization(
            info.management_account_id, "us-east-1", [a.id for a in info.accounts], list(SPEC.regions),
            aggregator_type="LOCAL",
        )  # fmt: skip
        run = run_sync(sandbox)
        summary = run.outcome.result["resource_explorer"]
        assert not summary["used"] and "Aggregator" in summary["problems"][0]
        assert len(run.of("sns.topic")) == _expected(sandbox)["sns.topic"]
        explorer.reset()
        explorer.setup_organization(
            info.management_account_id, "us-east-1", [a.id for a in info.accounts], list(SPEC.regions), org_view=False
        )
        summary = run_sync(sandbox).outcome.result["resource_explorer"]
        assert not summary["used"] and "organisation-wide view" in summary["problems"][0]
    finally:
        explorer.indexes.update(saved[0])
        explorer.views.update(saved[1])
        explorer.default_views.update(saved[2])


def test_opt_in_default_types_do_not_touch_storage(sandbox):
    sandbox.faults.reset_counts()
    run = run_sync(sandbox, resource_types=())
    assert run.outcome.outcome == "succeeded", run.outcome.error
    assert not run.of("s3.bucket") and "resource_explorer" not in run.outcome.result
    assert not any(op.split(":")[0] in ("s3", "sns", "sqs", "resource-explorer-2") for op in calls(sandbox))


def test_an_account_without_an_index_is_listed_through_its_services(sandbox, extra):
    explorer = sandbox.resource_explorer
    account = workloads(sandbox)[2]
    plain = run_sync(sandbox, resource_explorer="off")
    saved = explorer.indexes.pop((account, "eu-west-1"))  # an SCP denied Quick Setup's CloudFormation there
    try:
        sandbox.faults.reset_counts()
        run = run_sync(sandbox)
    finally:
        explorer.indexes[(account, "eu-west-1")] = saved
    assert run.outcome.outcome == "succeeded", run.outcome.error
    summary = run.outcome.result["resource_explorer"]
    assert summary["used"] and summary["unindexed_scopes"] == 3  # s3, sns, sqs in that one (account, region)
    assert {(i.type, i.id) for i in run.items} == {(i.type, i.id) for i in plain.items}
    by_target = sandbox.faults.counts()["by_target"]
    assert by_target.get(f"{account}/eu-west-1/sns") and not by_target.get(f"{account}/us-east-1/sns")


def test_delegated_administrator(sandbox, extra):
    explorer = sandbox.resource_explorer
    info = sandbox.seed_info
    admin_account = info.account("security-tooling").id
    plain = run_sync(sandbox, resource_explorer="off")
    saved = (dict(explorer.indexes), dict(explorer.views), dict(explorer.default_views))
    try:
        explorer.setup_organization(admin_account, "eu-west-1", [a.id for a in info.accounts], list(SPEC.regions))
        # Not registered as Resource Explorer's delegated administrator: it cannot list members' indexes, so
        # nothing can be trusted to be indexed and everything is listed through the services.
        run = run_sync(sandbox, resource_explorer_account_id=admin_account)
        summary = run.outcome.result["resource_explorer"]
        assert summary["account_id"] == admin_account and summary["region"] == "eu-west-1"
        assert any("ListIndexesForMembers" in n for n in summary["notes"])
        assert {(i.type, i.id) for i in run.items} == {(i.type, i.id) for i in plain.items}
        explorer.delegated_admins.add(admin_account)
        sandbox.faults.reset_counts()
        run = run_sync(sandbox, resource_explorer_account_id=admin_account)
        summary = run.outcome.result["resource_explorer"]
        assert summary["used"] and summary["unindexed_scopes"] == 0 and "notes" not in summary
        assert {(i.type, i.id) for i in run.items} == {(i.type, i.id) for i in plain.items}
        assert "sns:ListTopics" not in calls(sandbox)
    finally:
        explorer.reset()
        explorer.indexes.update(saved[0])
        explorer.views.update(saved[1])
        explorer.default_views.update(saved[2])
