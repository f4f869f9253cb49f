"""Where the connector really connects for a database endpoint AWS reports: the endpoint map.

A discovered RDS / Aurora / Redshift endpoint (`Endpoint.Address:Port`) is not always reachable from where the
connector runs under that name: a TCP proxy, a PrivateLink endpoint or an SSH tunnel may stand in front of it
(and the sandbox's moto computes addresses that cannot be overridden). The operator says so in the connector's
own configuration, `CONNECTOR_DATABASE_ENDPOINTS = "address:port=host:port, ..."`, never in a job's settings:
the control plane must not be able to send a database's credentials to a host of its choosing.

Only the network address changes. The name AWS reports stays what an IAM auth token is signed for and what a
TLS certificate is checked against (`verify-full`), so a mapping cannot weaken either.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

ENV_NAME = "CONNECTOR_DATABASE_ENDPOINTS"
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
MAX_ENTRIES = 1000


class EndpointMapError(ValueError):
    """The endpoint map is malformed; the message names the entry and what is wrong with it."""


@dataclass(frozen=True)
class EndpointMap:
    """(address, port) as AWS reports it -> (host, port) to connect to. Empty: connect where AWS says."""

    routes: Mapping[tuple[str, int], tuple[str, int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> EndpointMap:
        """`address:port=host:port` entries separated by commas or new lines. Raises EndpointMapError."""
        routes: dict[tuple[str, int], tuple[str, int]] = {}
        entries = [e.strip() for e in re.split(r"[,\n]", text or "") if e.strip()]
        if len(entries) > MAX_ENTRIES:
            raise EndpointMapError(f"{len(entries)} entries; at most {MAX_ENTRIES}")
        for entry in entries:
            source, sep, target = entry.partition("=")
            if not sep:
                raise EndpointMapError(f"{entry!r}: expected address:port=host:port")
            key = _host_port(source.strip(), entry)
            if key in routes:
                raise EndpointMapError(f"{entry!r}: {key[0]}:{key[1]} is mapped twice")
            routes[key] = _host_port(target.strip(), entry)
        return cls(routes)

    def resolve(self, address: str, port: int) -> tuple[str, int]:
        """Where to open the connection for the endpoint (address, port); itself when it is not mapped."""
        return self.routes.get((address.lower().rstrip("."), int(port)), (address, int(port)))

    def __bool__(self) -> bool:
        return bool(self.routes)

    def describe(self) -> list[str]:
        """The entries, for a start-up log line (addresses only: nothing here is secret)."""
        return [f"{a}:{p}={h}:{q}" for (a, p), (h, q) in sorted(self.routes.items())]


def _host_port(text: str, entry: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise EndpointMapError(f"{entry!r}: {text!r} must be [ipv6]:port")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise EndpointMapError(f"{entry!r}: {text!r} needs a :port")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise EndpointMapError(f"{entry!r}: port {port!r} must be a number from 1 to 65535")
    host = host.lower().rstrip(".")
    if not _valid_host(host):
        raise EndpointMapError(f"{entry!r}: {host!r} is not a host name or an IP address")
    return host, int(port)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.split(".")
    return 0 < len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
