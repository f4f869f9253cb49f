"""Every AWS call goes through the proxy the environment names, through a real tinyproxy: https:// endpoints
through a CONNECT tunnel (HTTPS_PROXY, as in production), http:// ones as forwarded requests (HTTP_PROXY);
NO_PROXY and AWS_ENDPOINT_URL_<SERVICE> are botocore's own and work with our sessions; a proxy that refuses
CONNECT or is down is named with its variable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import BotoCoreError

from connector.aws.endpoints import resolved
from connector.aws.errors import classify_aws_error
from connector.aws.sessions import AwsSessions, ClientSettings
from connector.sandbox import Sandbox, SeedSpec
from tests.certs import server_tls
from tests.net.tinyproxy import Tinyproxy, free_port
from tests.net.tls_front import TlsFront
from tests.sandbox_env import sandbox_as_aws

pytestmark = pytest.mark.timeout(120)
SPEC = SeedSpec(
    accounts=4, regions=("us-east-1",), cluster_accounts=1, identity_center=False, account_without_member_role=None
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with sandbox_as_aws(SPEC) as sb:
        yield sb


@pytest.fixture(scope="module")
def tls_front(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TlsFront, Path]]:
    ca, cert, key = server_tls(tmp_path_factory.mktemp("front"))
    port = int(sandbox.endpoint.rpartition(":")[2])
    front = TlsFront(("127.0.0.1", port), cert, key).start()
    yield front, ca
    front.stop()


def _org_calls(sandbox: Sandbox, settings: ClientSettings | None = None) -> AwsSessions:
    """What a sync starts with: the identity, the management role (ExternalId), Organizations."""
    info = sandbox.seed_info
    aws = AwsSessions(info.connector_id, settings)
    assert aws.client(aws.identity(), "sts", "us-east-1").get_caller_identity()["Arn"]
    mgmt = aws.assume(info.management_role_arn, external_id=info.external_id)
    org = aws.client(mgmt, "organizations", "us-east-1")
    assert org.describe_organization()["Organization"]["Id"] == info.organization_id
    return aws


def test_https_endpoints_tunnel_through_https_proxy(
    sandbox: Sandbox, tls_front, tinyproxy: Tinyproxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    front, ca = tls_front
    no_proxy_env.setenv("AWS_ENDPOINT_URL", f"https://localhost:{front.port}")
    no_proxy_env.setenv("AWS_CA_BUNDLE", str(ca))
    no_proxy_env.setenv("HTTPS_PROXY", tinyproxy.url)
    before = tinyproxy.connects(f"localhost:{front.port}")
    aws = _org_calls(sandbox)
    assert tinyproxy.connects(f"localhost:{front.port}") > before, tinyproxy.requests()
    endpoint = resolved(aws.client(aws.identity(), "sts", "us-east-1"))
    assert endpoint.source == "AWS_ENDPOINT_URL" and f"via proxy {tinyproxy.url} (from HTTPS_PROXY)" == endpoint.proxy


def test_http_endpoints_are_forwarded_by_http_proxy(
    sandbox: Sandbox, tinyproxy: Tinyproxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTP_PROXY", tinyproxy.url)
    before = len(tinyproxy.requests())
    _org_calls(sandbox)
    forwarded = [r for r in tinyproxy.requests()[before:] if r.startswith(f"POST {sandbox.endpoint}/")]
    assert len(forwarded) >= 3, tinyproxy.requests()[before:]


def test_no_proxy_and_a_per_service_endpoint(
    sandbox: Sandbox, tinyproxy: Tinyproxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """STS at its own endpoint (as an interface VPC endpoint would be named) through the proxy; everything
    else at another name that NO_PROXY exempts."""
    port = sandbox.endpoint.rpartition(":")[2]
    no_proxy_env.setenv("AWS_ENDPOINT_URL", f"http://localhost:{port}")
    no_proxy_env.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{port}")
    no_proxy_env.setenv("HTTP_PROXY", tinyproxy.url)
    no_proxy_env.setenv("NO_PROXY", "localhost")
    before = len(tinyproxy.requests())
    aws = _org_calls(sandbox)
    seen = tinyproxy.requests()[before:]
    assert any(r.startswith(f"POST http://127.0.0.1:{port}/") for r in seen), seen  # STS, through the proxy
    assert not any("localhost" in r for r in seen), seen  # Organizations: direct
    sts = resolved(aws.client(aws.identity(), "sts", "us-east-1"))
    org = resolved(aws.client(aws.identity(), "organizations", "us-east-1"))
    assert (sts.source, sts.url) == ("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{port}")
    assert sts.proxy.startswith("via proxy") and org.proxy == "direct" and org.source == "AWS_ENDPOINT_URL"


@pytest.mark.parametrize("which", ["refuses_connect", "down"])
def test_a_failing_proxy_is_named(
    which: str, sandbox: Sandbox, tls_front, strict_proxy: Tinyproxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    front, ca = tls_front
    url = strict_proxy.url if which == "refuses_connect" else f"http://127.0.0.1:{free_port()}"
    no_proxy_env.setenv("AWS_ENDPOINT_URL", f"https://localhost:{front.port}")
    no_proxy_env.setenv("AWS_CA_BUNDLE", str(ca))
    no_proxy_env.setenv("HTTPS_PROXY", url)
    with pytest.raises(BotoCoreError) as caught:
        _org_calls(sandbox, ClientSettings(max_attempts=1))
    error = classify_aws_error(caught.value)
    assert error is not None
    assert "HTTPS_PROXY" in error.message and url in error.message, error.message
    if which == "refuses_connect":
        assert "403" in error.message and str(front.port) in strict_proxy.refused_connects()
