"""EKS bearer tokens (the aws-iam-authenticator format), made locally from the connector's AWS identity.

token = "k8s-aws-v1." + base64url(presigned STS GetCallerIdentity GET URL), padding stripped. The
cluster name travels in the signed header `x-k8s-aws-id`, so a token for one cluster is useless for
another. The API server accepts a token for 15 minutes; callers refresh at 14 (`REFRESH_AFTER`).
Tokens are secrets: this module never logs them and never puts them in an exception message.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3

from connector.errors import ConnectorError, ErrorCode

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - a format prefix, not a secret
CLUSTER_ID_HEADER = "x-k8s-aws-id"
PRESIGN_EXPIRES_SECONDS = 60  # what aws-iam-authenticator and `aws eks get-token` use
TOKEN_LIFETIME_SECONDS = 15 * 60  # the API server's limit
REFRESH_AFTER_SECONDS = 14 * 60
MAX_TOKEN_BYTES = 4096  # the API server rejects longer bearer tokens


@dataclass(frozen=True, slots=True)
class EksToken:
    value: str = field(repr=False)  # never in a repr (and so never in a log line by accident)
    cluster_name: str
    issued_at: float  # time.monotonic()

    def needs_refresh(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) - self.issued_at >= REFRESH_AFTER_SECONDS


def _move_cluster_id_to_context(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    # GetCallerIdentity has no such parameter: take it out before validation, keep it for signing.
    if CLUSTER_ID_HEADER in params:
        context[CLUSTER_ID_HEADER] = params.pop(CLUSTER_ID_HEADER)


def _sign_cluster_id_header(request: Any, **_: Any) -> None:
    if CLUSTER_ID_HEADER in request.context:
        request.headers[CLUSTER_ID_HEADER] = request.context[CLUSTER_ID_HEADER]


def regional_sts_client(session: boto3.Session, region: str) -> Any:
    """An STS client on the regional endpoint (the global one adds latency and a us-east-1 dependency).

    botocore picks the regional endpoint by default and honours AWS_ENDPOINT_URL(_STS); only a legacy
    `sts_regional_endpoints` setting gives the global one, which we replace.
    """
    client = session.client("sts", region_name=region)
    if urlsplit(client.meta.endpoint_url).hostname == "sts.amazonaws.com":
        client = session.client("sts", region_name=region, endpoint_url=f"https://sts.{region}.amazonaws.com")
    return client


def presigned_caller_identity_url(sts_client: Any, cluster_name: str) -> str:
    events = sts_client.meta.events
    events.register_first(
        "provide-client-params.sts.GetCallerIdentity",
        _move_cluster_id_to_context,
        unique_id="access-connector-k8s-aws-id-params",
    )
    events.register_first(
        "before-sign.sts.GetCallerIdentity", _sign_cluster_id_header, unique_id="access-connector-k8s-aws-id-sign"
    )
    url: str = sts_client.generate_presigned_url(
        "get_caller_identity",
        Params={CLUSTER_ID_HEADER: cluster_name},
        ExpiresIn=PRESIGN_EXPIRES_SECONDS,
        HttpMethod="GET",
    )
    return url


def token_from_url(url: str) -> str:
    token = TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    if len(token.encode()) > MAX_TOKEN_BYTES:
        # Usually very long session tokens from deep role chains; the API server would refuse it.
        raise ConnectorError(
            ErrorCode.ACCESS_DENIED,
            f"the EKS token is {len(token.encode())} bytes, over the API server's {MAX_TOKEN_BYTES}-byte limit; "
            "use shorter credentials (fewer session tags / a shorter session policy) for the connector identity",
            retryable=False,
        )
    return token


def get_token(sts_client: Any, cluster_name: str) -> EksToken:
    """A fresh bearer token for `cluster_name`, signed with the STS client's credentials (no AWS call)."""
    if not cluster_name:
        raise ConnectorError(ErrorCode.INVALID_SETTINGS, "an EKS token needs a cluster name", retryable=False)
    issued = time.monotonic()
    url = presigned_caller_identity_url(sts_client, cluster_name)
    return EksToken(value=token_from_url(url), cluster_name=cluster_name, issued_at=issued)


def url_from_token(token: str) -> str:
    """Inverse of token_from_url (for tests and diagnostics)."""
    if not token.startswith(TOKEN_PREFIX):
        raise ValueError("not an EKS token (missing k8s-aws-v1. prefix)")
    body = token[len(TOKEN_PREFIX) :]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def cluster_connection_info(eks_client: Any, cluster_name: str) -> tuple[str, bytes, str]:
    """The API server endpoint, the CA (PEM bytes) and the ARN of an EKS cluster, from DescribeCluster."""
    cluster = eks_client.describe_cluster(name=cluster_name)["cluster"]
    endpoint = str(cluster.get("endpoint") or "")
    ca_data = str((cluster.get("certificateAuthority") or {}).get("data") or "")
    if not endpoint or not ca_data:
        raise ConnectorError(
            ErrorCode.PRECONDITION_FAILED,
            f"EKS cluster {cluster_name!r} has no endpoint or certificate authority yet "
            f"(status {cluster.get('status', 'unknown')}); wait until it is ACTIVE",
        )
    try:
        ca_pem = base64.b64decode(ca_data, validate=True)
    except ValueError:
        raise ConnectorError(
            ErrorCode.PRECONDITION_FAILED,
            f"EKS cluster {cluster_name!r}: certificateAuthority.data is not valid base64",
            retryable=False,
        ) from None
    return endpoint, ca_pem, str(cluster.get("arn") or "")
