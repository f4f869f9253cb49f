"""Outbound HTTPS proxies: which proxy a connection goes through, and which environment variable said so.

Customers' networks often allow egress only through a proxy named by HTTPS_PROXY / NO_PROXY; ECS task
definitions and Helm values usually spell them in upper case. botocore reads both spellings itself (Python's
urllib rules: the lower-case name wins). gRPC's core reads only lower-case names (grpc_proxy, https_proxy,
http_proxy; no_grpc_proxy, no_proxy), so an agent given HTTPS_PROXY alone would dial the control plane
directly. The agent therefore decides here, from either spelling, and hands gRPC the answer as the
`grpc.http_proxy` channel option, or turns gRPC's own lookup off when no proxy applies
(`grpc_channel_options`). The same rules say which proxy each AWS endpoint uses (`aws_proxy`, for doctor and
for error messages), and a proxy's credentials never reach a log line (`Proxy.display`).
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

# gRPC's own order (grpc core, http_proxy_mapper), with the upper-case spellings next to their lower-case ones.
GRPC_PROXY_VARIABLES = ("grpc_proxy", "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")
GRPC_NO_PROXY_VARIABLES = ("no_grpc_proxy", "no_proxy", "NO_PROXY")


@dataclass(frozen=True)
class Proxy:
    url: str  # as configured; may carry user:password@
    variable: str  # the environment variable it came from

    @property
    def display(self) -> str:
        """The URL without credentials, for log lines and messages."""
        parts = urlsplit(self.url if "://" in self.url else f"http://{self.url}")
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, "", "", ""))

    @property
    def password(self) -> str:
        parts = urlsplit(self.url if "://" in self.url else f"http://{self.url}")
        return parts.password or ""

    def describe(self) -> str:
        return f"{self.display} (from {self.variable})"


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether NO_PROXY-style `no_proxy` (comma-separated) exempts host[:port]: `*`; a name, matching itself
    and its subdomains (`example.com`, `.example.com`, `*.example.com`); `name:port`; an IP address; a CIDR
    range (`10.0.0.0/8`, which gRPC also honours)."""
    host = host.strip("[]").lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if address is not None and address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry_port: int | None = None
        if entry.count(":") == 1 or entry.startswith("["):  # name:port or [v6]:port
            name, _, maybe_port = entry.rpartition(":")
            if maybe_port.isdigit() and name:
                entry, entry_port = name, int(maybe_port)
        if entry_port is not None and port is not None and entry_port != port:
            continue
        entry = entry.strip("[]").removeprefix("*").removeprefix(".").rstrip(".")
        if address is not None:
            try:
                if address == ipaddress.ip_address(entry):
                    return True
            except ValueError:
                pass
            continue
        if host == entry or host.endswith("." + entry):
            return True
    return False


def grpc_proxy(host: str, port: int, environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy gRPC should use for host:port, from either spelling of the variables, or None (no proxy set,
    or NO_PROXY exempts the host)."""
    env = os.environ if environ is None else environ
    found = _first(env, GRPC_PROXY_VARIABLES)
    if found is None:
        return None
    exempt = _first(env, GRPC_NO_PROXY_VARIABLES)
    if exempt is not None and bypassed(host, port, exempt[1]):
        return None
    return Proxy(url=found[1], variable=found[0])


def grpc_channel_options(host: str, port: int, environ: Mapping[str, str] | None = None) -> list[tuple[str, str | int]]:
    """Channel options that make gRPC follow our decision: the proxy to use, or none at all (so the lower-case
    variables gRPC reads on its own cannot disagree with the upper-case ones it ignores)."""
    proxy = grpc_proxy(host, port, environ)
    if proxy is None:
        return [("grpc.enable_http_proxy", 0)]
    return [("grpc.http_proxy", proxy.url)]


def aws_proxy(endpoint_url: str, environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy botocore uses for `endpoint_url`: Python's urllib rules (https_proxy for https://, http_proxy
    for http://, either spelling, lower case first; no_proxy / NO_PROXY exempt names and suffixes)."""
    env = dict(os.environ if environ is None else environ)
    parts = urlsplit(endpoint_url)
    scheme = parts.scheme or "https"
    names = (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
    found = _first(env, names)
    if found is None:
        return None
    exempt = _first(env, ("no_proxy", "NO_PROXY"))
    if exempt is not None:
        netloc = parts.netloc.rpartition("@")[2]
        # urllib's own matcher is what botocore asks (through proxy_bypass): keep to it, not to ours.
        bypass = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009 - not in typeshed
        if bypass(netloc, proxies={"no": exempt[1]}):
            return None
    return Proxy(url=found[1], variable=found[0])


def proxy_variable(url: str, environ: Mapping[str, str] | None = None) -> str:
    """Which proxy variable holds `url` (compared without credentials: botocore masks them), for messages."""
    env = os.environ if environ is None else environ
    wanted = Proxy(url, "").display
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "grpc_proxy"):
        value = env.get(name, "").strip()
        if value and Proxy(value, name).display == wanted:
            return name
    return "HTTPS_PROXY / HTTP_PROXY"


def proxy_failure_hint(proxy: Proxy, target: str) -> str:
    return (
        f"the connection goes through the proxy {proxy.describe()}: check that the proxy is up and allows "
        f"CONNECT to {target}, or exempt that host in NO_PROXY"
    )


class ProxyError(OSError):
    """The proxy could not be reached, or refused the tunnel. The message names the variable to check."""


def open_tunnel(proxy: Proxy, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to host:port through `proxy` (HTTP CONNECT), as gRPC opens it: for preflight checks
    that must take the path the agent takes."""
    parts = urlsplit(proxy.url if "://" in proxy.url else f"http://{proxy.url}")
    address = (parts.hostname or "", parts.port or 80)
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        raise ProxyError(f"cannot connect to the proxy {proxy.describe()}: {exc.strerror or exc}") from None
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
    if parts.username:
        token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
        request += f"Proxy-Authorization: Basic {token}\r\n"
    try:
        sock.sendall((request + "\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer and len(answer) < 16384:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    except OSError as exc:
        sock.close()
        raise ProxyError(f"the proxy {proxy.describe()} dropped the CONNECT to {authority}: {exc}") from None
    status = answer.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    fields = status.split(" ", 2)
    if len(fields) < 2 or fields[1] != "200":
        sock.close()
        raise ProxyError(f"the proxy {proxy.describe()} refused CONNECT {authority}: {status or 'no answer'}"[:300])
    return sock
