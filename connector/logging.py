"""structlog set-up: JSON when not a TTY, console otherwise, and a redaction processor on every line.

Redaction is by key (token, secret, password, credentials, authorization, ...) and by value shape
(AWS secret/session keys, bearer tokens, EKS tokens, private keys), so a secret that slips into a
message or an exception text is still removed.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|credential|authorization|api[_-]?key|private[_-]?key|session[_-]?key|"
    r"access[_-]?key[_-]?id|sessiontoken|signature)",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"(?i:bearer\s+)[A-Za-z0-9._~+/=-]+"  # Authorization: Bearer ...
    r"|k8s-aws-v1\.[A-Za-z0-9_-]+"  # EKS bearer tokens
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWTs: Kubernetes service account tokens
    r"|(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS access key ids
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|(?i:(?:aws_secret_access_key|aws_session_token|secretaccesskey|sessiontoken)[\"'=: ]+)[A-Za-z0-9/+=]{16,}"
    r"|(?i:x-amz-security-token[\"'=: ]+)[A-Za-z0-9/+=]{16,}"  # the session token header, as a request dump shows it
    r"|(?:IQoJb3JpZ2lu|FwoGZXIvYXdz)[A-Za-z0-9/+=]{16,}"  # STS session tokens, whatever precedes them
)

_registered_secrets: set[str] = set()
_console = False  # lines go to a person at a terminal (console renderer), not to a log pipeline


def console() -> bool:
    """Whether logs are rendered for a terminal: long work then reports progress often (JSON stays terse)."""
    return _console


def register_secret(value: str) -> None:
    """Remember a secret this process holds (the connector token) so any line containing it is scrubbed."""
    if value and len(value) >= 6:
        _registered_secrets.add(value)


def redact_text(text: str) -> str:
    for secret in _registered_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _SECRET_VALUE.sub(REDACTED, text)


def redact(value: Any, key: str = "") -> Any:
    if key and _SECRET_KEY.search(key) and not key.endswith(("_count", "_id", "_ids", "_file", "_arn")):
        return REDACTED if value not in (None, "", False) else value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redaction_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = redact(event_dict[key], key)
    return event_dict


def _redact_rendered(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # format_exc_info turns exceptions into text; scrub that text too.
    if "exception" in event_dict:
        event_dict["exception"] = redact_text(str(event_dict["exception"]))
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    global _console
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    _console = not use_json
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redaction_processor,
            _redact_rendered,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _route_stdlib_logging(stream, use_json)


def _cause(ei: Any) -> str:
    # One line, not the library's traceback: the cause, as its exception says it.
    kind, value = ei[0], ei[1]
    return f"{getattr(kind, '__name__', 'error')}: {str(value)[:300]}"


class _RedactingFormatter(logging.Formatter):
    """Library warnings (botocore, urllib3, the kubernetes client) go through the standard logging module:
    they get the same redaction as the connector's own lines."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))

    def formatException(self, ei: Any) -> str:  # logging's own name
        return "  caused by " + _cause(ei)


class _RedactingJsonFormatter(logging.Formatter):
    """The same library lines as one JSON object each, in the shape of the connector's own (event, level,
    timestamp): with --log-format json every line of the log parses, whoever wrote it."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "event": redact_text(record.getMessage()),
            "logger": record.name,
            "level": record.levelname.lower(),
            "timestamp": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat()
            .replace("+00:00", "Z"),
        }
        if record.exc_info:
            line["error"] = redact_text(_cause(record.exc_info))
        return json.dumps(line)


def _route_stdlib_logging(stream: Any, use_json: bool) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        _RedactingJsonFormatter() if use_json else _RedactingFormatter("%(levelname)s %(name)s: %(message)s")
    )
    handler.set_name("connector-redacting")
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != "connector-redacting"] + [handler]
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
