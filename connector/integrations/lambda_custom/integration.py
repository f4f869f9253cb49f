"""The lambda_custom integration: the customer's own function, and how the connector talks to it.

Settings: function_name (name or ARN), region, custom_parameters (passed through to the function),
resource_type (passed to list-resources), timeout_seconds (how long to wait for an answer, default 300). The
connector invokes only functions tagged `apono-connector-access: "true"`, so a control plane cannot make it call
an arbitrary function in the account.

Events (the seed's contract): {"event_type": ..., "params": {...}} with event types list-resources,
grant-access, revoke-access, create-credentials, reset-credentials; params username (the principal),
grant_id, resources, permission, custom_parameters.

What the function answers is the customer's text and may hold a secret (a credential it made, a connection
string in an error, even an exception class named after one): none of it is ever repeated in an error
message, a log line or a result. Failures name the event, the function and the kind of failure (an error
type only when it is a well-known runtime or built-in one), and point at the function's own logs.

What a failure says about what the function did (provisioner.py relies on it for create-credentials):
FunctionFailed: it answered no and made nothing. FunctionAnswered: the invocation is over (it answered, or
Lambda stopped it) but what it made is unknown. Any other error (no answer in time, a transport failure, the
Lambda API refusing the call): it may still be running.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from connector.aws.partitions import PARTITION
from connector.aws.sessions import AwsSessions
from connector.errors import ConnectorError, ErrorCode, InvalidSettings
from connector.integrations.base import Services
from connector.integrations.capabilities import Integration

ACCESS_TAG = "apono-connector-access"
MAX_CUSTOM_PARAMETERS_BYTES = 4096
MAX_TIMEOUT_SECONDS = 900  # Lambda's own maximum run time
RESOURCE_TYPE = "lambda_custom"

_FUNCTION = re.compile(
    rf"^(arn:{PARTITION}:lambda:[a-z0-9-]+:\d{{12}}:function:)?[A-Za-z0-9_-]{{1,64}}(:(\$LATEST|[A-Za-z0-9_-]{{1,128}}))?$"
)
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# Error types that are the runtime's or the language's own, so naming one cannot repeat the customer's text.
# Any other errorType is the function's (a class it defined, a string it built) and is not repeated.
KNOWN_ERROR_TYPES = frozenset(
    {
        "Sandbox.Timedout",
        "Runtime.ExitError",
        "Runtime.HandlerNotFound",
        "Runtime.ImportModuleError",
        "Runtime.MarshalError",
        "Runtime.OutOfMemory",
        "Runtime.Unknown",
        "Runtime.UserCodeSyntaxError",
        "Function.ResponseSizeTooLarge",
        # JavaScript
        "Error",
        "EvalError",
        "RangeError",
        "ReferenceError",
        "SyntaxError",
        "TypeError",
        "URIError",
        # Python
        "Exception",
        "ArithmeticError",
        "AssertionError",
        "AttributeError",
        "ConnectionError",
        "FileNotFoundError",
        "ImportError",
        "IndexError",
        "JSONDecodeError",
        "KeyError",
        "LookupError",
        "ModuleNotFoundError",
        "NameError",
        "NotImplementedError",
        "OSError",
        "PermissionError",
        "RuntimeError",
        "TimeoutError",
        "UnicodeDecodeError",
        "ValueError",
        "ZeroDivisionError",
    }
)
# The function ran to completion but its answer was lost: it may have made what it was asked for.
_COMPLETED_BUT_LOST = frozenset({"Runtime.MarshalError", "Function.ResponseSizeTooLarge"})


class FunctionAnswered(ConnectorError):
    """The invocation is over (the function answered, or Lambda stopped it), and it was not a success; what
    the function made before that is unknown."""


class FunctionFailed(FunctionAnswered):
    """The function answered, and said no (an error it raised, or a status other than ok): it made nothing."""


@dataclass(frozen=True)
class CheckedFunction:
    arn: str
    timeout: float  # the function's own Timeout (seconds): Lambda stops an invocation after it


class LambdaCustomIntegration(Integration):
    type_id = "lambda_custom"
    default_resource_type = RESOURCE_TYPE

    def __init__(self, integration_id: str, settings: Mapping[str, Any], services: Services) -> None:
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
    def aws(self) -> AwsSessions:
        if self.services.aws is None:
            self.services.aws = AwsSessions(self.services.connector_id)
        aws: AwsSessions = self.services.aws
        return aws

    def client(self, service: str) -> Any:
        """A client of the connector's own identity in the function's region (Lambda metadata, SSM)."""
        aws = self.aws()
        return aws.client(aws.identity(), service, self.region)

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

    def checked_function(self) -> CheckedFunction:
        """The function, after checking it carries the access tag (GetFunction, before every job)."""
        answer = self.client("lambda").get_function(FunctionName=self.function_name)
        config = answer["Configuration"]
        arn = str(config["FunctionArn"])
        raw_timeout = config.get("Timeout")
        timeout = float(raw_timeout) if isinstance(raw_timeout, (int, float)) else float(MAX_TIMEOUT_SECONDS)
        tags = answer.get("Tags") or {}
        if str(tags.get(ACCESS_TAG, "")).lower() != "true":
            raise ConnectorError(
                ErrorCode.PRECONDITION_FAILED,
                f'Lambda function {arn} is not tagged {ACCESS_TAG}: "true"; the connector invokes only functions '
                f"carrying that tag. Add the tag to the function to allow it.",
                retryable=False,
            )
        return CheckedFunction(arn, min(max(timeout, 1.0), float(MAX_TIMEOUT_SECONDS)))

    def invoke(self, arn: str, event_type: str, params: dict[str, Any]) -> dict[str, Any]:
        """The function's answer, which must be a JSON object. A timeout or a transport failure means the
        function may or may not have run, and may still be running (retryable); FunctionAnswered means the
        invocation is over, FunctionFailed that it answered and made nothing."""
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
            raise self._function_error(arn, event_type, str(answer["FunctionError"]), payload)
        if isinstance(payload, dict) and set(payload) >= {"errorMessage", "errorType"} and "status" not in payload:
            raise self._function_error(arn, event_type, "Unhandled", payload)
        if not isinstance(payload, dict):  # it ran to its end; what it made is unknown
            what = "nothing readable" if payload is None else f"a JSON {type(payload).__name__}"
            raise FunctionAnswered(
                ErrorCode.INVALID_JOB,
                f"{event_type}: {arn} answered with {what}; the handler must return a JSON object "
                'such as {"status": "ok"}',
                retryable=False,
            )
        return payload

    @staticmethod
    def _function_error(arn: str, event_type: str, kind: str, payload: Any) -> ConnectorError:
        raw_type = str(payload.get("errorType", "")) if isinstance(payload, dict) else ""
        message = str(payload.get("errorMessage", "")) if isinstance(payload, dict) else ""
        timed_out = raw_type == "Sandbox.Timedout" or "task timed out" in message.lower()
        # Only words of our own: the Lambda service's two FunctionError values, well-known error types.
        shown_kind = kind if kind in ("Unhandled", "Handled") else "FunctionError"
        error_type = raw_type if raw_type in KNOWN_ERROR_TYPES else "of the function's own type"
        text = (
            f"{event_type}: function {arn} failed ({shown_kind}, error {error_type}); what it said is not "
            "repeated here (it may hold a secret): see the function's CloudWatch logs"
        )
        if timed_out:  # Lambda stopped it: it may have done part of the work
            return FunctionAnswered(ErrorCode.TIMEOUT, text, retryable=True)
        if raw_type in _COMPLETED_BUT_LOST:  # it finished, and its answer was lost
            return FunctionAnswered(ErrorCode.INTERNAL, text, retryable=False)
        return FunctionFailed(ErrorCode.INTERNAL, text, retryable=False)

    @staticmethod
    def require_ok(arn: str, event_type: str, payload: Mapping[str, Any]) -> None:
        status = payload.get("status")
        if status == "ok":
            return
        if isinstance(status, str):
            shown = f"{len(status)} characters"
        else:
            shown = "none" if status is None else f"a JSON {type(status).__name__}"
        text = (
            f"{event_type}: {arn} answered a status other than 'ok' ({shown}; not repeated here, it may hold "
            "a secret): see the function's CloudWatch logs"
        )
        if isinstance(status, str):  # it said no
            raise FunctionFailed(ErrorCode.INTERNAL, text, retryable=False)
        # No status at all is no contract answer: it may have made something all the same.
        raise FunctionAnswered(ErrorCode.INTERNAL, text, retryable=False)
