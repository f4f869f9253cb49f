"""S3 buckets, SNS topics and SQS queues of one account, through the service APIs (boto3 paginators).

Buckets: ListBuckets once per account (it is global; each bucket's region from BucketRegion, else
GetBucketLocation), then per bucket its default encryption (GetBucketEncryption: the algorithm and the KMS
key, which an IAM grant on the bucket also gets) and tags (GetBucketTagging). Only buckets in `regions` are
kept (None: all). Topics (ListTopics, ListTagsForResource) and queues (ListQueues, ListQueueTags) per region.
Resource Explorer (resource_explorer_sync.py) finds the same resources without per-region listing; it then
hands the buckets it found to `bucket_items` for their encryption.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from connector.aws.errors import error_code
from connector.aws.partitions import partition_of
from connector.integrations.base import InventoryItem

AWS_MANAGED_S3_KEY = "alias/aws/s3"
QUEUE_PAGE = 1000  # ListQueues paginates only when MaxResults is given (1-1000)


def _tag_list(tags: Iterable[dict[str, Any]]) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in tags}


def bucket_region(s3: Any, name: str, listed: str | None) -> str:
    if listed:
        return listed
    return str(s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1")


def bucket_encryption(s3: Any, name: str) -> dict[str, Any]:
    """{"algorithm", "kms_key" (when aws:kms with a customer key), "bucket_key"}; {} when none is set."""
    try:
        rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"].get("Rules", [])
    except ClientError as exc:
        if error_code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
            return {}
        raise
    for rule in rules:
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        out: dict[str, Any] = {"algorithm": str(default.get("SSEAlgorithm", ""))}
        key = str(default.get("KMSMasterKeyID") or "")
        if key and not key.endswith(AWS_MANAGED_S3_KEY):
            out["kms_key"] = key
        if "BucketKeyEnabled" in rule:
            out["bucket_key"] = bool(rule["BucketKeyEnabled"])
        return out
    return {}


def bucket_tags(s3: Any, name: str) -> dict[str, str]:
    try:
        return _tag_list(s3.get_bucket_tagging(Bucket=name).get("TagSet", []))
    except ClientError as exc:
        if error_code(exc) == "NoSuchTagSet":
            return {}
        raise


def bucket_item(
    account_id: str, region: str, name: str, encryption: dict[str, Any], tags: dict[str, str]
) -> InventoryItem:
    return InventoryItem(
        type="s3.bucket",
        id=f"arn:{partition_of(region)}:s3:::{name}",
        name=name,
        account_id=account_id,
        region=region,
        attributes={"encryption": encryption, "tags": tags},
    )


def s3_items(
    s3: Any, account_id: str, regions: tuple[str, ...] | None, check: Callable[[], None]
) -> Iterator[InventoryItem]:
    for page in s3.get_paginator("list_buckets").paginate():
        for bucket in page.get("Buckets", []):
            check()
            name = str(bucket["Name"])
            region = bucket_region(s3, name, bucket.get("BucketRegion"))
            if regions is not None and region not in regions:
                continue
            yield bucket_item(account_id, region, name, bucket_encryption(s3, name), bucket_tags(s3, name))


def bucket_items(
    s3: Any, account_id: str, found: Iterable[tuple[str, str, dict[str, str] | None]], check: Callable[[], None]
) -> Iterator[InventoryItem]:
    """Buckets already found elsewhere, as (name, region, tags or None when unknown): their encryption (and
    tags when unknown) read in the owning account."""
    for name, region, tags in found:
        check()
        yield bucket_item(
            account_id, region, name, bucket_encryption(s3, name), tags if tags is not None else bucket_tags(s3, name)
        )


def topic_item(account_id: str, region: str, arn: str, tags: dict[str, str]) -> InventoryItem:
    return InventoryItem(
        type="sns.topic",
        id=arn,
        name=arn.rsplit(":", 1)[-1],
        account_id=account_id,
        region=region,
        attributes={"tags": tags},
    )


def sns_items(sns: Any, account_id: str, region: str, check: Callable[[], None]) -> Iterator[InventoryItem]:
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page.get("Topics", []):
            check()
            arn = str(topic["TopicArn"])
            yield topic_item(account_id, region, arn, _tag_list(sns.list_tags_for_resource(ResourceArn=arn)["Tags"]))


def queue_arn(url: str, account_id: str, region: str) -> str:
    return f"arn:{partition_of(region)}:sqs:{region}:{account_id}:{url.rstrip('/').rsplit('/', 1)[-1]}"


def queue_item(account_id: str, region: str, arn: str, tags: dict[str, str]) -> InventoryItem:
    """A queue by its ARN (its URL follows from it: https://sqs.<region>.amazonaws.com/<account>/<name>)."""
    return InventoryItem(
        type="sqs.queue",
        id=arn,
        name=arn.rsplit(":", 1)[-1],
        account_id=account_id,
        region=region,
        attributes={"tags": tags},
    )


def sqs_items(sqs: Any, account_id: str, region: str, check: Callable[[], None]) -> Iterator[InventoryItem]:
    for page in sqs.get_paginator("list_queues").paginate(PaginationConfig={"PageSize": QUEUE_PAGE}):
        for url in page.get("QueueUrls", []):
            check()
            tags = {str(k): str(v) for k, v in sqs.list_queue_tags(QueueUrl=url).get("Tags", {}).items()}
            yield queue_item(account_id, region, queue_arn(url, account_id, region), tags)
