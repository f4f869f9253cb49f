"""The Lambda custom integration: the customer's own function grants, revokes and lists resources.

Type id "lambda_custom". Settings: function_name (name or ARN), region, custom_parameters (passed through
to the function), resource_type (passed to list-resources), timeout_seconds (how long to wait for an
answer, default 300). The connector invokes only functions tagged `apono-connector-access: "true"`, so a
control plane cannot make it call an arbitrary function in the account.

Events (the seed's contract): {"event_type": ..., "params": {...}} with event types list-resources,
grant-access, revoke-access, create-credentials, reset-credentials; params username (the principal),
grant_id, resources, permission, custom_parameters. Target: {"resources": [ids], "permission": id,
"credentials": "create" | "reset" (optional)}.

Credentials the function returns are sealed to the requester's key before they leave the connector; the
raw answer of a credentials call is never logged, never put in an error message, never returned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from connector.aws.sessions import AwsSessions
from connector.errors import ConnectorError, ErrorCode, InvalidJob, InvalidSettings
from connector.integrations.base import GrantRequest, Integration, InventoryItem, JobContext, RevokeRequest, SyncRequest
from connector.logging import get_logger, redact_text
from connector.sealing import require_public_key, seal

log = get_logger("connector.integrations.lambda_custom")

ACCESS_TAG = "apono-connector-access"
MAX_RESOURCES = 100  # the seed's guardrail: at most 100 resources named one by one
MAX_CUSTOM_PARAMETERS_BYTES = 4096
MAX_TIMEOUT_SECONDS = 900  # Lambda's own maximum run time
CREDENTIAL_EVENTS = {"create": "create-credentials", "reset": "reset-credentials"}
RESOURCE_TYPES = ("lambda.resource", "lambda.permission")

_FUNCTION = re.compile(
    r"^(arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:)?[A-Za-z0-9_-]{1,64}(:(\$LATEST|[A-Za-z0-9_-]{1,128}))?$"
)
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


def _string_list(value: Any, what: str, *, required: bool) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidJob(f"{what} must be a list of non-empty strings")
    if required and not value:
        raise InvalidJob(f"{what} must name at least one resource")
    if len(value) > MAX_RESOURCES:
        raise InvalidJob(f"{what} names {len(value)} resources; at most {MAX_RESOURCES}")
    return list(dict.fromkeys(value))


class LambdaCustomIntegration(Integration):
    type_id = "lambda_custom"

    def __init__(self, integration_id: str, settings: Mapping[str, Any], services: Any) -> None:
        super().__init__(integration_id, settings, services)
        function = settings.get("function_name")
        if not isinstance(function, str) or not _FUNCTION.match(function):
            raise InvalidSettings("function_name", "must be a Lambda function name or ARN")
        region = settings.get("region")
        if not isinstance(region, str) or not _REGION.match(region):
            raise InvalidSettings("region", "must be an AWS region such as eu-west-1")
        custom = settings.get("custom_parameters", {})
        if not isinstance(custom, dict):
            raise InvalidSettings("custom_parameters", "must be an object of key-value pairs")
        if len(json.dumps(custom)) > MAX_CUSTOM_PARAMETERS_BYTES:
            raise InvalidSettings("custom_parameters", f"must be at most {MAX_CUSTOM_PARAMETERS_BYTES} bytes as JSON")
        resource_type = settings.get("resource_type", "")
        if not isinstance(resource_type, str):
            raise InvalidSettings("resource_type", "must be a string")
        timeout = settings.get("timeout_seconds", 300)
        if (
            not isinstance(timeout, (int, float))
            or isinstance(timeout, bool)
            or not 1 <= timeout <= MAX_TIMEOUT_SECONDS
        ):
            raise InvalidSettings("timeout_seconds", f"must be a number of seconds from 1 to {MAX_TIMEOUT_SECONDS}")
        self.function_name = function
        self.region = region
        self.custom_parameters: dict[str, Any] = custom
        self.resource_type = resource_type
        self.timeout_seconds = float(timeout)
        self._invoke_client: Any = None

    # -- AWS clients --
    def _metadata_client(self) -> Any:
        if self.services.aws is None:
            self.services.aws = AwsSessions(self.services.connector_id)
        aws: AwsSessions = self.services.aws
        return aws.client(aws.identity(), "lambda", self.region)

    def _invoker(self) -> Any:
        # Own client: a read timeout matching the function's run time, and no automatic retry (a retried
        # Invoke runs the customer's code twice; the job's own retry is the one place that decides).
        if self._invoke_client is None:
            config = Config(
                read_timeout=self.timeout_seconds + 5,
                connect_timeout=10,
                retries={"mode": "standard", "total_max_attempts": 1},
                user_agent_extra="access-connector",
            )
            self._invoke_client = boto3.Session().client("lambda", region_name=self.region, config=config)
        return self._invoke_client

    def _checked_function(self) -> str:
        """The function's ARN, after checking it carries the access tag."""
        answer = self._metadata_client().get_function(FunctionName=self.function_name)
        arn = str(answer["Configuration"]["FunctionArn"])
        tags = answer.get("Tags") or {}
        if str(tags.get(ACCESS_TAG, "")).lower() != "true":
            raise ConnectorError(
                ErrorCode.PRECONDITION_FAILED,
                f'Lambda function {arn} is not tagged {ACCESS_TAG}: "true"; the connector invokes only functions '
                f"carrying that tag. Add the tag to the function to allow it.",
                retryable=False,
            )
        return arn

    def _invoke(self, arn: str, event_type: str, params: dict[str, Any], *, sensitive: bool = False) -> dict[str, Any]:
        event = {"event_type": event_type, "params": params}
        try:
            answer = self._invoker().invoke(
                FunctionName=arn, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
            )
        except ReadTimeoutError:
            raise ConnectorError(
                ErrorCode.TIMEOUT,
                f"{event_type}: no answer from {arn} within {self.timeout_seconds:g} s (timeout_seconds); "
                "the function may still be running",
            ) from None
        raw = answer["Payload"].read()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        if answer.get("FunctionError"):
            raise self._function_error(arn, event_type, str(answer["FunctionError"]), payload, sensitive)
        if isinstance(payload, dict) and set(payload) >= {"errorMessage", "errorType"} and "status" not in payload:
            raise self._function_error(arn, event_type, "Unhandled", payload, sensitive)
        if not isinstance(payload, dict):
            what = "nothing readable" if payload is None else f"a JSON {type(payload).__name__}"
            raise ConnectorError(
                ErrorCode.INVALID_JOB,
                f"{event_type}: {arn} answered with {what}; the handler must return a JSON object "
                'such as {"status": "ok"}',
                retryable=False,
            )
        return payload

    @staticmethod
    def _function_error(arn: str, event_type: str, kind: str, payload: Any, sensitive: bool) -> ConnectorError:
        error_type = str(payload.get("errorType", "")) if isinstance(payload, dict) else ""
        message = str(payload.get("errorMessage", "")) if isinstance(payload, dict) else ""
        timed_out = "timed out" in message.lower() or error_type.endswith("Timedout")
        # A credentials call's error text may echo the secret it was making: name only the error type.
        detail = "" if sensitive else f": {redact_text(message)[:300]}"
        return ConnectorError(
            ErrorCode.TIMEOUT if timed_out else ErrorCode.INTERNAL,
            f"{event_type}: function {arn} failed ({kind} {error_type or 'error'}){detail}",
            retryable=timed_out,
        )

    @staticmethod
    def _require_ok(arn: str, event_type: str, payload: Mapping[str, Any]) -> None:
        status = payload.get("status")
        if status != "ok":
            shown = redact_text(str(status))[:80] if isinstance(status, str) else type(status).__name__
            raise ConnectorError(
                ErrorCode.INTERNAL,
                f"{event_type}: {arn} answered status {shown!r}, expected 'ok'",
                retryable=False,
            )

    def _params(self, principal: str, grant_id: str, target: Mapping[str, Any], *, permission: bool) -> dict[str, Any]:
        params: dict[str, Any] = {
            "username": principal,
            "grant_id": grant_id,
            "resources": _string_list(target.get("resources"), "target.resources", required=True),
            "custom_parameters": dict(self.custom_parameters),
        }
        if permission:
            value = target.get("permission")
            if not isinstance(value, str) or not value:
                raise InvalidJob("target.permission must name one of the permissions list-resources returned")
            params["permission"] = value
        return params

    # -- sync --
    def sync(self, request: SyncRequest, ctx: JobContext) -> dict[str, Any]:
        wanted = set(request.resource_types) or set(RESOURCE_TYPES)
        if wanted - set(RESOURCE_TYPES):
            raise InvalidJob(
                f"unknown resource types {sorted(wanted - set(RESOURCE_TYPES))}; use {list(RESOURCE_TYPES)}"
            )
        arn = self._checked_function()
        ctx.check_cancelled()
        params = {"resource_type": self.resource_type, "custom_parameters": dict(self.custom_parameters)}
        payload = self._invoke(arn, "list-resources", params)
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
                    ErrorCode.INVALID_JOB, f"list-resources: resources item {index} has no string id", retryable=False
                )
            metadata = resource.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise ConnectorError(
                    ErrorCode.INVALID_JOB,
                    f"list-resources: resources item {index} metadata must be an object",
                    retryable=False,
                )
            items.append(
                InventoryItem(
                    type="lambda.resource",
                    id=resource["id"],
                    name=str(resource.get("name") or resource["id"]),
                    region=self.region,
                    parent_id=arn,
                    attributes={"resource_type": str(resource.get("type") or ""), "metadata": metadata},
                )
            )
        for index, permission in enumerate(permissions, start=1):
            if not isinstance(permission, dict) or not isinstance(permission.get("id"), str) or not permission["id"]:
                raise ConnectorError(
                    ErrorCode.INVALID_JOB,
                    f"list-resources: permissions item {index} has no string id",
                    retryable=False,
                )
            items.append(
                InventoryItem(
                    type="lambda.permission",
                    id=permission["id"],
                    name=str(permission.get("name") or permission["id"]),
                    region=self.region,
                    parent_id=arn,
                )
            )
        counts = dict.fromkeys(sorted(wanted), 0)
        for item in items:
            if item.type in wanted:
                ctx.emit(item)
                counts[item.type] += 1
        return {"function": arn, "items": counts}

    # -- grant / revoke --
    def grant(self, request: GrantRequest, ctx: JobContext) -> dict[str, Any]:
        params = self._params(request.principal, request.grant_id, request.target, permission=True)
        credentials = request.target.get("credentials")
        if credentials is not None and credentials not in CREDENTIAL_EVENTS:
            raise InvalidJob("target.credentials must be 'create' or 'reset' (or absent)")
        if credentials is not None:
            require_public_key(request.requester_public_key)  # before anything is changed
        arn = self._checked_function()
        if request.dry_run:
            calls = [{"method": "Invoke", "function": arn, "event": {"event_type": "grant-access", "params": params}}]
            if credentials is not None:
                cred_params = {k: v for k, v in params.items() if k != "permission"}
                event = {"event_type": CREDENTIAL_EVENTS[credentials], "params": cred_params}
                calls.append({"method": "Invoke", "function": arn, "event": event})
            return {"grant_id": request.grant_id, "dry_run": True, "calls": calls}
        ctx.check_cancelled()
        self._require_ok(arn, "grant-access", self._invoke(arn, "grant-access", params))
        result: dict[str, Any] = {"grant_id": request.grant_id, "function": arn, "status": "ok"}
        if credentials is not None:
            try:
                result |= self._credentials(arn, CREDENTIAL_EVENTS[credentials], params, request, ctx)
            except Exception:
                # No credentials, no access: take back what grant-access just gave, then report the failure.
                self._undo_grant(arn, params, request.grant_id)
                raise
        log.info("lambda_grant_applied", grant_id=request.grant_id, function=arn, credentials=credentials or "none")
        return result

    def _credentials(
        self, arn: str, event_type: str, params: dict[str, Any], request: GrantRequest, ctx: JobContext
    ) -> dict[str, Any]:
        ctx.check_cancelled()
        cred_params = {k: v for k, v in params.items() if k != "permission"}
        answer = self._invoke(arn, event_type, cred_params, sensitive=True)
        self._require_ok(arn, event_type, answer)
        secret_fields = {k: v for k, v in answer.items() if k != "status"}
        # Sealed here, in the connector: only the requester's private key opens it.
        sealed = seal(request.requester_public_key, secret_fields) if secret_fields else None
        return {"credentials": sealed, "credentials_event": event_type}

    def _undo_grant(self, arn: str, params: dict[str, Any], grant_id: str) -> None:
        try:
            self._require_ok(arn, "revoke-access", self._invoke(arn, "revoke-access", params))
        except Exception as exc:  # the original failure is what the job reports
            log.warning("lambda_grant_rollback_failed", grant_id=grant_id, function=arn, error=str(exc))

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        params = self._params(request.principal, request.grant_id, request.target, permission=True)
        arn = self._checked_function()
        if request.dry_run:
            event = {"event_type": "revoke-access", "params": params}
            return {
                "grant_id": request.grant_id,
                "dry_run": True,
                "calls": [{"method": "Invoke", "function": arn, "event": event}],
            }
        ctx.check_cancelled()
        self._require_ok(arn, "revoke-access", self._invoke(arn, "revoke-access", params))
        log.info("lambda_grant_revoked", grant_id=request.grant_id, function=arn)
        return {"grant_id": request.grant_id, "function": arn, "status": "ok"}
