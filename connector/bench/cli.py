"""`connector bench [sync|dispatch|grant|memory|all|sync_sweep|sync_split|databases|discovery] [--size smoke|medium|full]
[--out DIR]`.

`all` runs the five benchmarks with targets (`sync_split`: the sync's organisation as a split sync with one agent
replica, then two); `sync_sweep` (run on its own) syncs a 100-account organisation at max_parallelism 8, 16, 32
and 64 to show where the sync stops following its bound; `databases` (on its own, needs
PostgreSQL server binaries) times the discovery of a tagged RDS instance holding 1,000 tables; `discovery` (on
its own) compares S3 / SNS / SQS discovery with and without Resource Explorer (full: 100 and 1,000 accounts).

Writes DIR/<bench>.json for each benchmark run, DIR/results.json (all of them, plus the machine and the
targets), DIR/summary.md and DIR/benchmarks.png; prints a summary with each figure next to its target.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from connector.bench import report
from connector.bench.procs import BenchError, machine

BENCHES = ("sync", "sync_split", "dispatch", "grant", "memory")
# Not part of `all` (databases needs PostgreSQL server binaries).
EXTRAS = ("sync_sweep", "databases", "discovery")


def _runner(name: str) -> Callable[[str, Path], dict[str, Any]]:
    if name == "sync":
        from connector.bench import sync

        return sync.run
    if name == "sync_sweep":
        from connector.bench import sync

        return sync.sweep
    if name == "databases":
        from connector.bench import databases

        return databases.run
    if name == "discovery":
        from connector.bench import discovery

        return discovery.run
    if name == "sync_split":
        from connector.bench import split

        return split.run
    if name == "dispatch":
        from connector.bench import dispatch

        return dispatch.run
    if name == "grant":
        from connector.bench import grant

        return grant.run
    from connector.bench import memory

    return memory.run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connector bench",
        description="Benchmarks through the real path: sandbox, control plane and agent as separate processes.",
    )
    parser.add_argument("bench", nargs="?", default="all", choices=(*BENCHES, "all", *EXTRAS))
    parser.add_argument(
        "--size",
        default="full",
        choices=("smoke", "medium", "full"),
        help="smoke: seconds, for CI; medium: 150 accounts (sync only)",
    )
    parser.add_argument("--out", default="bench-results", help="directory for JSON, logs and the PNG chart")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = BENCHES if args.bench == "all" else (args.bench,)
    results: dict[str, Any] = {
        "machine": machine(),
        "size": args.size,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    previous = out / "results.json"
    if previous.is_file() and args.bench != "all":  # one bench re-run: keep the others' latest figures
        try:
            old = json.loads(previous.read_text())
            if old.get("size") == args.size:
                results = {**{k: v for k, v in old.items() if k in BENCHES + EXTRAS}, **results}
        except ValueError:
            pass
    status = 0
    for name in names:
        print(f"== {name} ({args.size})", flush=True)
        started = time.perf_counter()
        try:
            figures = _runner(name)(args.size, out / "work" / name)
        except BenchError as exc:
            print(f"connector bench {name}: {exc}", file=sys.stderr)
            results[name] = {"error": str(exc)}
            status = 1
            continue
        figures["bench_seconds"] = round(time.perf_counter() - started, 1)
        results[name] = figures
        (out / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True))
        for line in report.summary(name, figures):
            print("  " + line, flush=True)
    results["targets"] = report.check_targets(results)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    (out / "summary.md").write_text(report.markdown(results))
    png = report.chart(results, out / "benchmarks.png")
    print(f"results: {out / 'results.json'}" + (f"; chart: {png}" if png else " (no chart: install the bench extra)"))
    for target in results["targets"]:
        print(
            f"  [{'met' if target['met'] else 'MISSED'}] {target['name']}: {target['figure']} (target {target['target']})"
        )
    return status
