"""Summaries, target checks and the PNG chart of the benchmark results."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def summary(name: str, r: dict[str, Any]) -> list[str]:
    if name == "sync":
        b = r["bounds"]
        return (
            [
                f"wall {r['wall_seconds']} s for {r['organisation']['accounts']} accounts, "
                f"{r['organisation']['clusters']} clusters, {r['inventory_items']} items",
                f"bounds: limits {b['limits_seconds']} s (ratio {r['ratio_to_limits_bound']}), design "
                f"{b['design_seconds']} s (ratio {r['ratio_to_design_bound']}); {b['total_calls']} AWS calls",
                f"sandbox capacity {r['sandbox_capacity']['calls_per_second']} DescribeCluster calls/s at zero latency "
                f"({r['sandbox_capacity']['sandbox_cpu_ms_per_call']} ms CPU/call, its dearest call; the sync's mix: "
                f"{r.get('cpu_ms_per_aws_call', {}).get('sandbox', '?')} ms)",
                f"CPU s: {r['cpu_seconds']}; agent RSS idle {r['agent_idle_before_sync_mb']} MB, peak {r['agent_peak_rss_mb']} MB",
            ]
            + _sync_machine_lines(r)
            + (
                [
                    f"busiest: {r['bottleneck']} (busy share of wall {r['busy_share_of_wall']}; CPU ms per AWS call "
                    f"{r['cpu_ms_per_aws_call']})"
                ]
                if "bottleneck" in r
                else []
            )
        )
    if name == "databases":
        return [
            f"one tagged RDS instance with {r['tables']} tables (medians of {r['repeats']}): its scope task "
            f"{r['database_scope_ms_median']} ms, the engine's own inventory {r['engine_inventory_ms_median']} ms, "
            f"discovery adds {r['discovery_overhead_ms']} ms; whole organisation sync {r['sync_ms_median']} ms; "
            f"load average {r['load_avg_1m']}",
            *(
                f"{a} ({r['grants']}): wall p50 {r[a]['wall_ms']['p50']} ms, SQL {r[a]['sql_ms']['p50']} ms in "
                f"{r[a]['sql_round_trips']} round trips, AWS {r[a]['aws_ms']['p50']} ms in {r[a]['aws_calls']} calls, "
                f"overhead p50 {r[a]['overhead_ms']['p50']} ms p99 {r[a]['overhead_ms']['p99']} ms"
                for a in ("grant", "revoke")
                if a in r
            ),
        ]
    if name == "dispatch":
        lines = []
        for run in r["loads"]:
            lines.append(
                f"{run['replicas']} replica(s) @ {run['offered_per_second']}/s offered: achieved "
                f"{run['completed_per_second']}/s, start latency p50 {run['p50_ms']} ms p99 {run['p99_ms']} ms"
            )
        for drain in r["drain"]:
            lines.append(
                f"drain {drain['jobs']} queued jobs, {drain['replicas']} replica(s): {drain['jobs_per_second']} jobs/s"
            )
        return lines
    if name == "grant":
        return [
            f"{r['grants']} EKS grants at zero latency: {r['aws_calls_per_grant']} AWS calls each; sandbox "
            f"{r['sandbox_ms_per_grant']['p50']} ms, agent job {r['agent_ms_per_grant']['p50']} ms, "
            f"end to end {r['e2e_ms_per_grant']['p50']} ms (p50)",
            f"connector overhead per grant (agent job - sandbox): p50 {r['overhead_ms']['p50']} ms, "
            f"p99 {r['overhead_ms']['p99']} ms; end to end - sandbox p50 {r['e2e_overhead_ms']['p50']} ms",
        ]
    if name == "sync_sweep":
        return [
            f"{r['organisation']['accounts']} accounts, max_parallelism {p['max_parallelism']}: wall {p['wall_seconds']} s, "
            f"bound {p['limits_seconds']} s (ratio {p['ratio_to_limits_bound']}); agent busy "
            f"{p['busy_share_of_wall']['agent']} of wall at {p['cpu_ms_per_aws_call']['agent']} ms CPU per AWS call"
            for p in r["points"]
        ]
    if name == "discovery":
        lines = []
        for run in r["runs"]:
            org = run["organisation"]
            lines.append(
                f"{org['accounts']} accounts x {len(org['regions'])} regions, {run['service_apis']['items']} items "
                f"(same in all runs: {run['same_inventory']}), load average {run['load_average']}"
            )
            for label in ("service_apis", "resource_explorer_cold", "resource_explorer_warm"):
                x = run[label]
                lines.append(
                    f"  {label}: {x['wall_seconds']} s, {x['aws_calls']} AWS calls ({x['calls_throttled']} throttled)"
                )
        return lines
    if name == "sync_split":
        lines = [
            f"{run['replicas']} replica(s), {run['children']} children of {r['accounts_per_job']} accounts: discovery "
            f"{run['discovery_seconds']} s, children {run['children_seconds']} s, wall {run['wall_seconds']} s; CPU s "
            f"{run['cpu_seconds']}, {run.get('aws_calls', '?')} AWS calls (load {run['load_avg_1m']}); bounds: "
            f"the machine (discovery + all CPU-s / {r.get('cores', '?')} cores) {run.get('machine_cpu_bound_seconds', '?')} s, "
            f"one agent process {run.get('agent_process_seconds', '?')} s, latency {run.get('latency_bound_seconds', '?')} s; "
            f"free-core estimate {run.get('free_core_estimate_seconds', '?')} s"
            for run in r["runs"]
        ]
        return [
            *lines,
            f"two replicas / one, measured here: {r['two_replicas_vs_one']} (this machine's floor for it: "
            f"{r.get('two_replicas_machine_floor', '?')}, the sandbox shares the cores)",
            f"two replicas / one, a free core per replica and no sandbox CPU (estimate): "
            f"{r.get('two_replicas_vs_one_free_cores', '?')} with each replica's CPU-s as measured, "
            f"{r.get('two_replicas_vs_one_free_cores_normalised', '?')} at the one-replica run's CPU per call (target <= 0.6)",
        ]
    if name == "memory":
        return [f"agent idle RSS {r['idle_rss_mb']} MB; peak through the sync {r.get('sync_peak_rss_mb')} MB"]
    return []


def _sync_machine_lines(r: dict[str, Any]) -> list[str]:
    if "botocore_floor" not in r:
        return []
    b, f = r["bounds"], r["botocore_floor"]
    lines = [
        f"agent CPU per AWS call {r['agent_cpu_ms_per_call']} ms; botocore's floor {f['cpu_ms_per_call']} ms at "
        f"{f['threads']} threads (same run, mean of before {f.get('before', f)['cpu_ms_per_call']} and after "
        f"{f.get('after', f)['cpu_ms_per_call']}, load {f['load_avg_1m']}): ratio {r['agent_cpu_per_call_vs_floor']} "
        "(target <= 1.3)",
        f"CPU bound (agent + sandbox CPU-s / {b['cores']} cores) {b['cpu_seconds']} s; limits bound "
        f"{b['limits_seconds']} s; ratio to the larger ({b['larger_is']}) {r['ratio_to_larger_bound']} (target <= 1.25)",
        f"the agent's one process (its CPU-s on at most one core) {b.get('agent_process_seconds', '?')} s",
    ]
    ic = b.get("identity_center")
    if ic:
        lines.append(
            f"Identity Center: {ic['calls']} sso-admin calls, rate-limit bound {ic['bound_seconds']} s, its part of the "
            f"sync {ic.get('seconds', '?')} s: ratio {ic.get('ratio', '?')} (target <= 1.2)"
        )
    return lines


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(name: str, figure: Any, target: str, met: bool) -> None:
        targets.append({"name": name, "figure": figure, "target": target, "met": bool(met)})

    sync = results.get("sync")
    if sync and "wall_seconds" in sync:
        add(
            "sync ratio to lower bound",
            sync["ratio_to_limits_bound"],
            "<= 1.25",
            (sync["ratio_to_limits_bound"] or 99) <= 1.25,
        )
        if "agent_cpu_per_call_vs_floor" in sync:
            ratio = sync["agent_cpu_per_call_vs_floor"] or 99
            add("agent CPU per AWS call / botocore's floor (same run, same concurrency)", ratio, "<= 1.3", ratio <= 1.3)
            larger = sync["ratio_to_larger_bound"] or 99
            add("sync ratio to the larger of limits and CPU bounds", larger, "<= 1.25", larger <= 1.25)
        ic = sync.get("bounds", {}).get("identity_center")
        if ic and ic.get("ratio") is not None:
            add("Identity Center part of the sync / its rate-limit bound", ic["ratio"], "<= 1.2", ic["ratio"] <= 1.2)
        if sync["size"] == "full":
            add("sync wall time (1,000 accounts)", f"{sync['wall_seconds']} s", "<= 150 s", sync["wall_seconds"] <= 150)
    split = results.get("sync_split")
    if split and "two_replicas_vs_one_free_cores" in split:
        ratio = split["two_replicas_vs_one_free_cores"]
        add(
            "split sync, two replicas' wall / one replica's with a free core each (estimate from the run's CPU-s; "
            f"measured on this machine: {split['two_replicas_vs_one']}, its floor {split['two_replicas_machine_floor']})",
            ratio,
            "<= 0.6",
            ratio <= 0.6,
        )
    dispatch = results.get("dispatch")
    if dispatch and "loads" in dispatch:
        at200 = [x for x in dispatch["loads"] if x["offered_per_second"] == 200]
        for run in at200:
            add(
                f"dispatch p99 at 200/s, {run['replicas']} replica(s)",
                f"{run['p99_ms']} ms",
                "<= 25 ms",
                run["p99_ms"] <= 25,
            )
        best = max((d["jobs_per_second"] for d in dispatch["drain"] if d["replicas"] == 1), default=0)
        add("no-op jobs/s, one connector", best, ">= 1000", best >= 1000)
    grant = results.get("grant")
    if grant and "overhead_ms" in grant:
        add(
            "grant overhead beyond AWS calls (p50)",
            f"{grant['overhead_ms']['p50']} ms",
            "<= 10 ms",
            grant["overhead_ms"]["p50"] <= 10,
        )
    memory = results.get("memory")
    if memory and "idle_rss_mb" in memory:
        add("agent idle RSS", f"{memory['idle_rss_mb']} MB", "<= 80 MB", memory["idle_rss_mb"] <= 80)
        if memory.get("sync_peak_rss_mb") is not None and memory.get("sync_size") == "full":
            add(
                "agent peak RSS through the 1,000-account sync",
                f"{memory['sync_peak_rss_mb']} MB",
                "<= 200 MB",
                memory["sync_peak_rss_mb"] <= 200,
            )
    return targets


def chart(results: dict[str, Any], path: Path) -> Path | None:
    """Five panels: sync vs its bounds, the split sync, dispatch latency vs load, grant time split, memory. None
    without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(2, 3, figsize=(17, 8))
    ax = axes[0][0]
    sync = results.get("sync", {})
    if "bounds" in sync:
        b = sync["bounds"]
        labels = ["measured\nwall", "bound:\nlimits", "bound:\ndesign", "bound:\nCPU", "sandbox\nCPU-s", "agent\nCPU-s"]
        values = [
            sync["wall_seconds"],
            b["limits_seconds"],
            b["design_seconds"],
            b.get("cpu_seconds", 0),
            sync["cpu_seconds"]["sandbox"],
            sync["cpu_seconds"]["agent"],
        ]
        colors = ["tab:blue", "tab:green", "tab:olive", "tab:cyan", "tab:gray", "tab:purple"]
        ax.bar(labels, values, color=colors)
        ax.axhline(1.25 * b.get("larger_seconds", b["limits_seconds"]), color="red", linewidth=0.8)
        ax.set_ylabel("seconds")
        ax.tick_params(axis="x", labelsize=8)
        org = sync["organisation"]
        ax.set_title(
            f"org sync: {org['accounts']} accounts, {org['clusters']} clusters, "
            f"{sync['settings']['latency_ms']:.0f} ms/call"
        )
    ax = axes[0][2]
    split = results.get("sync_split", {})
    if "runs" in split:
        one, two = split["runs"]
        labels = ["wall", "machine\nbound", "free-core\nestimate"]
        keys = ("wall_seconds", "machine_cpu_bound_seconds", "free_core_estimate_seconds")
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], [one.get(k, 0) for k in keys], width=0.4, label="one replica")
        ax.bar([i + 0.2 for i in x], [two.get(k, 0) for k in keys], width=0.4, label="two replicas")
        ax.set_xticks(list(x), labels, fontsize=8)
        ax.set_ylabel("seconds")
        ax.legend(fontsize=7)
        ax.set_title(
            f"split sync: two / one {split['two_replicas_vs_one']} here, "
            f"{split.get('two_replicas_vs_one_free_cores', '?')} with a core each"
        )
    ax = axes[0][1]
    dispatch = results.get("dispatch", {})
    for replicas in sorted({x["replicas"] for x in dispatch.get("loads", [])}):
        runs = [x for x in dispatch["loads"] if x["replicas"] == replicas]
        offered = [x["offered_per_second"] for x in runs]
        ax.plot(offered, [x["p50_ms"] for x in runs], marker="o", label=f"p50, {replicas} replica(s)")
        ax.plot(offered, [x["p99_ms"] for x in runs], marker="x", linestyle="--", label=f"p99, {replicas} replica(s)")
    if dispatch.get("loads"):
        ax.axhline(25, color="red", linewidth=0.8, label="p99 target 25 ms")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered no-op jobs/s")
        ax.set_ylabel("enqueue -> executor start (ms)")
        ax.legend(fontsize=7)
        ax.set_title("dispatch latency")
    ax = axes[1][0]
    grant = results.get("grant", {})
    if "overhead_ms" in grant:
        ax.bar(
            ["sandbox (AWS calls)", "connector overhead", "end-to-end extra"],
            [grant["sandbox_ms_per_grant"]["p50"], grant["overhead_ms"]["p50"], grant["e2e_overhead_ms"]["p50"]],
            color=["tab:gray", "tab:blue", "tab:orange"],
        )
        ax.axhline(10, color="red", linewidth=0.8)
        ax.set_ylabel("ms per grant (p50)")
        ax.set_title(f"EKS grant, zero latency ({grant['aws_calls_per_grant']} AWS calls)")
    axes[1][2].axis("off")
    ax = axes[1][1]
    memory = results.get("memory", {})
    if "idle_rss_mb" in memory:
        ax.bar(
            ["idle", "peak through sync"],
            [memory["idle_rss_mb"], memory.get("sync_peak_rss_mb") or 0],
            color=["tab:blue", "tab:purple"],
        )
        ax.axhline(80, color="red", linewidth=0.8, linestyle="--")
        ax.axhline(200, color="red", linewidth=0.8)
        ax.set_ylabel("agent RSS (MB)")
        ax.set_title(f"agent memory ({memory.get('sync_size', '')} sync)")
    fig.suptitle(
        f"connector bench ({results.get('size')}) on {results['machine']['cpus']} CPUs, {results.get('started')}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def markdown(results: dict[str, Any]) -> str:
    """The figures as a Markdown section (OUT/summary.md; docs/performance.md quotes the latest full run)."""
    m = results["machine"]
    lines = [
        f"Run {results.get('started')} ({results.get('size')}): {m['cpus']} CPUs ({m['cpu_model']}), "
        f"{m['memory_gb']} GB, Python {m['python']}, 1-minute load average {m['load_avg_1m']} at the start.",
        "",
        "| target | figure | met |",
        "|---|---|---|",
    ]
    lines += [
        f"| {t['name']}: {t['target']} | {t['figure']} | {'yes' if t['met'] else 'no'} |" for t in results["targets"]
    ]
    for name in ("sync", "dispatch", "grant", "memory", "sync_sweep", "discovery", "sync_split"):
        if name in results and "error" not in results[name]:
            lines += ["", f"**{name}**", ""] + [f"- {line}" for line in summary(name, results[name])]
    return "\n".join(lines) + "\n"
