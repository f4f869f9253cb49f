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

from fake_apiserver import FakeApiServer
from k8s_helpers import cluster_role, describe, grant, grant_request, kind_of, services

from connector.aws.eks_token import (
    CLUSTER_ID_HEADER,
    cluster_connection_info,
    get_token,
    regional_sts_client,
    url_from_token,
)
from connector.errors import GuardrailDenied
from connector.integrations.aws_auth import AwsAuthIntegration
from connector.integrations.effect import ClusterRef
from connector.integrations.kubernetes import KubernetesIntegration
from connector.jobs.guardrails import Guardrails
from connector.k8s.client import KubeApi, token_client
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
    endpoint, ca_pem, arn = cluster_connection_info(sandbox_env.client("eks", REGION), "prod")
    assert endpoint.startswith("https://") and ca_pem
    assert arn == f"arn:aws:eks:{REGION}:123456789012:cluster/prod"
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


def test_the_effect_of_an_eks_connection_names_the_cluster_and_its_account(sandbox_env: Any) -> None:
    """The guardrails judge the cluster the settings reach: its name, region and the account read from its ARN
    (never a field of the job's target)."""
    settings = {"connection": "eks", "cluster_name": "prod", "region": REGION}
    k8s = KubernetesIntegration("eks-int", settings, services())
    mapping = AwsAuthIntegration("a", settings, services())
    expected = ClusterRef("prod", "123456789012", REGION)
    assert k8s.connection.cluster_ref() == expected == mapping.connection.cluster_ref()
    with FakeApiServer() as server:
        # DescribeCluster gave the endpoint (moto's, which serves no Kubernetes API): talk to the fake instead
        server.seed(cluster_role("view"))
        k8s.connection._api = KubeApi(token_client(server.url, None, None))
        kind = kind_of(k8s)
        request = grant_request("g-eks", "alice", {"scope": "cluster", "role": "view"})
        effect = describe(kind, request)
        assert effect.cluster == expected and effect.account_id == "123456789012" and effect.region == REGION
        assert effect.summary()["cluster"] == f"123456789012/{REGION}/prod"
        with pytest.raises(GuardrailDenied) as info:
            grant(kind, request, Guardrails(max_duration="12h", clusters=("staging",)))
        assert info.value.rule == "clusters" and server.writes() == []
        with pytest.raises(GuardrailDenied) as info:
            grant(kind, request, Guardrails(max_duration="12h", accounts=("999999999999",)))
        assert info.value.rule == "accounts" and server.writes() == []
        grant(kind, request, Guardrails(max_duration="12h", clusters=(f"123456789012/{REGION}/prod",)))
        assert server.names("clusterrolebindings") == [("", "ac-grant-g-eks")]
