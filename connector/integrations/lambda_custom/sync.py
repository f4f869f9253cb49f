"""The lambda_custom integration's Syncer: list-resources feeds the inventory."""

from __future__ import annotations

from typing import Any

from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations.base import InventoryItem, JobContext, SyncRequest
from connector.integrations.lambda_custom.integration import LambdaCustomIntegration

RESOURCE_TYPES = ("lambda.resource", "lambda.permission")


class LambdaSync:
    def __init__(self, integration: LambdaCustomIntegration) -> None:
        self.integration = integration

    def sync(self, request: SyncRequest, ctx: JobContext) -> dict[str, Any]:
        wanted = set(request.resource_types) or set(RESOURCE_TYPES)
        if wanted - set(RESOURCE_TYPES):
            raise InvalidJob(
                f"sync.resource_types {sorted(wanted - set(RESOURCE_TYPES))} unknown; use {list(RESOURCE_TYPES)}"
            )
        fn = self.integration
        arn = fn.checked_function().arn
        ctx.check_cancelled()
        params = {"resource_type": fn.resource_type, "custom_parameters": dict(fn.custom_parameters)}
        payload = fn.invoke(arn, "list-resources", params)
        resources = payload.get("resources")
        permissions = payload.get("permissions", [])
        if not isinstance(resources, list) or not isinstance(permissions, list):
            raise ConnectorError(
                ErrorCode.INVALID_JOB,
                f'list-resources: {arn} must answer {{"resources": [...], "permissions": [...]}}',
                retryable=False,
            )
        items: list[InventoryItem] = []
        for index, resource in enumerate(resources, start=1):
            if not isinstance(resource, dict) or not isinstance(resource.get("id"), str) or not resource["id"]:
                raise ConnectorError(
                    ErrorCode.INVALID_JOB,
                    f"list-resources: {arn} answered resources item {index} with no string id",
                    retryable=False,
                )
            metadata = resource.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise ConnectorError(
                    ErrorCode.INVALID_JOB,
                    f"list-resources: {arn} answered resources item {index} with metadata that is not an object",
                    retryable=False,
                )
            items.append(
                InventoryItem(
                    type="lambda.resource",
                    id=resource["id"],
                    name=str(resource.get("name") or resource["id"]),
                    region=fn.region,
                    parent_id=arn,
                    attributes={"resource_type": str(resource.get("type") or ""), "metadata": metadata},
                )
            )
        for index, permission in enumerate(permissions, start=1):
            if not isinstance(permission, dict) or not isinstance(permission.get("id"), str) or not permission["id"]:
                raise ConnectorError(
                    ErrorCode.INVALID_JOB,
                    f"list-resources: {arn} answered permissions item {index} with no string id",
                    retryable=False,
                )
            items.append(
                InventoryItem(
                    type="lambda.permission",
                    id=permission["id"],
                    name=str(permission.get("name") or permission["id"]),
                    region=fn.region,
                    parent_id=arn,
                )
            )
        counts = dict.fromkeys(sorted(wanted), 0)
        for item in items:
            if item.type in wanted:
                ctx.emit(item)
                counts[item.type] += 1
        return {"function": arn, "items": counts}
