"""Agent configuration: environment variables (12-factor), optionally a TOML file with the same keys.

This module is the one source of truth for the variable names: the ECS task definition, the
CloudFormation template and the Helm chart are checked against `ENV_VARS` by tests. Validation happens
at start-up and every message names the variable to fix. Secrets (the token) are SecretStr: they never
appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.integrations.endpoints import EndpointMap, EndpointMapError

ENV_PREFIX = "CONNECTOR_"


class ConfigError(Exception):
    """Start-up configuration is invalid. The message names each variable and what to fix."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AgentConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    id: str = Field(description="Connector id the control plane knows this connector by (CONNECTOR_ID).")
    control_plane_url: str = Field(
        validation_alias="CONTROL_PLANE_URL",
        description="https://host:port of the control plane; http:// only to a loopback address with "
        "CONNECTOR_ALLOW_INSECURE_LOOPBACK=true.",
    )
    token: SecretStr | None = Field(default=None, description="Bearer token (prefer CONNECTOR_TOKEN_FILE).")
    token_file: Path | None = Field(default=None, description="File holding the bearer token.")
    allow_insecure_loopback: bool = Field(default=False, description="Permit plaintext http:// to loopback.")
    tls_ca_file: Path | None = Field(
        default=None, description="CA bundle to verify the control plane (default: system roots)."
    )
    tls_client_cert_file: Path | None = Field(default=None, description="Client certificate for mTLS.")
    tls_client_key_file: Path | None = Field(default=None, description="Client key for mTLS.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Jobs run at once by this replica.")
    health_addr: str = Field(default="127.0.0.1:8080", description="host:port of /healthz, /readyz, /metrics.")
    drain_grace_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="On SIGTERM, how long running jobs may take to finish."
    )
    host_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}", description="Replica id.")
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    log_format: str = Field(default="auto", description="json, console, or auto (console on a TTY).")
    guardrails_file: Path | None = Field(default=None, description="Customer policy file enforced on every grant.")
    job_signing_keys: str = Field(
        default="", description="Comma-separated base64 Ed25519 public keys that jobs must be signed with."
    )
    state_dir: Path | None = Field(default=None, description="Writable directory for local state (optional).")
    expiry_sweep_seconds: float = Field(
        default=60.0, ge=1, le=3600, description="How often expired grants are looked for and revoked."
    )
    database_endpoints: str = Field(
        default="",
        description="Where to reach database endpoints AWS reports, when not at that address (a proxy, "
        "PrivateLink, a tunnel): comma-separated address:port=host:port.",
    )

    @field_validator("control_plane_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must look like https://host:port (or http://127.0.0.1:port for local testing)")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        return value

    @field_validator("database_endpoints")
    @classmethod
    def _endpoints(cls, value: str) -> str:
        try:
            EndpointMap.parse(value)
        except EndpointMapError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("must be one of debug, info, warning, error")
        return value.lower()

    @field_validator("log_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value.lower() not in ("auto", "json", "console"):
            raise ValueError("must be one of auto, json, console")
        return value.lower()

    @field_validator("health_addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port, e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> AgentConfig:
        parts = urlsplit(self.control_plane_url)
        if parts.scheme == "http":
            if not is_loopback(parts.hostname or ""):
                raise ValueError(
                    "CONTROL_PLANE_URL: plaintext http:// is only allowed to a loopback address; use https://"
                )
            if not self.allow_insecure_loopback:
                raise ValueError(
                    "CONTROL_PLANE_URL: http:// needs CONNECTOR_ALLOW_INSECURE_LOOPBACK=true (local testing only)"
                )
        if (self.token is None) == (self.token_file is None):
            raise ValueError("CONNECTOR_TOKEN / CONNECTOR_TOKEN_FILE: set exactly one of them")
        if self.token_file is not None and not self.token_file.is_file():
            raise ValueError(f"CONNECTOR_TOKEN_FILE: no readable file at {self.token_file}")
        if (self.tls_client_cert_file is None) != (self.tls_client_key_file is None):
            raise ValueError(
                "CONNECTOR_TLS_CLIENT_CERT_FILE / CONNECTOR_TLS_CLIENT_KEY_FILE: set both for mTLS, or neither"
            )
        if self.state_dir is not None and not (self.state_dir.is_dir() and os.access(self.state_dir, os.W_OK)):
            raise ValueError(f"CONNECTOR_STATE_DIR: {self.state_dir} is not a writable directory")
        for name, path in (
            ("CONNECTOR_TLS_CA_FILE", self.tls_ca_file),
            ("CONNECTOR_TLS_CLIENT_CERT_FILE", self.tls_client_cert_file),
            ("CONNECTOR_TLS_CLIENT_KEY_FILE", self.tls_client_key_file),
            ("CONNECTOR_GUARDRAILS_FILE", self.guardrails_file),
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no readable file at {path}")
        for name, path in (
            ("CONNECTOR_TOKEN_FILE", self.token_file),
            ("CONNECTOR_TLS_CLIENT_KEY_FILE", self.tls_client_key_file),
        ):
            if path is not None:
                _refuse_world_readable(name, path)
        return self

    @property
    def plaintext(self) -> bool:
        return urlsplit(self.control_plane_url).scheme == "http"

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.control_plane_url)
        return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def target(self) -> str:
        """host:port for grpc.aio channels."""
        host, port = self.host_port
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def endpoint_map(self) -> EndpointMap:
        return EndpointMap.parse(self.database_endpoints)

    def read_token(self) -> str:
        """The bearer token, read fresh from the file each time (so a rotated Secret is picked up)."""
        if self.token is not None:
            value = self.token.get_secret_value()
        else:
            assert self.token_file is not None
            value = self.token_file.read_text(encoding="utf-8")
        value = value.strip()
        if not value:
            raise ConfigError("CONNECTOR_TOKEN / CONNECTOR_TOKEN_FILE: the token is empty")
        return value


def _refuse_world_readable(name: str, path: Path) -> None:
    """A secret file any local user can read is refused. Group-readable stays allowed: the Helm chart mounts the
    token with defaultMode 0440 and an fsGroup. os.stat follows symlinks, so a Kubernetes Secret volume (a
    symlink into ..data/) is judged by the file it points to."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & stat.S_IROTH:
        raise ValueError(
            f"{name}: {path} is readable by every user (mode {mode:04o}); "
            f"run `chmod 600 {path}` (or `chmod 640` for a group that must read it)"
        )


def _env_name(field_name: str) -> str:
    info = AgentConfig.model_fields[field_name]
    alias = info.validation_alias
    return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field_name.upper()}"


# Every environment variable `connector run` reads, with its description. The deploy tests check the
# task definition, the CloudFormation template and the Helm chart against this.
ENV_VARS: dict[str, str] = {
    _env_name(name): info.description or "" for name, info in AgentConfig.model_fields.items()
} | {"CONNECTOR_CONFIG_FILE": "Optional TOML file with the same keys; environment variables win."}
REQUIRED_ENV_VARS = ("CONNECTOR_ID", "CONTROL_PLANE_URL")


def _default_text(name: str) -> str:
    info = AgentConfig.model_fields[name]
    if _env_name(name) in REQUIRED_ENV_VARS:
        return "required"
    if info.default_factory is not None:
        return "hostname-pid" if name == "host_id" else "computed"
    if info.default is None or info.default == "":
        return "unset"
    value = info.default
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# The default of each variable, as `connector run --help` prints it (same keys as ENV_VARS).
ENV_DEFAULTS: dict[str, str] = {_env_name(name): _default_text(name) for name in AgentConfig.model_fields} | {
    "CONNECTOR_CONFIG_FILE": "unset"
}
# Not ours, but read by the agent's libraries: what an operator in a private network sets.
OTHER_ENV_VARS: dict[str, str] = {
    "HTTPS_PROXY / https_proxy / grpc_proxy": "proxy for the control plane (gRPC) and https:// AWS endpoints",
    "NO_PROXY / no_proxy": "hosts, domains, IPs and CIDR ranges that bypass the proxy",
    "AWS_REGION": "the connector's region (STS, VPC endpoints); ECS and EKS set it",
    "AWS_ENDPOINT_URL_<SERVICE>": "an endpoint per AWS service (e.g. AWS_ENDPOINT_URL_STS for a VPC endpoint)",
    "AWS_USE_FIPS_ENDPOINT": "true: FIPS endpoints for every AWS service",
    "AWS_STS_REGIONAL_ENDPOINTS": "regional (the default) or legacy",
    "OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_*": "OpenTelemetry traces (with the `otel` extra installed)",
}


def read_by_libraries(name: str) -> bool:
    """A variable a deployment may set for the libraries (proxies, botocore, OpenTelemetry), not in ENV_VARS."""
    return name in ("HTTPS_PROXY", "NO_PROXY", "https_proxy", "no_proxy", "grpc_proxy") or name.startswith(
        ("AWS_", "OTEL_")
    )


def env_help() -> str:
    """Every variable `connector run` reads, its default and meaning: the one ENV_VARS source, for --help."""
    width = max(len(name) for name in ENV_VARS)
    lines = ["environment (CONNECTOR_CONFIG_FILE may name a TOML file with the same keys; the environment wins):"]
    for name, description in ENV_VARS.items():
        lines.append(f"  {name.ljust(width)}  [{ENV_DEFAULTS[name]}] {description}")
    lines.append("also read (proxies, AWS endpoints, traces):")
    other = max(len(name) for name in OTHER_ENV_VARS)
    lines += [f"  {name.ljust(other)}  {text}" for name, text in OTHER_ENV_VARS.items()]
    return "\n".join(lines)


def load_config(environ: dict[str, str] | None = None) -> AgentConfig:
    """Build and validate the config. Raises ConfigError with one line per problem, naming variables."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    config_file = env.get("CONNECTOR_CONFIG_FILE")
    if config_file:
        try:
            data = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"CONNECTOR_CONFIG_FILE: cannot read {config_file}: {exc}") from None
        unknown = sorted(set(data) - set(ENV_VARS))
        if unknown:
            raise ConfigError(f"CONNECTOR_CONFIG_FILE: unknown keys {unknown}; use the environment variable names")
        values = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in data.items()}
    merged = values | {k: v for k, v in env.items() if k in ENV_VARS}
    kwargs: dict[str, Any] = {}
    for name in AgentConfig.model_fields:
        env_name = _env_name(name)
        if env_name in merged and merged[env_name] != "":
            kwargs[name if env_name.startswith(ENV_PREFIX) else env_name] = merged[env_name]
    try:
        return _build(kwargs)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _build(kwargs: dict[str, Any]) -> AgentConfig:
    # _env_file / env parsing is disabled: we pass every value explicitly so the file and env merge above
    # is the only source, and tests can pass an environment dict.
    return AgentConfig(_env_prefix="__NO_ENV__", **kwargs)


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = err.get("loc") or ()
        msg = str(err.get("msg", "invalid"))
        if loc:
            field_name = str(loc[0])
            env_name = _env_name(field_name) if field_name in AgentConfig.model_fields else field_name
            if err.get("type") == "missing":
                msg = "required but not set"
            lines.append(f"{env_name}: {msg}")
        else:
            lines.append(msg.removeprefix("Value error, "))
    return "invalid configuration:\n  " + "\n  ".join(lines)
