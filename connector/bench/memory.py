"""Benchmark 4: the agent's memory. Idle: RSS of `connector run` registered and polling, no job yet (after a
few seconds, median of samples). Through a sync: the agent's peak RSS (VmHWM) across benchmark 1 at the same
size, which must stay flat if inventory streams instead of accumulating."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from connector.bench import sync
from connector.bench.procs import AgentProcess, ControlPlaneProcess, rss_mb


def idle_rss(workdir: Path, seconds: float = 3.0) -> dict[str, Any]:
    cp = ControlPlaneProcess.start(workdir / "cp")
    try:
        agent = AgentProcess.start(cp, workdir / "agent-idle.log", concurrency=4)
        try:
            samples = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                samples.append(rss_mb(agent.proc.pid)["rss_mb"])
                time.sleep(0.25)
            return {
                "idle_rss_mb": statistics.median(samples),
                "idle_peak_rss_mb": rss_mb(agent.proc.pid)["peak_rss_mb"],
            }
        finally:
            agent.stop()
    finally:
        cp.stop()


def run(size_name: str, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"size": size_name, **idle_rss(workdir, 1.0 if size_name == "smoke" else 5.0)}
    # Reuse benchmark 1's figures when it just ran at this size (connector bench all), else run it.
    previous = workdir.parent.parent / "sync.json"
    result = json.loads(previous.read_text()) if previous.is_file() else None
    if result is None or result.get("size") != size_name:
        result = sync.run(size_name, workdir / "sync")
    figures.update(
        {
            "sync_size": size_name,
            "sync_accounts": result["organisation"]["accounts"],
            "sync_peak_rss_mb": result["agent_peak_rss_mb"],
            "sync_rss_samples": result["agent_rss_samples"],
            "sync_inventory_items": result["inventory_items"],
        }
    )
    return figures
