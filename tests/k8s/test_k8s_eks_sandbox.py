"""The EKS connection path against the sandbox's moto: DescribeCluster, and a real GET of the token's URL.

Runs once the sandbox (connector.sandbox.server) is on the branch; skipped before that.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("connector.sandbox.server", reason="needs the sandbox (connector.sandbox) merged")

from k8s_helpers import services

from connector.aws.eks_token import (
    CLUSTER_ID_HEADER,
    cluster_connection_info,
    get_token,
    regional_sts_client,
    url_from_token,
)
from connector.integrations.kubernetes import KubernetesIntegration
from connector.sandbox import Sandbox

pytestmark = pytest.mark.timeout(120)
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with Sandbox.start() as sb:
        eks = sb.client("eks", REGION)
        eks.create_cluster(
            name="prod",
            roleArn="arn:aws:iam::123456789012:role/eks-cluster",
            resourcesVpcConfig={"subnetIds": ["subnet-1", "subnet-2"]},
        )
        yield sb


@pytest.fixture
def sandbox_env(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in sandbox.env(REGION).items():
        monkeypatch.setenv(key, value)
    return sandbox


def test_presigned_url_is_accepted_by_sts(sandbox_env: Any) -> None:
    sts = regional_sts_client(sandbox_env.root_session(REGION), REGION)
    token = get_token(sts, "prod")
    url = url_from_token(token.value)
    assert url.startswith(sandbox_env.endpoint)
    # What the API server's authenticator does: GET the URL with the signed header. moto's dispatcher routes
    # unsigned requests by body or path, so a presigned GET would land in its S3 backend; the Authorization
    # header below only repeats the URL's own credential scope so moto picks STS (it checks no signature).
    scope = parse_qs(urlsplit(url).query)["X-Amz-Credential"][0]
    assert scope.endswith(f"/{REGION}/sts/aws4_request")
    headers = {CLUSTER_ID_HEADER: "prod", "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host"}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read().decode()
    assert response.status == 200
    assert "<GetCallerIdentityResult>" in body and "<Account>123456789012</Account>" in body


def test_eks_connection_builds_a_client_with_endpoint_ca_and_token(sandbox_env: Any) -> None:
    endpoint, ca_pem = cluster_connection_info(sandbox_env.client("eks", REGION), "prod")
    assert endpoint.startswith("https://") and ca_pem
    k8s = KubernetesIntegration("eks-int", {"connection": "eks", "cluster_name": "prod", "region": REGION}, services())
    api = k8s.connection.api()
    configuration = api.api_client.configuration
    assert configuration.host == endpoint.rstrip("/")
    assert configuration.ssl_ca_cert
    with open(configuration.ssl_ca_cert, "rb") as handle:
        assert handle.read() == ca_pem
    header = configuration.auth_settings()["BearerToken"]["value"]
    assert header.startswith("Bearer k8s-aws-v1.")
    assert "x-k8s-aws-id" in url_from_token(header.removeprefix("Bearer "))


def test_unknown_cluster_is_a_typed_not_found(sandbox_env: Any) -> None:
    from connector.aws.errors import classify_aws_error

    k8s = KubernetesIntegration("eks-int", {"connection": "eks", "cluster_name": "nope", "region": REGION}, services())
    with pytest.raises(Exception) as info:
        k8s.connection.api()
    mapped = classify_aws_error(info.value)
    assert mapped is not None and mapped.code == "NOT_FOUND"
