"""The WSGI app in front of moto: fault injection, STS trust enforcement, Lambda handlers, SSM sessions, and the
/_sandbox control API."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.utilities.utils import get_partition

from connector.sandbox import eks_access, protocol, ssm_sessions, sso_provisioning
from connector.sandbox.cloudtrail import EventHistory
from connector.sandbox.databases import secret_read_denied
from connector.sandbox.faults import Decision, FaultRule, Faults
from connector.sandbox.identity import account_of, resolve_caller
from connector.sandbox.lambdas import Invocation, Lambdas
from connector.sandbox.resource_explorer import ResourceExplorer, org_arn_of, org_members
from connector.sandbox.sts_trust import check_assume_role

StartResponse = Callable[..., Any]
CONTROL_PREFIX = "/_sandbox/"  # boto3 never sends a path under this
# Services moto routes by signing name alone: their Flask app is looked up once, not per request. moto's own
# lookup (DomainDispatcherApplication.get_application) holds one process-wide lock and scans moto's module
# directory on every request: most of the sandbox's time under concurrent load.
_ROUTED_BY_SIGNING_NAME = frozenset(
    ("eks", "sts", "organizations", "iam", "sso-admin", "identitystore", "lambda", "ec2", "cloudformation")
)


class SandboxApp:
    def __init__(self, faults: Faults, lambdas: Lambdas | None = None) -> None:
        self.faults = faults
        self.lambdas = lambdas if lambdas is not None else Lambdas()
        self.inner = DomainDispatcherApplication(create_backend_app)
        self.seed_summary: dict[str, Any] | None = None
        self.resource_explorer = ResourceExplorer(org_of=org_arn_of, members_of=org_members)  # moto has none
        self.trail = EventHistory()  # CloudTrail's event history (LookupEvents), which moto lacks
        self._apps: dict[str, Callable[..., Iterable[bytes]]] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(CONTROL_PREFIX) or path == CONTROL_PREFIX.rstrip("/"):
            return self._control(environ, start_response, path[len(CONTROL_PREFIX) :].strip("/"))
        body, info, account = identify_request(environ)
        if info is not None:
            decision = self.faults.decide(info.service, info.operation, account, info.region)
            try:
                return self._serve(account, environ, info, body, decision, start_response)
            finally:
                self.faults.release(decision)  # the answer is made: a concurrency slot is free again
        return self.inner(environ, start_response)  # type: ignore[no-any-return]

    def _serve(
        self,
        account: str,
        environ: dict[str, Any],
        info: protocol.RequestInfo,
        body: bytes,
        decision: Decision,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        if not (info.service == "cloudtrail" and info.operation == "LookupEvents"):
            # CloudTrail records refused calls too (an injected SCP deny or error included).
            start_response = self._recording(account, environ, info, body, start_response)
        answer = self._guard(account, environ, info, body, decision)
        if answer is not None:
            status, headers, payload = answer
            return _respond(start_response, status, headers, payload)
        if info.service == "cloudtrail" and info.operation == "LookupEvents":
            return _respond(start_response, *self.trail.lookup(account, info.region, body))
        if info.service == "resource-explorer-2":
            return _respond(start_response, *self.resource_explorer.handle(account, info.region, info.operation, body))
        if info.service == "eks" and info.operation in eks_access.READS:
            return self._eks_read(account, environ, info, start_response)
        if info.service == "ssm" and info.operation in ssm_sessions.OPERATIONS:  # moto lacks these
            return _respond(
                start_response, *ssm_sessions.respond(account, info.region, info.operation, info.access_key, body)
            )
        if info.service == "lambda" and info.operation == "Invoke":
            return self._lambda_invoke(account, environ, info, body, start_response)
        if info.service == "sso-admin" and info.operation in sso_provisioning.READS:
            return _respond(start_response, *sso_provisioning.read(account, info.region, info.operation, body))
        if info.service == "sso-admin" and info.operation in sso_provisioning.WRITES:
            return self._sso_write(account, environ, info, body, start_response)
        if info.service in _ROUTED_BY_SIGNING_NAME:
            return list(self._app_of(info.service, environ)(environ, start_response))
        return self.inner(environ, start_response)  # type: ignore[no-any-return]

    def _sso_write(
        self,
        account: str,
        environ: dict[str, Any],
        info: protocol.RequestInfo,
        body: bytes,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        """moto answers; when it succeeded, the permission set is provisioned where AWS would provision it."""

        def recording_start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            if status.startswith("200"):
                sso_provisioning.record_write(account, info.region, info.operation, body)
            return start_response(status, headers, *exc_info)

        return list(self._app_of("sso-admin", environ)(environ, recording_start_response))

    def _recording(
        self,
        account: str,
        environ: dict[str, Any],
        info: protocol.RequestInfo,
        body: bytes,
        start_response: StartResponse,
    ) -> StartResponse:
        """Records the call in CloudTrail's event history once its status is known."""

        def recorded(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            try:
                params: dict[str, Any] = {}
                if info.service in ("sns", "sqs", "dynamodb"):
                    params = json.loads(body) if body.startswith(b"{") else protocol.form_params(environ, body)
                self.trail.record(info, account, params if isinstance(params, dict) else {}, int(status.split()[0]))
            except ValueError:
                pass
            return start_response(status, headers, *exc_info)

        return recorded

    @staticmethod
    def _eks_read(
        account: str, environ: dict[str, Any], info: protocol.RequestInfo, start_response: StartResponse
    ) -> Iterable[bytes]:
        query = parse_qs(str(environ.get("QUERY_STRING", "")))
        status, headers, body = eks_access.read_response(
            account, info.region, info.operation, dict(info.labels), lambda n: query.get(n, [None])[-1]
        )
        return _respond(start_response, status, [(k, v) for k, v in headers.items() if k != "status"], body.encode())

    def _lambda_invoke(
        self,
        account: str,
        environ: dict[str, Any],
        info: protocol.RequestInfo,
        body: bytes,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        answer = self.lambdas.invoke(account, info.region, dict(info.labels).get("FunctionName", ""), environ, body)
        if isinstance(answer, tuple):
            return _respond(start_response, *answer)
        if answer is None:
            return self._app_of("lambda", environ)(environ, start_response)
        record: Invocation = answer

        def recording_start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            self.lambdas.moto_answered(record, status, headers)
            return start_response(status, headers, *exc_info)

        return self._app_of("lambda", environ)(environ, recording_start_response)

    def _app_of(self, service: str, environ: dict[str, Any]) -> Callable[..., Iterable[bytes]]:
        app = self._apps.get(service)
        if app is None:  # moto's own choice, made once per service (a benign race: both threads get the same app)
            app = self._apps[service] = self.inner.get_application(environ)
        return app

    def _guard(
        self, account: str, environ: dict[str, Any], info: protocol.RequestInfo, body: bytes, decision: Decision
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        if decision.delay:
            time.sleep(decision.delay)
        if decision.fault is not None:
            return self._fault_response(info, account, decision)
        violation = protocol.json_range_violation(info, body)
        if violation is not None:
            return protocol.error_response(info.service, violation[0], violation[1], 400)
        denied = secret_read_denied(info, body, (self.seed_summary or {}).get("connector_id"))
        if denied is not None:
            return protocol.error_response(info.service, denied[0], denied[1], 400)
        if info.service == "sts" and info.operation == "AssumeRole":
            caller = resolve_caller(info.access_key, get_partition(info.region))
            error = check_assume_role(caller, protocol.form_params(environ, body))
            if error is not None:
                return protocol.error_response("sts", error.code, error.message, error.status)
        return None

    @staticmethod
    def _fault_response(
        info: protocol.RequestInfo, account: str, decision: Decision
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if decision.fault == "scp_deny":
            code, status = protocol.access_denied_error(info.service)
            model = protocol.service_model(info.service)
            prefix = str(model.signing_name) if model is not None else info.service
            partition = get_partition(info.region)
            message = (
                f"User: {resolve_caller(info.access_key, partition).arn} is not authorized to perform: "
                f"{prefix}:{info.operation} on resource: arn:{partition}:{prefix}:{info.region}:{account}:* "
                "with an explicit deny in a service control policy"
            )
            return protocol.error_response(info.service, code, message, status)
        if decision.fault in ("throttle", "rate_limit", "concurrency"):
            code, status = protocol.throttling_error(info.service)
            return protocol.error_response(info.service, code, "Rate exceeded", status)
        return protocol.error_response(
            info.service,
            decision.code or "InternalFailure",
            decision.message or "The sandbox injected an error.",
            decision.status,
        )

    # -- /_sandbox control API -------------------------------------------------------------------------------
    def _control(self, environ: dict[str, Any], start_response: StartResponse, route: str) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET"))
        query = {k: v[-1] for k, v in parse_qs(str(environ.get("QUERY_STRING", ""))).items()}
        try:
            status, payload = self._control_route(method, route, _read_body(environ), query)
        except (ValueError, TypeError) as exc:
            status, payload = 400, {"error": str(exc)}
        body = json.dumps(payload, default=str).encode()
        return _respond(start_response, status, [("Content-Type", "application/json")], body)

    def _control_route(self, method: str, route: str, body: bytes, query: dict[str, str]) -> tuple[int, Any]:
        if route == "health" and method == "GET":
            return 200, {"status": "ok"}
        if route == "faults":
            if method == "GET":
                return 200, {"rules": [rule.to_dict() for rule in self.faults.rules()]}
            if method == "POST":
                data = json.loads(body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("POST /_sandbox/faults takes one JSON object: a fault rule")
                return 201, {"id": self.faults.add(FaultRule.from_dict(data))}
            if method == "DELETE":
                self.faults.clear()
                return 200, {"cleared": True}
        if route.startswith("faults/") and method == "DELETE":
            removed = self.faults.remove(route.split("/", 1)[1])
            return (200 if removed else 404), {"removed": removed}
        if route == "calls":
            if method == "GET":
                return 200, self.faults.counts()
            if method == "DELETE":
                self.faults.reset_counts()
                return 200, {"cleared": True}
        if route == "lambda/invocations":
            if method == "GET":
                found = self.lambdas.invocations(
                    query.get("function"), event_type=query.get("event_type"), account=query.get("account")
                )
                return 200, {"invocations": [inv.to_dict() for inv in found]}
            if method == "DELETE":
                self.lambdas.clear_invocations()
                return 200, {"cleared": True}
        if route == "seed" and method == "GET":
            return (200, self.seed_summary) if self.seed_summary is not None else (404, {"error": "not seeded"})
        return 404, {"error": f"no such sandbox endpoint: {method} /_sandbox/{route}"}


REQUEST_KEY = "connector.sandbox.request"  # the environ key identify_request keeps its answer under


def identify_request(environ: dict[str, Any]) -> tuple[bytes, protocol.RequestInfo | None, str]:
    """(body, who calls what, the caller's account) of a request: worked out once per request, whichever layer
    asks first (the bench's timing layer in front of the sandbox asks too)."""
    known: tuple[bytes, protocol.RequestInfo | None, str] | None = environ.get(REQUEST_KEY)
    if known is None:
        body = _read_body(environ)
        info = protocol.identify(environ, body)
        account = str(environ.get("HTTP_X_MOTO_ACCOUNT_ID") or account_of(info.access_key)) if info else ""
        known = environ[REQUEST_KEY] = (body, info, account)
    return known


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
    return bytes(body)


def _respond(start_response: StartResponse, status: int, headers: list[tuple[str, str]], body: bytes) -> list[bytes]:
    reason = {
        200: "OK",
        201: "Created",
        202: "Accepted",
        204: "No Content",
        400: "Bad Request",
        403: "Forbidden",
        404: "Not Found",
        429: "Too Many Requests",
    }
    start_response(f"{status} {reason.get(status, 'Error')}", [*headers, ("Content-Length", str(len(body)))])
    return [body]
