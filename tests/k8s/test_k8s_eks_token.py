"""EKS bearer tokens: format, signed cluster header, size limit, refresh before expiry, never logged."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from fake_apiserver import FakeApiServer
from k8s_helpers import cluster_role, grant, grant_request, kind_of, namespace, services

from connector.aws.eks_token import (
    MAX_TOKEN_BYTES,
    REFRESH_AFTER_SECONDS,
    TOKEN_PREFIX,
    get_token,
    regional_sts_client,
    token_from_url,
    url_from_token,
)
from connector.errors import ConnectorError, ErrorCode
from connector.integrations.kubernetes import KubernetesIntegration
from connector.k8s.client import KubeApi, RefreshingBearer, in_cluster_client, token_client
from connector.logging import configure_logging, get_logger

pytestmark = pytest.mark.timeout(120)

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTEDKEY"


def session(region: str = "eu-west-1") -> boto3.Session:
    return boto3.Session(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key=SECRET_KEY, region_name=region)


def test_token_is_a_presigned_regional_get_caller_identity_with_the_cluster_header_signed() -> None:
    token = get_token(regional_sts_client(session(), "eu-west-1"), "prod-cluster")
    assert token.value.startswith(TOKEN_PREFIX)
    assert "=" not in token.value  # padding stripped
    assert len(token.value.encode()) < MAX_TOKEN_BYTES
    url = urlsplit(url_from_token(token.value))
    assert (url.scheme, url.hostname) == ("https", "sts.eu-west-1.amazonaws.com")
    query = parse_qs(url.query)
    assert query["Action"] == ["GetCallerIdentity"]
    assert query["X-Amz-Expires"] == ["60"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")
    assert "/eu-west-1/sts/aws4_request" in query["X-Amz-Credential"][0]
    assert SECRET_KEY not in url_from_token(token.value)
    assert token.value not in repr(token)  # never in a repr, so never in a log line by accident
    # the header is bound into the signature: another cluster gives another signature
    other = get_token(regional_sts_client(session(), "eu-west-1"), "other-cluster")
    assert parse_qs(urlsplit(url_from_token(other.value)).query)["X-Amz-Signature"] != query["X-Amz-Signature"]


def test_legacy_global_sts_endpoint_is_replaced_by_the_regional_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", "legacy")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert session().client("sts").meta.endpoint_url == "https://sts.amazonaws.com"  # what legacy gives
    assert regional_sts_client(session(), "eu-west-1").meta.endpoint_url == "https://sts.eu-west-1.amazonaws.com"


def test_oversized_tokens_are_refused_without_showing_them() -> None:
    url = "https://sts.eu-west-1.amazonaws.com/?X-Amz-Security-Token=" + "A" * 4000
    with pytest.raises(ConnectorError) as info:
        token_from_url(url)
    assert info.value.code == ErrorCode.ACCESS_DENIED
    assert "4096-byte limit" in info.value.message and "AAAA" not in info.value.message


def test_refresh_hook_replaces_the_token_at_14_minutes() -> None:
    now = [1000.0]
    issued: list[str] = []

    def fetch() -> str:
        issued.append(f"{TOKEN_PREFIX}tok{len(issued)}")
        return issued[-1]

    with FakeApiServer() as server:
        server.seed(namespace("dev"))
        bearer = RefreshingBearer(fetch, refresh_after=REFRESH_AFTER_SECONDS, clock=lambda: now[0])
        api = KubeApi(token_client(server.url, None, bearer))
        server.require_token = issued[0]
        api.core.list_namespace()
        now[0] += REFRESH_AFTER_SECONDS - 1
        api.core.list_namespace()
        assert issued == [f"{TOKEN_PREFIX}tok0"]
        now[0] += 1  # 14 minutes: a new token before the old one's 15 run out
        server.require_token = f"{TOKEN_PREFIX}tok1"
        api.core.list_namespace()
        assert len(issued) == 2 and bearer.refreshes == 2
        assert server.auth_headers[-1] == f"Bearer {TOKEN_PREFIX}tok1"


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    caplog.set_level(logging.DEBUG)  # the kubernetes client and urllib3 log through stdlib logging
    yield stream


def test_tokens_never_reach_logs_results_or_errors(
    captured_logs: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    sts = regional_sts_client(session(), "eu-west-1")
    planted = get_token(sts, "prod").value
    with FakeApiServer() as server:
        server.seed(namespace("dev"))
        server.seed(cluster_role("view"))
        server.require_token = planted
        k8s = KubernetesIntegration("i", {"connection": "host", "host": server.url}, services())
        k8s.connection._api = KubeApi(token_client(server.url, None, RefreshingBearer(lambda: planted, 840)))
        kind = kind_of(k8s)
        result = grant(kind, grant_request("g1", "alice", {"scope": "cluster", "role": "view"}))
        # a wrong token: the 401 becomes a typed error that names no token
        server.require_token = "something-else"
        with pytest.raises(ConnectorError) as info:
            grant(kind, grant_request("g2", "bob", {"scope": "cluster", "role": "view"}))
        assert info.value.code == ErrorCode.ACCESS_DENIED
        get_logger("test").warning("eks_call_failed", error=str(info.value), detail=f"used {planted}")
    seen: list[Any] = [result, str(info.value), captured_logs.getvalue(), caplog.text]
    assert "eks_call_failed" in captured_logs.getvalue()
    for text in map(str, seen):
        assert planted not in text
        assert planted[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + 40] not in text
        assert SECRET_KEY not in text


def test_in_cluster_client_uses_the_service_account(tmp_path: Any) -> None:
    token_file, ca_file = tmp_path / "token", tmp_path / "ca.crt"
    token_file.write_text("sa-token-v1")
    ca_file.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    env = {"KUBERNETES_SERVICE_HOST": "10.100.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    client = in_cluster_client(str(token_file), str(ca_file), env)
    configuration = client.configuration
    assert configuration.host == "https://10.100.0.1:443"
    assert configuration.ssl_ca_cert == str(ca_file)
    assert configuration.auth_settings()["BearerToken"]["value"] == "bearer sa-token-v1"
    with pytest.raises(ConnectorError) as info:
        in_cluster_client(str(token_file), str(ca_file), {})
    assert info.value.code == ErrorCode.INVALID_SETTINGS and "in_cluster" in info.value.message
