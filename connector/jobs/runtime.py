"""Build the job-execution side of the connector from the agent's config (called once at start-up)."""

from __future__ import annotations

from connector.config import AgentConfig
from connector.integrations.base import Services
from connector.jobs.dispatcher import Dispatcher
from connector.jobs.registry import build_registry


def build_dispatcher(config: AgentConfig) -> Dispatcher:
    services = Services(connector_id=config.id)
    return Dispatcher(build_registry(), services)
