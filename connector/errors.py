"""Typed errors shared by every layer. The dispatcher turns them into job results in one place."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_JOB = "INVALID_JOB"  # the job envelope or its parameters are malformed
    INVALID_SETTINGS = "INVALID_SETTINGS"  # the integration's settings are wrong
    UNSUPPORTED = "UNSUPPORTED"  # this connector cannot run this job type / integration
    GUARDRAIL_DENIED = "GUARDRAIL_DENIED"  # the customer's policy file refuses it
    PRECONDITION_FAILED = "PRECONDITION_FAILED"  # target not in a state that allows it (CONFIG_MAP cluster)
    ACCESS_DENIED = "ACCESS_DENIED"  # AWS / Kubernetes refused our identity
    NOT_FOUND = "NOT_FOUND"  # the target (cluster, account, role) does not exist
    CONFLICT = "CONFLICT"  # a concurrent change; retry later
    THROTTLED = "THROTTLED"  # rate limited beyond our own retries
    UNAVAILABLE = "UNAVAILABLE"  # transient network or service failure
    TIMEOUT = "TIMEOUT"  # the job's deadline passed
    CANCELLED = "CANCELLED"  # the control plane cancelled it or the lease was lost
    INTERNAL = "INTERNAL"  # a bug in the connector
    SIGNATURE_INVALID = "SIGNATURE_INVALID"  # unsigned, signed by an unpinned key, or altered after signing


_RETRYABLE_BY_DEFAULT = {ErrorCode.CONFLICT, ErrorCode.THROTTLED, ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT}


class ConnectorError(Exception):
    """An error with a stable code, a message that says what to fix, and whether a retry can help.

    Messages must never contain secrets: build them from names, ids and ARNs only.
    """

    def __init__(self, code: ErrorCode, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = code in _RETRYABLE_BY_DEFAULT if retryable is None else retryable

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidJob(ConnectorError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_JOB, message, retryable=False)


class InvalidSettings(ConnectorError):
    """An integration setting is invalid; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(ErrorCode.INVALID_SETTINGS, f"setting {setting!r}: {problem}", retryable=False)
        self.setting = setting


class GuardrailDenied(ConnectorError):
    def __init__(self, rule: str, message: str) -> None:
        super().__init__(ErrorCode.GUARDRAIL_DENIED, f"guardrail {rule!r}: {message}", retryable=False)
        self.rule = rule


class JobCancelled(ConnectorError):
    def __init__(self, message: str = "the job was cancelled") -> None:
        super().__init__(ErrorCode.CANCELLED, message, retryable=False)
