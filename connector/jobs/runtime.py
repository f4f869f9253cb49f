"""Build the job-execution side of the connector from the agent's config (called once at start-up)."""

from __future__ import annotations

from connector.config import AgentConfig, ConfigError
from connector.integrations.base import Services
from connector.jobs.dispatcher import Dispatcher
from connector.jobs.guardrails import GuardrailError, load_guardrails
from connector.jobs.registry import build_registry
from connector.jobs.signing import build_verifier
from connector.logging import get_logger

log = get_logger("connector.jobs")


def build_dispatcher(config: AgentConfig) -> Dispatcher:
    """Raises ConfigError (naming the variable) when the guardrail file or a pinned job-signing key is
    invalid: fail at start-up."""
    try:
        guardrails = load_guardrails(config.guardrails_file)
    except GuardrailError as exc:
        raise ConfigError(str(exc)) from None
    verify = build_verifier(config.job_signing_keys)  # None (and a warning) when no key is pinned
    log.info(
        "guardrails_policy",
        source="default" if guardrails.source == "default" else str(config.guardrails_file),
        max_duration=guardrails.max_duration,
        allow_cluster_admin=guardrails.allow_cluster_admin,
    )
    services = Services(connector_id=config.id, guardrails=guardrails, database_endpoints=config.endpoint_map)
    if services.database_endpoints:
        log.info("database_endpoints", routes=services.database_endpoints.describe())
    return Dispatcher(build_registry(), services, verify=verify)
