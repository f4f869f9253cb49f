"""Map botocore errors to typed ConnectorErrors with a hint at the fix."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from connector.errors import ConnectorError, ErrorCode
from connector.logging import redact_text
from connector.net.proxy import proxy_variable

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)
NOT_FOUND_CODES = frozenset(
    {"ResourceNotFoundException", "NoSuchEntity", "NotFoundException", "ResourceNotFound", "AccountNotFoundException"}
)
CONFLICT_CODES = frozenset(
    {"ConflictException", "ResourceInUseException", "ConcurrentModificationException", "OptimisticLockException"}
)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def classify_aws_error(exc: BaseException) -> ConnectorError | None:
    """A ConnectorError for botocore failures, or None for anything else."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        op = exc.operation_name
        message = redact_text(str(exc.response.get("Error", {}).get("Message", "")))[:400]  # AWS may quote a token
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"{op}: {code}: {message}"
        if code in THROTTLING_CODES:
            return ConnectorError(ErrorCode.THROTTLED, f"{text} (throttled after retries)")
        if code in ACCESS_DENIED_CODES:
            return ConnectorError(
                ErrorCode.ACCESS_DENIED,
                f"{text}. Check the connector role's permissions, the role trust policy and any service control policy.",
                retryable=False,
            )
        if code in NOT_FOUND_CODES:
            return ConnectorError(ErrorCode.NOT_FOUND, text, retryable=False)
        if code in CONFLICT_CODES:
            return ConnectorError(ErrorCode.CONFLICT, text)
        if status >= 500:
            return ConnectorError(ErrorCode.UNAVAILABLE, text)
        if status == 404:  # no modelled error code: the endpoint itself did not know the path
            region = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-region", "")
            return ConnectorError(
                ErrorCode.NOT_FOUND,
                f"{op}: the AWS endpoint answered 404 with no error code{' for ' + region if region else ''}: "
                "check the region and that the service is available there",
                retryable=False,
            )
        if status == 403:
            return ConnectorError(
                ErrorCode.ACCESS_DENIED, f"{op}: the AWS endpoint answered 403: {message}", retryable=False
            )
        return ConnectorError(ErrorCode.INVALID_JOB if status == 400 else ErrorCode.INTERNAL, text, retryable=False)
    if isinstance(exc, NoCredentialsError):
        return ConnectorError(
            ErrorCode.ACCESS_DENIED,
            "no AWS credentials found for the connector identity (ECS task role, IRSA, EKS Pod Identity or env)",
            retryable=False,
        )
    if isinstance(exc, ProxyConnectionError):  # before ConnectionError, its base: name the variable, not TLS
        return ConnectorError(ErrorCode.UNAVAILABLE, proxy_error_message(exc))
    if isinstance(exc, (BotoConnectionError, ReadTimeoutError)):
        return ConnectorError(ErrorCode.UNAVAILABLE, f"AWS endpoint unreachable: {type(exc).__name__}")
    if isinstance(exc, BotoCoreError):
        return ConnectorError(ErrorCode.UNAVAILABLE, f"{type(exc).__name__}: {redact_text(str(exc))[:300]}")
    return None


def proxy_error_message(exc: ProxyConnectionError) -> str:
    """The proxy botocore could not get through, with the variable that named it."""
    url = str(exc.kwargs.get("proxy_url", ""))
    variable = proxy_variable(url)
    cause = redact_text(str(exc.kwargs.get("error", "")))[:200]
    return (
        f"cannot reach AWS through the proxy {url} (from {variable}): {cause}; check that the proxy is up and "
        "allows CONNECT to the AWS endpoints (or exempt them in NO_PROXY)"
    )
