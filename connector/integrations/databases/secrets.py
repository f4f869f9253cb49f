"""The connector's own database credentials, resolved where the connector runs and nowhere else.

A setting (or the `apono-secret` tag) names the secret; this module fetches it with the connector's identity:
- a Secrets Manager secret (ARN, partial ARN or name): GetSecretValue through the client the caller hands in
  (the connector's own identity, or the member account's role for a discovered database);
- `k8s:<namespace>/<name>`: a Kubernetes Secret, read with the pod's ServiceAccount when the connector runs
  in a cluster (keys `username` and `password`).

The value is a JSON object with `username` and `password` (the RDS secret structure; `host`, `port`,
`dbname`, `engine` may be there too). It is kept in memory for a short while (`ttl`), registered with the
log redactor, and never logged, sent, stored or repeated in an error: errors name the secret and the fix
(tag, permission, format), never what it holds. When the secret names a `host`, it must be the host the
integration connects to, so settings that point at another server cannot make the connector hand it the
credentials of this one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.aws.errors import error_code
from connector.errors import ConnectorError, ErrorCode, InvalidSettings
from connector.logging import register_secret

DEFAULT_TTL_SECONDS = 300.0
K8S_PREFIX = "k8s:"
_K8S_REF = re.compile(r"^k8s:([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)/([a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?)$")
_ARN_REGION = re.compile(r"^arn:[a-z-]+:secretsmanager:([a-z0-9-]+):\d{12}:secret:")
MAX_FIELD = 1024

SecretsManagerClient = Callable[[str], Any]  # region -> a secretsmanager client
KubeSecretReader = Callable[[str, str], Mapping[str, bytes]]  # (namespace, name) -> the Secret's data


@dataclass(frozen=True)
class DbCredentials:
    """A login. The password never appears in repr() (so not in a traceback's locals or a log line)."""

    username: str
    password: str = field(repr=False)
    host: str = ""  # the host the secret says it is for, when it says


def _fail(code: ErrorCode, message: str, retryable: bool = False) -> ConnectorError:
    return ConnectorError(code, message, retryable=retryable)


def _credentials(ref: str, data: Any) -> DbCredentials:
    if not isinstance(data, Mapping):
        raise InvalidSettings("secret", f"{ref} must hold a JSON object with username and password")
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not username or len(username) > MAX_FIELD:
        raise InvalidSettings("secret", f"{ref} has no usable 'username' (a JSON object with username and password)")
    if not isinstance(password, str) or not password or len(password) > MAX_FIELD:
        raise InvalidSettings("secret", f"{ref} has no usable 'password' (a JSON object with username and password)")
    host = data.get("host")
    register_secret(password)
    return DbCredentials(username, password, host if isinstance(host, str) else "")


def in_cluster_secret_reader() -> KubeSecretReader:
    """Reads a Secret with the pod's ServiceAccount, which needs `get` on exactly that Secret."""
    from connector.k8s.client import in_cluster_client

    return kube_secret_reader(in_cluster_client())


def kube_secret_reader(api_client: Any) -> KubeSecretReader:
    """Reads Secrets through a kubernetes ApiClient."""
    from kubernetes import client as k8s

    from connector.k8s.client import api_exception

    api = k8s.CoreV1Api(api_client)

    def read(namespace: str, name: str) -> Mapping[str, bytes]:
        try:
            secret = api.read_namespaced_secret(name, namespace)
        except api_exception() as exc:
            if exc.status == 404:
                raise _fail(ErrorCode.NOT_FOUND, f"Kubernetes Secret {namespace}/{name} does not exist") from None
            if exc.status in (401, 403):
                raise _fail(
                    ErrorCode.ACCESS_DENIED,
                    f"the connector's ServiceAccount may not read Secret {namespace}/{name}: give it `get` on that "
                    f"Secret (a Role in namespace {namespace} with resourceNames: [{name}], and its RoleBinding)",
                ) from None
            raise _fail(
                ErrorCode.UNAVAILABLE, f"reading Secret {namespace}/{name} failed ({exc.status})", True
            ) from None
        out: dict[str, bytes] = {}
        for key, value in (secret.data or {}).items():
            try:
                out[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
        return out

    return read


class SecretResolver:
    """Resolves and briefly caches secrets. One per process (Services), thread-safe."""

    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS, kube_reader: KubeSecretReader | None = None) -> None:
        self.ttl = ttl
        self._kube_reader = kube_reader
        self._cache: dict[tuple[str, str], tuple[float, DbCredentials]] = {}
        self._lock = threading.Lock()

    def resolve(
        self, ref: str, *, region: str, secretsmanager: SecretsManagerClient | None, host: str = ""
    ) -> DbCredentials:
        """The credentials `ref` holds. `host`: the host the integration connects to (checked against the
        secret's own `host` when it has one)."""
        key = (ref, region)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            creds = cached[1]
        else:
            creds = (
                self._kube(ref) if ref.startswith(K8S_PREFIX) else self._secrets_manager(ref, region, secretsmanager)
            )
            with self._lock:
                self._cache[key] = (now + self.ttl, creds)
        if host and creds.host and creds.host.lower().rstrip(".") != host.lower().rstrip("."):
            raise _fail(
                ErrorCode.PRECONDITION_FAILED,
                f"secret {ref} is for host {creds.host[:253]}, but this integration connects to {host}: fix the "
                "integration's host or its secret (apono-secret tag)",
            )
        return creds

    def forget(self, ref: str) -> None:
        """Drop a cached secret (its login was refused: it may have been rotated)."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == ref]:
                del self._cache[key]

    def _kube(self, ref: str) -> DbCredentials:
        m = _K8S_REF.match(ref)
        if not m:
            raise InvalidSettings("secret", "a Kubernetes secret is named k8s:<namespace>/<name>")
        namespace, name = m.group(1), m.group(3)
        if self._kube_reader is None:
            self._kube_reader = in_cluster_secret_reader()
        data = self._kube_reader(namespace, name)
        if "username" in data and "password" in data:
            try:
                fields = {k: data[k].decode() for k in ("username", "password", "host") if k in data}
            except UnicodeDecodeError:
                raise InvalidSettings("secret", f"{ref}: username and password must be UTF-8 text") from None
            return _credentials(ref, fields)
        for raw in data.values():  # one key holding the JSON object, as in Secrets Manager
            try:
                return _credentials(ref, json.loads(raw))
            except (ValueError, InvalidSettings):
                continue
        raise InvalidSettings("secret", f"{ref} must have keys username and password (or one key holding their JSON)")

    def _secrets_manager(self, ref: str, region: str, make_client: SecretsManagerClient | None) -> DbCredentials:
        if make_client is None:
            raise InvalidSettings("secret", "a Secrets Manager secret needs AWS access, which this integration lacks")
        m = _ARN_REGION.match(ref)
        where = m.group(1) if m else region
        if not where:
            raise InvalidSettings("region", f"secret {ref} is given by name: set the region it lives in")
        try:
            answer = make_client(where).get_secret_value(SecretId=ref)
        except Exception as exc:
            raise self._aws_error(ref, where, exc) from None
        text = answer.get("SecretString")
        if not isinstance(text, str):
            raise InvalidSettings("secret", f"{ref} holds binary data; store a JSON object with username and password")
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidSettings(
                "secret", f"{ref} is not JSON; store a JSON object with username and password"
            ) from None
        return _credentials(ref, data)

    @staticmethod
    def _aws_error(ref: str, region: str, exc: Exception) -> ConnectorError:
        code = error_code(exc)
        if code == "ResourceNotFoundException":
            return _fail(
                ErrorCode.NOT_FOUND,
                f"secret {ref} does not exist in {region}: create it, or fix the apono-secret tag / secret setting",
            )
        if code in ("AccessDeniedException", "AccessDenied"):
            return _fail(
                ErrorCode.ACCESS_DENIED,
                f"the connector may not read secret {ref}: its role reads only secrets tagged apono-connector-id "
                "with this connector's id; tag the secret (and its KMS key must let the role decrypt)",
            )
        if code in ("DecryptionFailure", "KMSAccessDeniedException"):
            return _fail(
                ErrorCode.ACCESS_DENIED, f"secret {ref} cannot be decrypted: let the connector's role use its KMS key"
            )
        if isinstance(exc, ConnectorError):
            return exc
        return _fail(
            ErrorCode.UNAVAILABLE, f"reading secret {ref} in {region} failed ({code or type(exc).__name__})", True
        )
