"""Resources named by tag, resolved to ARNs when the grant is described (Resource Groups Tagging API).

The grant's Effect lists the resolved ARNs, so the guardrails judge those (never the tag), and the grant writes
exactly the ARNs that were judged. GetResources (paginator) per region in the target account, filtered by the
service's resource type and the tags (keys ANDed, a key's values ORed, as the API does). Bounded: it stops one
past the 100-resource guardrail, which then refuses the grant with its usual message. No match is a
non-retryable NOT_FOUND naming the tags: granting nothing would look like success.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.errors import ConnectorError, ErrorCode
from connector.integrations.iam_access.target import ARN, MAX_RESOURCES, SERVICES, IamTarget

# GetResources' ResourceTypeFilters for each service the IAM kind grants on.
RESOURCE_TYPE_FILTERS = {"s3": "s3", "sns": "sns:topic", "sqs": "sqs:queue", "dynamodb": "dynamodb:table"}
PAGE = 100  # ResourcesPerPage: 1-100


def describe_tags(target: IamTarget) -> str:
    return " ".join(f"{k}={'|'.join(v)}" for k, v in sorted(target.resource_tags.items()))


def resolve(tagging_in: Callable[[str], Any], target: IamTarget, regions: tuple[str, ...]) -> tuple[str, ...]:
    """The ARNs of `target.service` resources carrying `target.resource_tags` in `regions`, de-duplicated
    (S3 buckets are listed from every region), at most MAX_RESOURCES + 1."""
    assert target.service in SERVICES
    filters = [{"Key": k, "Values": list(v)} for k, v in sorted(target.resource_tags.items())]
    found: dict[str, None] = {}
    for region in target.regions or regions:
        pages = (
            tagging_in(region)
            .get_paginator("get_resources")
            .paginate(
                TagFilters=filters,
                ResourceTypeFilters=[RESOURCE_TYPE_FILTERS[target.service]],
                ResourcesPerPage=PAGE,
            )
        )
        for page in pages:
            for mapping in page.get("ResourceTagMappingList", []):
                arn = str(mapping.get("ResourceARN", ""))
                m = ARN.match(arn)
                # Only the account's own resources of the service (and for S3 the buckets, not objects).
                if m is None or m.group(2) != target.service or (m.group(4) or target.account_id) != target.account_id:
                    continue
                found[arn] = None
                if len(found) > MAX_RESOURCES:
                    return tuple(found)
    if not found:
        raise ConnectorError(
            ErrorCode.NOT_FOUND,
            f"target.resource_tags {describe_tags(target)} match no {target.service} resource in account "
            f"{target.account_id} ({', '.join(target.regions or regions)}): check the tags, the service and the regions",
            retryable=False,
        )
    return tuple(found)
