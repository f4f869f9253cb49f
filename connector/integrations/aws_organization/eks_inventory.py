"""EKS clusters and their existing access (access entries + associated policies) in one account/region."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from connector.aws.partitions import partition_of
from connector.integrations.base import InventoryItem


def cluster_items(eks: Any, account_id: str, region: str, check: Callable[[], None]) -> Iterator[InventoryItem]:
    for page in eks.get_paginator("list_clusters").paginate():
        for name in page.get("clusters", []):
            check()
            info = eks.describe_cluster(name=name)["cluster"]
            mode = info.get("accessConfig", {}).get("authenticationMode", "CONFIG_MAP")
            arn = info.get("arn", f"arn:{partition_of(region)}:eks:{region}:{account_id}:cluster/{name}")
            yield InventoryItem(
                type="eks.cluster",
                id=arn,
                name=name,
                account_id=account_id,
                region=region,
                attributes={
                    "version": info.get("version", ""),
                    "platform_version": info.get("platformVersion", ""),
                    "endpoint": info.get("endpoint", ""),
                    "status": info.get("status", ""),
                    "authentication_mode": mode,
                    # CONFIG_MAP clusters cannot use access entries: grants need the aws-auth path.
                    "access_entries_supported": mode in ("API", "API_AND_CONFIG_MAP"),
                    "tags": info.get("tags", {}),
                    "created": str(info.get("createdAt", "")),
                },
            )
            if mode in ("API", "API_AND_CONFIG_MAP"):
                yield from access_entry_items(eks, name, arn, account_id, region)


def access_entry_items(
    eks: Any, cluster: str, cluster_arn: str, account_id: str, region: str
) -> Iterator[InventoryItem]:
    for page in eks.get_paginator("list_access_entries").paginate(clusterName=cluster):
        for principal in page.get("accessEntries", []):
            entry = eks.describe_access_entry(clusterName=cluster, principalArn=principal)["accessEntry"]
            policies = []
            for ppage in eks.get_paginator("list_associated_access_policies").paginate(
                clusterName=cluster, principalArn=principal
            ):
                for assoc in ppage.get("associatedAccessPolicies", []):
                    scope = assoc.get("accessScope", {})
                    policies.append(
                        {
                            "policy": _policy_name(assoc["policyArn"]),
                            "policy_arn": assoc["policyArn"],
                            "scope": scope.get("type", ""),
                            "namespaces": list(scope.get("namespaces", [])),
                        }
                    )
            yield InventoryItem(
                type="eks.access_entry",
                id=entry.get("accessEntryArn", f"{cluster_arn}/{principal}"),
                name=principal,
                account_id=account_id,
                region=region,
                parent_id=cluster_arn,
                attributes={
                    "principal_arn": principal,
                    "username": entry.get("username", ""),
                    "kubernetes_groups": list(entry.get("kubernetesGroups", [])),
                    "type": entry.get("type", ""),
                    "policies": policies,
                    "tags": entry.get("tags", {}),
                },
            )


def _policy_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]
