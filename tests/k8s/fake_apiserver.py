"""A small, stateful HTTP fake of the Kubernetes API server for the paths this connector uses.

It is a fake of our own boundary, not of the client: the real `kubernetes` client library talks HTTP to
it. It keeps objects, assigns uid / resourceVersion / creationTimestamp, answers with the API's status
codes and Status bodies (201 create, 200 get/list/replace/delete, 404 NotFound, 409 AlreadyExists,
409 Conflict on a stale resourceVersion or a failed delete precondition, 422 Invalid, 400 BadRequest),
supports labelSelector and limit/continue, and validates every body it receives against the Kubernetes
JSON schemas shipped by `kubernetes-validate` (strict: unknown fields are errors) plus the name, label and
annotation checks the API server applies (qualified keys; annotations at most 256 KiB together). A malformed
object therefore fails a test as it would fail in a cluster.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes_validate
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

K8S_VERSION = "1.33"
RBAC = "rbac.authorization.k8s.io/v1"
ANNOTATIONS_MAX_BYTES = 256 * 1024  # apimachinery's TotalAnnotationSizeLimitB: keys and values together


@dataclass(frozen=True)
class Kind:
    resource: str
    kind: str
    api_version: str
    namespaced: bool


KINDS = {
    k.resource: k
    for k in (
        Kind("namespaces", "Namespace", "v1", False),
        Kind("configmaps", "ConfigMap", "v1", True),
        Kind("secrets", "Secret", "v1", True),
        Kind("roles", "Role", RBAC, True),
        Kind("rolebindings", "RoleBinding", RBAC, True),
        Kind("clusterroles", "ClusterRole", RBAC, False),
        Kind("clusterrolebindings", "ClusterRoleBinding", RBAC, False),
    )
}

_PATH = re.compile(
    r"^/(?:api/v1|apis/rbac\.authorization\.k8s\.io/v1)"
    r"(?:/namespaces/(?P<ns>[^/]+)(?=/))?/(?P<resource>[a-z]+)(?:/(?P<name>[^/]+))?/?$"
)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _qualified_name_errors(key: str) -> list[str]:
    """apimachinery's IsQualifiedName: an optional DNS-1123 subdomain prefix and '/', then a name of at most
    63 characters [A-Za-z0-9._-] with an alphanumeric character at both ends."""
    parts = key.split("/")
    if len(parts) > 2:
        return [f"{key!r} must be a qualified name: an optional DNS subdomain prefix and '/', then a name"]
    name = parts[-1]
    errors = []
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        elif len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix):
            errors.append(f"prefix part {prefix!r} must be a DNS-1123 subdomain")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        errors.append(f"name part {name!r} must be at most 63 alphanumeric characters, '-', '_' or '.'")
    return errors


def _check_metadata(kind: Kind, obj: dict[str, Any]) -> list[dict[str, str]]:
    causes: list[dict[str, str]] = []
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    if not name:
        causes.append({"field": "metadata.name", "message": "Required value: name or generateName is required"})
    elif kind.resource in ("namespaces",):
        if len(name) > 63 or not _DNS_LABEL.match(name):
            causes.append({"field": "metadata.name", "message": f"Invalid value: {name!r}: must be a DNS-1123 label"})
    elif kind.resource == "configmaps":
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            causes.append(
                {"field": "metadata.name", "message": f"Invalid value: {name!r}: must be a DNS-1123 subdomain"}
            )
    elif name in (".", "..") or "/" in name or "%" in name:
        causes.append({"field": "metadata.name", "message": f"Invalid value: {name!r}: may not contain '/' or '%'"})
    for key, value in (meta.get("labels") or {}).items():
        for problem in _qualified_name_errors(key):
            causes.append({"field": f"metadata.labels: {key}", "message": f"Invalid value: {problem}"})
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                {"field": f"metadata.labels: {key}", "message": f"Invalid value: {value!r}: invalid label value"}
            )
    annotations = meta.get("annotations") or {}
    for key in annotations:
        # ValidateAnnotations checks the lower-cased key: a prefix may be written in capitals
        for problem in _qualified_name_errors(key.lower()):
            causes.append({"field": f"metadata.annotations: {key}", "message": f"Invalid value: {problem}"})
    size = sum(len(k.encode()) + len(v.encode() if isinstance(v, str) else b"") for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        causes.append(
            {
                "field": "metadata.annotations",
                "message": f"Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes",
            }
        )
    return causes


def validate(kind: Kind, obj: dict[str, Any]) -> None:
    """Raise ApiError 422 when `obj` is not a valid `kind` (schema, names, labels)."""
    causes: list[dict[str, str]] = []
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "<root>"
        causes.append({"field": path, "message": exc.message})
    causes += _check_metadata(kind, obj)
    if causes:
        name = (obj.get("metadata") or {}).get("name", "")
        summary = "; ".join(f"{c['field']}: {c['message']}" for c in causes)
        raise ApiError(
            422,
            "Invalid",
            f'{kind.kind} "{name}" is invalid: {summary}',
            {"name": name, "kind": kind.resource, "causes": causes},
        )


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = re.split(r"==?", term, maxsplit=1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class FakeApiServer:
    """Start with `with FakeApiServer() as api:`; `api.url` is the host for the client."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.auth_headers: list[str] = []
        self.rejections: list[dict[str, Any]] = []  # Status bodies of 4xx answers to writes
        self.require_token: str | None = None
        # When set: the caller's RBAC rules (ClusterRole / Role "rules" lists), enforced like the authorizer.
        self.rbac_rules: list[dict[str, Any]] | None = None
        self._hooks: list[tuple[str, str, Callable[[FakeApiServer], None]]] = []
        self._faults: list[list[Any]] = []  # [method, resource, status, remaining]
        self._rv = 1000
        self._lock = threading.RLock()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(5)

    # ---- test helpers ------------------------------------------------------------------------------
    def seed(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as if another actor had created it (validated like any write)."""
        kind = next(k for k in KINDS.values() if k.kind == obj["kind"])
        ns = (obj.get("metadata") or {}).get("namespace", "") if kind.namespaced else ""
        with self._lock:
            return self._create(kind, ns, json.loads(json.dumps(obj)))

    def seed_replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an object as another actor would (validated; an empty resourceVersion is unconditional)."""
        kind = next(k for k in KINDS.values() if k.kind == obj["kind"])
        meta = obj["metadata"]
        ns = meta.get("namespace", "") if kind.namespaced else ""
        body = json.loads(json.dumps(obj))
        validate(kind, body)
        with self._lock:
            return self._replace(kind, ns, meta["name"], body)

    def get(self, resource: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        with self._lock:
            return self.objects.get((resource, namespace, name))

    def names(self, resource: str) -> list[tuple[str, str]]:
        with self._lock:
            return sorted((ns, name) for (r, ns, name) in self.objects if r == resource)

    def before(self, method: str, resource: str, hook: Callable[[FakeApiServer], None]) -> None:
        """Run `hook` once, just before the next `method` request on `resource` is processed."""
        self._hooks.append((method, resource, hook))

    def fail_next(self, method: str, resource: str, status: int, times: int = 1) -> None:
        """Answer the next `times` `method` requests on `resource` with `status` (e.g. 429, 503)."""
        self._faults.append([method, resource, status, times])

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.requests if m in ("POST", "PUT", "PATCH", "DELETE")]

    # ---- HTTP ---------------------------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        with self._lock:
            self.requests.append((request.method, request.path))
            self.auth_headers.append(request.headers.get("Authorization", ""))
            try:
                status, body = self._handle(request)
            except ApiError as exc:
                status, body = exc.code, exc.status()
                if request.method != "GET":
                    self.rejections.append(body)
        response = Response(json.dumps(body), status=status, content_type="application/json")
        return response(environ, start_response)

    def _handle(self, request: Request) -> tuple[int, dict[str, Any]]:
        if self.require_token is not None and request.headers.get("Authorization") != f"Bearer {self.require_token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        match = _PATH.match(request.path)
        if not match or match["resource"] not in KINDS:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({request.path})")
        kind = KINDS[match["resource"]]
        ns, name = match["ns"] or "", match["name"]
        if kind.namespaced is False and ns:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if self.rbac_rules is not None:
            self._authorize(request, kind, ns, name)
        for hook in list(self._hooks):
            if hook[0] == request.method and hook[1] == kind.resource:
                self._hooks.remove(hook)
                hook[2](self)
                break  # one hook per request
        for fault in self._faults:
            if fault[0] == request.method and fault[1] == kind.resource and fault[3] > 0:
                fault[3] -= 1
                reason = {429: "TooManyRequests", 503: "ServiceUnavailable"}.get(fault[2], "InternalError")
                raise ApiError(fault[2], reason, f"injected {fault[2]}")
        if request.method == "GET":
            if name:
                return 200, self._read(kind, ns, name)
            return 200, self._list(kind, ns, request.args.get("labelSelector", ""), request.args)
        body = request.get_json(silent=True) if request.data else None
        if request.method == "POST" and not name:
            return 201, self._create(kind, ns, self._body(kind, ns, body))
        if request.method == "PUT" and name:
            return 200, self._replace(kind, ns, name, self._body(kind, ns, body))
        if request.method == "DELETE" and name:
            return 200, self._delete(kind, ns, name, body or {})
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not supported on {request.path}")

    def _allowed(self, verb: str, kind: Kind, name: str | None) -> bool:
        group = kind.api_version.rpartition("/")[0]
        for rule in self.rbac_rules or []:
            if (
                group in rule.get("apiGroups", [])
                and kind.resource in rule.get("resources", [])
                and verb in rule.get("verbs", [])
                and (not rule.get("resourceNames") or name in rule["resourceNames"])
            ):
                return True
        return False

    def _authorize(self, request: Request, kind: Kind, ns: str, name: str | None) -> None:
        verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update", "DELETE": "delete"}.get(
            request.method, request.method.lower()
        )
        if not self._allowed(verb, kind, name if verb not in ("list", "create") else None):
            where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
            raise ApiError(
                403,
                "Forbidden",
                f'{kind.resource} is forbidden: User "system:serviceaccount:connector:connector" cannot {verb} '
                f'resource "{kind.resource}" in API group "{kind.api_version.rpartition("/")[0]}"{where}',
            )
        if verb == "create" and kind.resource in ("rolebindings", "clusterrolebindings"):
            # escalation check: the connector holds none of the role's permissions, so it needs `bind` on it
            body = request.get_json(silent=True) or {}
            ref = body.get("roleRef") or {}
            role_kind = KINDS["clusterroles" if ref.get("kind") == "ClusterRole" else "roles"]
            if not self._allowed("bind", role_kind, ref.get("name")):
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{kind.resource} is forbidden: user cannot bind {ref.get("kind")} "{ref.get("name")}": '
                    "attempting to grant RBAC permissions not currently held",
                )

    def _body(self, kind: Kind, ns: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body is not a JSON object")
        if body.get("kind") != kind.kind or body.get("apiVersion") != kind.api_version:
            raise ApiError(
                400,
                "BadRequest",
                f"the body's kind/apiVersion {body.get('kind')}/{body.get('apiVersion')} "
                f"does not match {kind.kind}/{kind.api_version}",
            )
        body_ns = (body.get("metadata") or {}).get("namespace")
        if kind.namespaced and body_ns and body_ns != ns:
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        validate(kind, body)
        return body

    def _read(self, kind: Kind, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((kind.resource, ns, name))
        if obj is None:
            group = kind.api_version.rpartition("/")[0]
            what = f"{kind.resource}.{group}" if group else kind.resource
            raise ApiError(404, "NotFound", f'{what} "{name}" not found', {"name": name, "kind": kind.resource})
        return obj

    def _list(self, kind: Kind, ns: str, selector: str, args: Any) -> dict[str, Any]:
        keys = sorted(
            k
            for k, obj in self.objects.items()
            if k[0] == kind.resource
            and (not ns or k[1] == ns)
            and _selector_matches(selector, obj["metadata"].get("labels") or {})
        )
        token = args.get("continue", "")
        if token:
            after = tuple(json.loads(base64.b64decode(token)))
            keys = [k for k in keys if (k[1], k[2]) > after]
        limit = int(args.get("limit", "0") or 0)
        meta: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if limit and len(keys) > limit:
            keys = keys[:limit]
            meta["continue"] = base64.b64encode(json.dumps([keys[-1][1], keys[-1][2]]).encode()).decode()
        return {
            "kind": f"{kind.kind}List",
            "apiVersion": kind.api_version,
            "metadata": meta,
            "items": [self.objects[k] for k in keys],
        }

    def _create(self, kind: Kind, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        if kind.namespaced and ("namespaces", "", ns) not in self.objects:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})
        if (kind.resource, ns, name) in self.objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{kind.resource} "{name}" already exists',
                {"name": name, "kind": kind.resource},
            )
        self._rv += 1
        meta = obj["metadata"]
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(self._rv),
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        if kind.namespaced:
            meta["namespace"] = ns
        if kind.resource == "namespaces":
            obj.setdefault("status", {"phase": "Active"})
        self.objects[(kind.resource, ns, name)] = obj
        return obj

    def _replace(self, kind: Kind, ns: str, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        current = self._read(kind, ns, name)
        if obj["metadata"].get("name") != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        rv = obj["metadata"].get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {kind.resource} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                {"name": name, "kind": kind.resource},
            )
        self._rv += 1
        obj["metadata"].update(
            uid=current["metadata"]["uid"],
            creationTimestamp=current["metadata"]["creationTimestamp"],
            resourceVersion=str(self._rv),
        )
        if kind.namespaced:
            obj["metadata"]["namespace"] = ns
        self.objects[(kind.resource, ns, name)] = obj
        return obj

    def _delete(self, kind: Kind, ns: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
        current = self._read(kind, ns, name)
        pre = options.get("preconditions") or {}
        meta = current["metadata"]
        if (pre.get("uid") and pre["uid"] != meta["uid"]) or (
            pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]
        ):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {kind.resource} "{name}": Precondition failed',
                {"name": name, "kind": kind.resource},
            )
        del self.objects[(kind.resource, ns, name)]
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "kind": kind.resource, "uid": meta["uid"]},
        }
