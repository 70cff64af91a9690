"""Benchmark: what checking the contract on what is sent costs, side by side.

``python -m benchmarks.contract_bench --rows 10000000`` runs lakeseg's sync of
the bench segment (``benchmarks.sync_bench``: an Id and 4 attribute columns,
one a metric, 5% churn against the previous snapshot; ``prepare`` plus the
import files) with the value rules checked in the pass that reads the segment
(as every sync does) and without them (``value_rules`` replaced by no rules),
interleaved, each run in a process of its own. Reported per variant: the best
wall time, the median CPU time (user + system) of the sync step, and the
difference per row.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import sync_bench


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(variant: str, work: Path) -> dict:
    import sync.run.diff as diff

    if variant == "unchecked":
        diff.value_rules = lambda segment, tests: []
    con = sync_bench._lakeseg_connection(work)
    c0, t0 = _cpu(), time.perf_counter()
    plan, files = sync_bench.lakeseg_sync(con, work, work / f"out-{variant}")
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": _cpu() - c0,
        "to_send": plan.to_send,
        "rules": len(diff.value_rules(sync_bench._segment(), [])),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--work", type=Path, default=None, help="default: build/bench-contract-<rows>")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", choices=["checked", "unchecked"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    work = args.work or Path(f"build/bench-contract-{args.rows}")
    if args.child:
        print(json.dumps(run(args.child, work)))
        return 0
    sync_bench.setup(work, args.rows)
    results: dict[str, list[dict]] = {"checked": [], "unchecked": []}
    for _ in range(args.repeat):
        for variant in results:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.contract_bench", "--child", variant, "--work", str(work)],
                capture_output=True,
                text=True,
                check=True,
            )
            results[variant].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    summary = {}
    for variant, runs in results.items():
        summary[variant] = {
            "best_seconds": round(min(r["seconds"] for r in runs), 3),
            "median_cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in runs), 3),
            "to_send": runs[0]["to_send"],
            "rules": runs[0]["rules"],
        }
        print(
            f"{variant:>9}: best {summary[variant]['best_seconds']:.2f} s wall, median "
            f"{summary[variant]['median_cpu_seconds']:.2f} s CPU, {runs[0]['rules']} rule(s), "
            f"{runs[0]['to_send']:,} rows to send  (runs: "
            + ", ".join(f"{r['seconds']:.2f}/{r['cpu_seconds']:.2f}" for r in runs)
            + ")"
        )
    extra_cpu = summary["checked"]["median_cpu_seconds"] - summary["unchecked"]["median_cpu_seconds"]
    extra_wall = summary["checked"]["best_seconds"] - summary["unchecked"]["best_seconds"]
    print(
        f"the check costs {extra_cpu:+.2f} s CPU ({extra_cpu / args.rows * 1e9:+.0f} ns per row) and "
        f"{extra_wall:+.2f} s wall at {args.rows:,} rows"
    )
    print(json.dumps({"rows": args.rows, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
