"""How a Kubernetes-facing integration reaches its cluster, and which cluster that really is.

Setting `connection`: in_cluster (default; the pod's ServiceAccount, token re-read by the client), eks
(DescribeCluster endpoint + CA, and an EKS bearer token made with the connector identity, replaced at 14 of its
15 minutes), or host (an explicit URL; plaintext only to loopback, for tests). Shared by the kubernetes (RBAC)
and eks_aws_auth integration types. The cluster a grant lands on is the one these settings reach — never a
field of the job's target — and `cluster_ref` names it for the guardrails: the EKS cluster (with the account
read from its ARN), `in-cluster`, or the host URL.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from connector.aws.eks_token import REFRESH_AFTER_SECONDS, cluster_connection_info, get_token
from connector.aws.sessions import AwsSessions
from connector.config import is_loopback
from connector.errors import InvalidSettings
from connector.integrations.effect import IN_CLUSTER, ClusterRef
from connector.k8s.client import PAGE_LIMIT, KubeApi, RefreshingBearer, in_cluster_client, token_client

CONNECTIONS = ("in_cluster", "eks", "host")


def _str_setting(settings: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = settings.get(key, "")
    if not isinstance(value, str):
        raise InvalidSettings(key, "must be a string")
    if required and not value.strip():
        raise InvalidSettings(key, "is required")
    return value.strip()


@dataclass(frozen=True)
class ClusterSettings:
    """How to reach the cluster. `connection`: in_cluster (default), eks, or host."""

    connection: str = "in_cluster"
    cluster_name: str = ""
    region: str = ""
    host: str = ""
    page_size: int = PAGE_LIMIT

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> ClusterSettings:
        connection = _str_setting(settings, "connection") or "in_cluster"
        if connection not in CONNECTIONS:
            raise InvalidSettings("connection", f"must be one of {', '.join(CONNECTIONS)}, got {connection[:40]!r}")
        page_size = settings.get("page_size", PAGE_LIMIT)
        if not isinstance(page_size, (int, float)) or isinstance(page_size, bool) or not 1 <= page_size <= 500:
            raise InvalidSettings("page_size", "must be a number from 1 to 500 (items per list call)")
        parsed = cls(
            connection=connection,
            page_size=int(page_size),
            cluster_name=_str_setting(settings, "cluster_name", required=connection == "eks"),
            region=_str_setting(settings, "region", required=connection == "eks"),
            host=_str_setting(settings, "host", required=connection == "host"),
        )
        if connection == "host":
            try:
                parts = urlsplit(parsed.host)
                _ = parts.port  # a port that is not a number raises here
            except ValueError:  # e.g. an unclosed [IPv6] bracket
                raise InvalidSettings("host", "must look like https://host:port") from None
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise InvalidSettings("host", "must look like https://host:port")
            if parts.scheme == "http" and not is_loopback(parts.hostname):
                raise InvalidSettings("host", "plaintext http:// is only allowed to a loopback address; use https://")
        return parsed


def without_credentials(url: str) -> str:
    """The URL as it names the cluster: a user:password@ in the setting never reaches an Effect, an audit line,
    a result or a guardrail message (the connector authenticates with a bearer token, never with these)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _aws_clients(services: Any, region: str) -> tuple[Any, Any]:
    """(STS, EKS) clients of the connector identity, through the process-wide AwsSessions cache."""
    if services.aws is None:
        services.aws = AwsSessions(services.connector_id)
    aws: AwsSessions = services.aws
    identity = aws.identity()
    return aws.client(identity, "sts", region), aws.client(identity, "eks", region)


class ClusterConnection:
    """Builds the KubeApi once, on first use (a job, not start-up, reports an unreachable cluster)."""

    def __init__(self, cluster: ClusterSettings, services: Any) -> None:
        self.cluster = cluster
        self._services = services
        self._api: KubeApi | None = None
        self._account_id = ""
        self._lock = threading.Lock()

    def cluster_ref(self) -> ClusterRef:
        """The cluster these settings really reach (connecting first, so an EKS cluster's account is known)."""
        c = self.cluster
        if c.connection == "in_cluster":
            return ClusterRef(IN_CLUSTER)
        if c.connection == "host":
            return ClusterRef(without_credentials(c.host))
        self.api()
        return ClusterRef(c.cluster_name, self._account_id, c.region)

    def api(self) -> KubeApi:
        with self._lock:
            if self._api is None:
                self._api = KubeApi(self._build(), page_limit=self.cluster.page_size)
            return self._api

    def _build(self) -> Any:
        c = self.cluster
        if c.connection == "in_cluster":
            return in_cluster_client()
        if c.connection == "host":
            return token_client(c.host, None, None)
        sts, eks = _aws_clients(self._services, c.region)
        endpoint, ca_pem, arn = cluster_connection_info(eks, c.cluster_name)  # botocore errors: typed by the dispatcher
        self._account_id = arn.split(":")[4] if arn.count(":") >= 5 else ""
        bearer = RefreshingBearer(lambda: get_token(sts, c.cluster_name).value, refresh_after=REFRESH_AFTER_SECONDS)
        return token_client(endpoint, ca_pem, bearer)
