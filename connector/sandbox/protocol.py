"""What a raw HTTP request to the sandbox is: service, region, access key, operation; and AWS-shaped errors.

Everything here reads botocore's own service models, so operation names, throttling codes and error
formats are the ones botocore itself parses.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape

import botocore.session
from botocore.exceptions import UnknownServiceError
from botocore.model import ServiceModel

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
_LABEL = re.compile(r"\{([^}]+)\}")

# Signing names whose botocore service name differs (credential scope says the signing name).
_SERVICE_BY_SIGNING_NAME = {"sso": "sso-admin", "states": "stepfunctions"}


@dataclass(frozen=True)
class RequestInfo:
    """The parts of a request that fault rules and trust checks scope on."""

    service: str  # botocore service name (e.g. "eks", "organizations", "sso-admin")
    region: str
    access_key: str
    operation: str  # botocore operation name, "" when it cannot be told
    labels: tuple[tuple[str, str], ...] = ()  # a REST operation's decoded path labels


@functools.cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def service_model(service: str) -> ServiceModel | None:
    try:
        return _session().get_service_model(service)
    except UnknownServiceError:
        return None


def protocol_of(service: str) -> str:
    model = service_model(service)
    return str(model.metadata.get("protocol", "json")) if model is not None else "json"


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    literal_chars: int


@functools.cache
def _rest_routes(service: str) -> tuple[_Route, ...]:
    """requestUri templates of a REST service, compiled to match the raw (still percent-encoded) path."""
    model = service_model(service)
    if model is None:
        return ()
    routes = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        template = str(http.get("requestUri", "/")).split("?", 1)[0]
        regex, literal, pos = "", 0, 0
        for match in _LABEL.finditer(template):
            regex += re.escape(template[pos : match.start()])
            literal += match.start() - pos
            label = match.group(1)
            group = re.sub(r"\W", "_", label.rstrip("+"))
            regex += f"(?P<{group}>.+)" if label.endswith("+") else f"(?P<{group}>[^/]+)"
            pos = match.end()
        regex += re.escape(template[pos:])
        literal += len(template) - pos
        routes.append(_Route(str(http.get("method", "GET")), re.compile(f"^{regex}/?$"), name, literal))
    # The most specific template (most literal characters) wins when several match.
    return tuple(sorted(routes, key=lambda r: -r.literal_chars))


def match_rest_operation(service: str, method: str, raw_path: str) -> tuple[str, dict[str, str]] | None:
    """(operation, decoded path labels) for a REST request, matched against botocore's requestUri templates."""
    for route in _rest_routes(service):
        if route.method != method:
            continue
        found = route.pattern.match(raw_path)
        if found:
            return route.operation, {k: unquote(v) for k, v in found.groupdict().items()}
    return None


def raw_path(environ: dict[str, Any]) -> str:
    """The request path as sent (percent-encoding intact): PATH_INFO has `%2F` already decoded."""
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(uri, str) and uri:
        return uri.split("?", 1)[0]
    return str(environ.get("PATH_INFO", "/"))


def credential_scope(environ: dict[str, Any]) -> tuple[str, str, str] | None:
    """(access key id, region, signing name) from a SigV4 Authorization header."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    found = _CREDENTIAL.search(auth) if auth else None
    if found is None:
        return None
    return found.group(1), found.group(2), found.group(3)


def identify(environ: dict[str, Any], body: bytes) -> RequestInfo | None:
    """Who is calling which operation of which service in which region; None for unsigned/unknown requests."""
    scope = credential_scope(environ)
    if scope is None:
        return None
    access_key, region, signing = scope
    service = _SERVICE_BY_SIGNING_NAME.get(signing, signing)
    if signing == "sso" and environ.get("HTTP_X_AMZ_TARGET", "").startswith("AWSIdentityStore"):
        service = "identitystore"
    operation = ""
    labels: tuple[tuple[str, str], ...] = ()
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        operation = target.rsplit(".", 1)[-1]
    else:
        params = form_params(environ, body)
        if "Action" in params:
            operation = params["Action"]
        elif protocol_of(service).startswith("rest"):
            matched = match_rest_operation(service, str(environ.get("REQUEST_METHOD", "GET")), raw_path(environ))
            if matched:
                operation, labels = matched[0], tuple(matched[1].items())
    return RequestInfo(service=service, region=region, access_key=access_key, operation=operation, labels=labels)


def form_params(environ: dict[str, Any], body: bytes) -> dict[str, str]:
    """Query-protocol parameters: from the form body (POST) or the query string."""
    params: dict[str, str] = {}
    query = str(environ.get("QUERY_STRING", ""))
    for key, values in parse_qs(query, keep_blank_values=True).items():
        params[key] = values[-1]
    if str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded") and body:
        for key, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
            params[key] = values[-1]
    return params


def _error_shape(service: str, candidates: tuple[str, ...]) -> tuple[str, int | None] | None:
    model = service_model(service)
    if model is None:
        return None
    names = {shape.name for shape in model.error_shapes}
    for name in candidates:
        if name in names:
            status = model.shape_for(name).metadata.get("error", {}).get("httpStatusCode")
            return name, int(status) if status else None
    return None


def throttling_error(service: str) -> tuple[str, int]:
    """The throttling error code and HTTP status botocore models for a service."""
    found = _error_shape(service, ("ThrottlingException", "TooManyRequestsException", "ThrottledException"))
    if found:
        return found[0], found[1] or 400
    return ("Throttling", 400) if protocol_of(service) == "query" else ("ThrottlingException", 400)


def access_denied_error(service: str) -> tuple[str, int]:
    found = _error_shape(service, ("AccessDeniedException", "AccessDenied"))
    if found:
        return found[0], found[1] or (403 if protocol_of(service).startswith("rest") else 400)
    return ("AccessDenied", 403) if protocol_of(service) in ("query", "rest-xml") else ("AccessDeniedException", 403)


def error_response(service: str, code: str, message: str, status: int) -> tuple[int, list[tuple[str, str]], bytes]:
    """An error body in the service's wire protocol, as botocore's parser expects it."""
    request_id = str(uuid.uuid4())
    protocol = protocol_of(service)
    if protocol == "query" or protocol == "ec2":
        xml = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], xml.encode()
    if protocol == "rest-xml":
        xml = f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message><RequestId>{request_id}</RequestId></Error>"
        return status, [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)], xml.encode()
    if protocol == "json":
        body = json.dumps({"__type": code, "message": message, "Message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request_id)]
        return status, headers, body
    body = json.dumps({"message": message}).encode()
    headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", code), ("x-amzn-RequestId", request_id)]
    return status, headers, body


def json_range_violation(info: RequestInfo, body: bytes) -> tuple[str, str] | None:
    """(error code, message) when a JSON-protocol request has a top-level integer above its modelled max.

    botocore validates only the minimum client-side and moto checks neither, so without this an
    Organizations MaxResults of 50 would pass here and fail in AWS (its limit is 20)."""
    model = service_model(info.service)
    if model is None or protocol_of(info.service) != "json" or not info.operation or not body:
        return None
    try:
        shape = model.operation_model(info.operation).input_shape
        params = json.loads(body)
    except Exception:  # unknown operation or a body that is not JSON: leave it to moto
        return None
    if shape is None or not isinstance(params, dict):
        return None
    names = {s.name for s in model.error_shapes}
    code = (
        "ValidationException"
        if "ValidationException" in names or "InvalidInputException" not in names
        else "InvalidInputException"
    )
    for name, member in shape.members.items():
        value, limit = params.get(name), member.metadata.get("max")
        if member.type_name == "integer" and isinstance(value, int) and limit is not None and value > limit:
            field = name[0].lower() + name[1:]
            return code, (
                f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
                f"Member must have value less than or equal to {limit}"
            )
    return None
