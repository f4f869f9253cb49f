"""`python -m connector.bench.agent_no_sweeper`: `connector run` exactly, minus the expiry sweeper.

The sync benchmark times one sync. A real agent's sweeper does a full scan of every observed integration
60 s after it first sees one (every account x region x cluster x entry, and every account's IAM roles), so
on a large organisation it would run alongside the sync and mix its calls into the counted call graph. The
sweeper's own cost is a separate question (docs/performance.md).
"""

from __future__ import annotations

import sys

from connector.agent import main as agent_main
from connector.agent.events import Sweeper
from connector.config import AgentConfig
from connector.jobs.dispatcher import Dispatcher


def _no_sweeper(config: AgentConfig, dispatcher: Dispatcher) -> Sweeper | None:
    return None


if __name__ == "__main__":
    agent_main._build_sweeper = _no_sweeper
    raise SystemExit(agent_main.main(sys.argv[1:]))
