"""Kubernetes API clients: in-cluster, an EKS endpoint with a refreshing bearer token, or an explicit host.

The connector normally runs inside the cluster it manages (Helm) and uses its ServiceAccount; the
client library re-reads the projected token file itself. For an EKS cluster reached from outside, the
caller supplies the endpoint, the CA and a token source (connector.aws.eks_token); the token is
replaced before its 15 minutes run out through the client's `refresh_api_key_hook`. Every call goes
through `KubeApi.call`, which retries throttling and server errors (tenacity) and turns API errors into
typed ConnectorErrors whose messages carry the API server's reason, never a token.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import urllib3
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from connector.errors import ConnectorError, ErrorCode
from connector.logging import get_logger, redact_text

if TYPE_CHECKING:
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

log = get_logger("connector.k8s")
T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
PAGE_LIMIT = 250
# incluster_config's SERVICE_TOKEN_FILENAME / SERVICE_CERT_FILENAME, without importing the package for them.
SERVICE_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path, not a secret
SERVICE_CA_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


def api_exception() -> type[ApiException]:
    """kubernetes' ApiException, imported on first use (in `except api_exception()`, evaluated only when an
    exception passes). Importing the kubernetes package loads every API model, about 43 MB of the agent's
    resident memory, which an agent that never talks to a Kubernetes API should not pay for."""
    from kubernetes.client.exceptions import ApiException

    return ApiException  # type: ignore[no-any-return]


class RefreshingBearer:
    """A `refresh_api_key_hook`: fetches a new token when the current one is `refresh_after` seconds old."""

    def __init__(
        self, fetch: Callable[[], str], refresh_after: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fetch = fetch
        self._refresh_after = refresh_after
        self._clock = clock
        self._issued_at: float | None = None
        self.refreshes = 0

    def __call__(self, configuration: k8s.Configuration) -> None:
        now = self._clock()
        if self._issued_at is None or now - self._issued_at >= self._refresh_after:
            configuration.api_key["BearerToken"] = self._fetch()
            configuration.api_key_prefix["BearerToken"] = "Bearer"
            self._issued_at = now
            self.refreshes += 1


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _ca_file(ca_pem: bytes) -> str:
    # The client wants a path. 0600 in a private temp dir; removed at exit.
    fd, path = tempfile.mkstemp(prefix="k8s-ca-", suffix=".pem")
    with os.fdopen(fd, "wb") as handle:
        handle.write(ca_pem)
    atexit.register(_remove_quietly, path)
    return path


def in_cluster_client(
    token_file: str = SERVICE_TOKEN_FILE,
    ca_file: str = SERVICE_CA_FILE,
    environ: Mapping[str, str] | None = None,
) -> k8s.ApiClient:
    """The pod's ServiceAccount: KUBERNETES_SERVICE_HOST/PORT, the projected token (re-read every minute
    by the client, so rotation is picked up) and the cluster CA."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config
    from kubernetes.config import incluster_config as incluster

    configuration = k8s.Configuration()
    loader = incluster.InClusterConfigLoader(
        token_filename=token_file, cert_filename=ca_file, environ=os.environ if environ is None else environ
    )
    try:
        loader.load_and_set(configuration)
    except k8s_config.ConfigException as exc:
        raise ConnectorError(
            ErrorCode.INVALID_SETTINGS,
            f"setting 'connection': in_cluster needs the connector to run in a pod with a ServiceAccount token ({exc})",
            retryable=False,
        ) from None
    return k8s.ApiClient(configuration)


def token_client(
    host: str, ca_pem: bytes | None, token: RefreshingBearer | None, *, verify_ssl: bool = True
) -> k8s.ApiClient:
    """A client for `host` authenticating with a (refreshing) bearer token; the CA pins the server."""
    from kubernetes import client as k8s

    configuration = k8s.Configuration(host=host.rstrip("/"))
    configuration.verify_ssl = verify_ssl
    if ca_pem:
        configuration.ssl_ca_cert = _ca_file(ca_pem)
    if token is not None:
        configuration.refresh_api_key_hook = token
        token(configuration)  # fetch the first token now: a bad identity fails here, clearly
    return k8s.ApiClient(configuration)


def _status_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        message = str(body.get("message") or exc.reason or "")
    except (ValueError, AttributeError):
        message = str(exc.reason or "")
    return redact_text(message)[:400]  # an API server may quote what it was sent


def api_error(exc: ApiException, what: str) -> ConnectorError:
    """A typed error for an API server refusal of `what` (e.g. 'create rolebindings in namespace dev')."""
    status = int(exc.status or 0)
    text = f"{what}: HTTP {status}: {_status_message(exc)}"
    if status in (401, 403):
        return ConnectorError(
            ErrorCode.ACCESS_DENIED,
            f"{text}. Check the connector's ServiceAccount RBAC (see connector/k8s/permissions.py) "
            "or, for EKS, its access entry / aws-auth mapping.",
            retryable=False,
        )
    if status == 404:
        return ConnectorError(ErrorCode.NOT_FOUND, text, retryable=False)
    if status == 409:
        return ConnectorError(ErrorCode.CONFLICT, text)
    if status == 422 or status == 400:
        return ConnectorError(ErrorCode.INVALID_JOB, text, retryable=False)
    if status == 429:
        return ConnectorError(ErrorCode.THROTTLED, f"{text} (throttled after retries)")
    if status >= 500 or status == 0:
        return ConnectorError(ErrorCode.UNAVAILABLE, text)
    return ConnectorError(ErrorCode.INTERNAL, text, retryable=False)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, api_exception()):
        return int(exc.status or 0) in RETRY_STATUSES
    return isinstance(exc, urllib3.exceptions.HTTPError)


class KubeApi:
    """The typed API groups this connector uses, plus retrying calls and list pagination."""

    def __init__(
        self, api_client: k8s.ApiClient, *, attempts: int = 4, max_wait: float = 5.0, page_limit: int = PAGE_LIMIT
    ) -> None:
        from kubernetes import client as k8s

        self.api_client = api_client
        self.page_limit = page_limit
        self.core = k8s.CoreV1Api(api_client)
        self.rbac = k8s.RbacAuthorizationV1Api(api_client)
        self._attempts = attempts
        self._max_wait = max_wait

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one API call; retry 429/5xx/connection errors; raise ApiException for other statuses."""
        retrying = Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.2, max=self._max_wait) + wait_random(0, 0.2),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return fn(*args, **kwargs)
        except api_exception() as exc:
            if int(exc.status or 0) in RETRY_STATUSES:
                raise api_error(exc, what) from None
            raise
        except urllib3.exceptions.HTTPError as exc:
            raise ConnectorError(
                ErrorCode.UNAVAILABLE, f"{what}: Kubernetes API unreachable: {type(exc).__name__}"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def checked(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Like `call`, but every API error becomes a typed ConnectorError."""
        try:
            return self.call(what, fn, *args, **kwargs)
        except api_exception() as exc:
            raise api_error(exc, what) from None

    def paginate(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Every item of a list call, page_limit at a time (limit/continue); never the whole list in memory."""
        token: str | None = None
        while True:
            page_kwargs = dict(kwargs, limit=self.page_limit)
            if token:
                page_kwargs["_continue"] = token
            page = self.checked(what, fn, *args, **page_kwargs)
            yield from page.items or []
            token = page.metadata._continue if page.metadata is not None else None
            if not token:
                return

    def to_dict(self, obj: Any) -> dict[str, Any]:
        value = self.api_client.sanitize_for_serialization(obj)
        return value if isinstance(value, dict) else {}
