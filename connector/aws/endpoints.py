"""Which endpoint each AWS service resolves to, and why: for `doctor` and for operators in private subnets.

The connector never sets an endpoint_url of its own, so botocore's own settings apply to every client it
makes: AWS_ENDPOINT_URL_<SERVICE> (e.g. AWS_ENDPOINT_URL_STS for an interface VPC endpoint's DNS name),
AWS_ENDPOINT_URL, AWS_USE_FIPS_ENDPOINT, AWS_USE_DUALSTACK_ENDPOINT, AWS_STS_REGIONAL_ENDPOINTS, and the
same keys in the AWS config file. This module reads back what a client resolved (`client.meta.endpoint_url`)
and names the setting that decided it, plus the proxy the call goes through (connector.net.proxy).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connector.net.proxy import aws_proxy


@dataclass(frozen=True)
class ResolvedEndpoint:
    service: str
    region: str
    url: str
    source: str  # the setting that decided it
    proxy: str  # "direct" or the proxy and its variable

    def line(self) -> str:
        return f"{self.service} ({self.region or 'global'}): {self.url} [{self.source}; {self.proxy}]"


def env_name(service_id: str) -> str:
    """botocore's per-service variable: AWS_ENDPOINT_URL_ + the service id upper-cased, spaces as underscores
    (AWS_ENDPOINT_URL_SSO_ADMIN for sso-admin)."""
    return "AWS_ENDPOINT_URL_" + service_id.replace(" ", "_").replace("-", "_").upper()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def endpoint_source(client: Any, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if not _truthy(env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")):
        specific = env_name(str(client.meta.service_model.service_id))
        if env.get(specific):
            return specific
        if env.get("AWS_ENDPOINT_URL"):
            return "AWS_ENDPOINT_URL"
    url = str(client.meta.endpoint_url)
    notes = []
    if "fips" in url:
        notes.append("AWS_USE_FIPS_ENDPOINT" if _truthy(env.get("AWS_USE_FIPS_ENDPOINT")) else "FIPS (config file)")
    if client.meta.service_model.service_name == "sts":
        notes.append(
            "global STS (AWS_STS_REGIONAL_ENDPOINTS=legacy)" if "://sts.amazonaws.com" in url else "regional STS"
        )
    return ", ".join(["botocore's endpoint rules", *notes])


def resolved(client: Any, environ: Mapping[str, str] | None = None) -> ResolvedEndpoint:
    url = str(client.meta.endpoint_url)
    proxy = aws_proxy(url, environ)
    return ResolvedEndpoint(
        service=str(client.meta.service_model.service_name),
        region=str(client.meta.region_name or ""),
        url=url,
        source=endpoint_source(client, environ),
        proxy=f"via proxy {proxy.describe()}" if proxy else "direct",
    )
