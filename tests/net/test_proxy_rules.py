"""Which proxy applies, from which variable: the rules both gRPC (through our channel options) and the
messages follow."""

from __future__ import annotations

import pytest

from connector.net.proxy import Proxy, aws_proxy, bypassed, grpc_channel_options, grpc_proxy, proxy_variable


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "expected"),
    [
        ("cp.example.com", 443, "example.com", True),
        ("cp.example.com", 443, ".example.com", True),
        ("cp.example.com", 443, "*.example.com", True),
        ("example.com", 443, "example.com", True),
        ("badexample.com", 443, "example.com", False),
        ("cp.example.com", 443, "cp.example.com:8443", False),
        ("cp.example.com", 8443, "cp.example.com:8443", True),
        ("10.1.2.3", 443, "10.0.0.0/8", True),
        ("11.1.2.3", 443, "10.0.0.0/8", False),
        ("127.0.0.1", 50051, "localhost, 127.0.0.1", True),
        ("::1", 443, "[::1]", True),
        ("anything", 1, "*", True),
        ("cp.example.com", 443, "", False),
    ],
)
def test_no_proxy_entries(host: str, port: int, no_proxy: str, expected: bool) -> None:
    assert bypassed(host, port, no_proxy) is expected


def test_grpc_takes_either_spelling_in_its_own_order() -> None:
    assert grpc_proxy("cp", 443, {"HTTPS_PROXY": "http://p:3128"}) == Proxy("http://p:3128", "HTTPS_PROXY")
    both = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:1", "grpc_proxy": "http://grpc:1"}
    assert grpc_proxy("cp", 443, both) == Proxy("http://grpc:1", "grpc_proxy")
    assert grpc_proxy("cp", 443, {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "cp"}) is None
    assert grpc_proxy("cp", 443, {"HTTPS_PROXY": "http://p:1", "no_grpc_proxy": "cp", "NO_PROXY": ""}) is None
    assert grpc_proxy("cp", 443, {}) is None


def test_channel_options_decide_for_grpc() -> None:
    assert grpc_channel_options("cp", 443, {"HTTPS_PROXY": "http://p:1"}) == [("grpc.http_proxy", "http://p:1")]
    # No proxy applies: gRPC's own lookup is off, so a lower-case variable cannot contradict NO_PROXY.
    assert grpc_channel_options("cp", 443, {"https_proxy": "http://p:1", "NO_PROXY": "cp"}) == [
        ("grpc.enable_http_proxy", 0)
    ]


def test_credentials_never_shown() -> None:
    proxy = Proxy("http://user:s3cr3t-pass@proxy.corp:3128", "HTTPS_PROXY")
    assert proxy.display == "http://proxy.corp:3128" and "s3cr3t" not in proxy.describe()
    assert proxy.password == "s3cr3t-pass"
    env = {"HTTPS_PROXY": "http://user:s3cr3t-pass@proxy.corp:3128"}
    assert proxy_variable("http://***:***@proxy.corp:3128", env) == "HTTPS_PROXY"


def test_aws_follows_python_rules_by_scheme() -> None:
    env = {"HTTPS_PROXY": "http://p:1", "HTTP_PROXY": "http://q:2", "NO_PROXY": "internal.example"}
    assert aws_proxy("https://sts.us-east-1.amazonaws.com", env) == Proxy("http://p:1", "HTTPS_PROXY")
    assert aws_proxy("http://127.0.0.1:5000", env) == Proxy("http://q:2", "HTTP_PROXY")
    assert aws_proxy("https://vpce.internal.example", env) is None
