"""Settings of the reference control plane, validated once before the server starts.

Plaintext gRPC is allowed only when the bind host is a loopback address; anything else needs
`tls_cert_file` and `tls_key_file` (the CLI flags --tls-cert / --tls-key).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# The protocol's message limit: what a connector receives (connector.agent.channel.MAX_RECEIVE_BYTES, which
# this layer may not import). A PollJobs answer must fit it whatever this server's own max_message_bytes is.
CONNECTOR_MAX_RECEIVE_BYTES = 4 * 1024 * 1024
# A PollJobs answer's body is counted exactly (each job's bytes, field tag and length varint; see
# store.delivered_size), so this covers only what lies outside that count: gRPC's 5-byte message prefix and
# any field a later PollJobsResponse may add. 16 KiB is 0.4% of the 4 MiB limit.
POLL_RESPONSE_HEADROOM = 16 * 1024


class SettingsError(ValueError):
    """A setting is wrong; the message names it (and the CLI flag that sets it)."""


def split_host_port(bind: str) -> tuple[str, int]:
    """'127.0.0.1:50051' / '[::1]:0' / 'localhost:0' -> (host, port)."""
    host, sep, port_text = bind.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise SettingsError(f"bind (--bind): expected HOST:PORT, e.g. 127.0.0.1:50051, got {bind!r}")
    return host.strip("[]"), int(port_text)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSettings:
    bind: str = "127.0.0.1:50051"
    db_path: str = "controlplane.sqlite"
    # connector id -> token. Only SHA-256 hashes are kept (in memory and in the db); never logged.
    connector_tokens: dict[str, str] = field(default_factory=dict, repr=False)
    admin_token: str = field(default="", repr=False)
    lease_seconds: float = 30.0
    heartbeat_interval: float = 5.0
    poll_wait: float = 20.0
    max_attempts: int = 5
    tls_cert_file: str | Path | None = None
    tls_key_file: str | Path | None = None
    # mTLS: when set, every client (connectors and operators) must present a certificate issued by this CA.
    tls_client_ca_file: str | Path | None = None
    # Ed25519 key that signs every job at enqueue (raw 32-byte seed or PKCS#8 PEM); None = jobs unsigned.
    job_signing_key_file: str | Path | None = None
    # Delay before a retryable failure is offered again.
    retry_backoff: float = 2.0
    # Job timeout when EnqueueJobRequest.timeout is unset (deadline = created + timeout).
    default_job_timeout: float = 900.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def poll_budget_bytes(self) -> int:
        """The most one PollJobs answer may carry (jobs with their framing); also the largest job enqueue takes."""
        return min(self.max_message_bytes, CONNECTOR_MAX_RECEIVE_BYTES) - POLL_RESPONSE_HEADROOM

    def validate(self) -> None:
        host, _ = split_host_port(self.bind)
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise SettingsError("TLS: set both --tls-cert and --tls-key (tls_cert_file and tls_key_file), or neither")
        if not self.tls and not is_loopback_host(host):
            raise SettingsError(
                f"refusing plaintext gRPC on non-loopback bind {self.bind!r}: pass --tls-cert and --tls-key "
                "(tls_cert_file / tls_key_file), or bind to 127.0.0.1"
            )
        if self.tls_client_ca_file is not None and not self.tls:
            raise SettingsError("--tls-client-ca (tls_client_ca_file) needs TLS: pass --tls-cert and --tls-key too")
        for name, path in (
            ("--tls-cert", self.tls_cert_file),
            ("--tls-key", self.tls_key_file),
            ("--tls-client-ca", self.tls_client_ca_file),
            ("--job-signing-key", self.job_signing_key_file),
        ):
            if path is not None and not Path(path).is_file():
                raise SettingsError(f"{name}: no readable file at {path}")
        if not self.admin_token:
            raise SettingsError("admin token: set --admin-token-file or CONTROLPLANE_ADMIN_TOKEN_FILE (admin_token)")
        for connector_id, token in self.connector_tokens.items():
            if not connector_id or not token:
                raise SettingsError("connector tokens (--connector-token ID=FILE): id and token must be non-empty")
        checks = (
            ("lease_seconds (--lease-seconds)", self.lease_seconds, 1.0, 3600.0),
            ("heartbeat_interval (--heartbeat-interval)", self.heartbeat_interval, 0.1, 60.0),
            ("poll_wait (--poll-wait)", self.poll_wait, 0.1, 60.0),
            ("retry_backoff (--retry-backoff)", self.retry_backoff, 0.0, 3600.0),
            ("default_job_timeout", self.default_job_timeout, 1.0, 7 * 86400.0),
        )
        for name, value, low, high in checks:
            if not low <= value <= high:
                raise SettingsError(f"{name}: must be between {low:g} and {high:g} seconds, got {value:g}")
        if self.heartbeat_interval >= self.lease_seconds:
            raise SettingsError("heartbeat_interval (--heartbeat-interval) must be shorter than --lease-seconds")
        if not 1 <= self.max_attempts <= 100:
            raise SettingsError(f"max_attempts (--max-attempts): must be between 1 and 100, got {self.max_attempts}")
        if not 64 * 1024 <= self.max_message_bytes <= 64 * 1024 * 1024:
            raise SettingsError("max_message_bytes: must be between 64 KiB and 64 MiB")
