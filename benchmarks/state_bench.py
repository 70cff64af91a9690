"""Benchmark: state-store bytes written per run, a whole snapshot against a delta beside the base.

``python -m benchmarks.state_bench --rows 1000000`` (or ``BENCH_ROWS``). Uses
``sync_bench``'s segment and previous snapshot (5% churn: 2.5% entered, 2.5%
exited, 5% changed). Each variant runs in its own process: commit the previous
snapshot as the base (not counted), then -- counted -- load it, diff the
segment against it (``prepare``) and commit the new membership:

- ``full``:  ``max_deltas 0``: every commit writes the whole membership (before deltas);
- ``delta``: the defaults, as a sync commits: the delta derived from the
  diff's classification (``sync.run.diff.delta_to_commit``);
- ``delta-join``: the defaults, the store working the delta out itself by
  joining both memberships on their keys (what a commit without a derived
  delta does).

Prints bytes written to the state store during the counted run, the runner's
CPU seconds and peak RSS. The data is made in a process of its own and the
peak is the child's own high-water mark (``VmHWM``): ``ru_maxrss`` survives
fork and exec, so a child of a parent that had just built a 10M-row segment
reported the parent's 1.1 GB as its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.sync_bench import MEMORY_LIMIT, _key, _segment, setup

VARIANTS = ("full", "delta", "delta-join")


def peak_rss_mb() -> int:
    """This process's own peak resident memory (MB), since it started (``VmHWM``; ``ru_maxrss`` elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def count_writes(store) -> dict[str, int]:
    """Wrap the store's uploads and writes so ``["bytes"]`` of the returned dict counts what it stores."""
    written = {"bytes": 0}
    upload, write = store._upload, store._write

    def counted_upload(k, path):
        written["bytes"] += Path(path).stat().st_size
        upload(k, path)

    def counted_write(k, data):
        written["bytes"] += len(data)
        write(k, data)

    store._upload, store._write = counted_upload, counted_write
    return written


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _child(variant: str, work: Path) -> dict:
    import duckdb

    from sync.run.diff import configure, delta_to_commit, effective_mapping_hash, prepare, save_delta_rows
    from sync.state.deltas import Compaction
    from sync.state.local import LocalStateStore

    root = work / f"state-{variant}"
    shutil.rmtree(root, ignore_errors=True)
    store = LocalStateStore(root)
    store.compaction = Compaction(0.2, 0 if variant == "full" else 8)
    con = duckdb.connect()
    configure(con, MEMORY_LIMIT, work / "spill")
    con.execute(f"attach '{work / 'segment.duckdb'}' as seg (read_only)")
    seg, key = _segment(), _key()
    mapping_hash = effective_mapping_hash(con, seg, key.fingerprint)
    prev_rows = con.execute(f"select count(*) from read_parquet('{work / 'previous.parquet'}')").fetchall()[0][0]
    store.commit_snapshot(
        "files",
        "bench",
        work / "previous.parquet",
        fields=seg.fields,
        mapping_hash=mapping_hash,
        rows=prev_rows,
        run_id="base",
    )
    written = count_writes(store)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    previous = store.load_snapshot("files", "bench", work / f"load-{variant}")
    t_load, c_load = time.perf_counter(), _cpu()
    prepared = prepare(con, seg, "seg.main.segment", previous=previous, workdir=work / f"out-{variant}", digest_key=key)
    t_diff, c_diff = time.perf_counter(), _cpu()
    if variant == "delta":
        save_delta_rows(con, prepared)
    delta = delta_to_commit(con, prepared, frozenset())
    store.commit_snapshot(
        "files",
        "bench",
        prepared.new_snapshot,
        fields=seg.fields,
        mapping_hash=mapping_hash,
        rows=prepared.plan.rows,
        run_id="next",
        delta=delta,
    )
    t_commit = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    pointer = json.loads((root / "snapshots/files/bench/current.json").read_text())
    return {
        "variant": variant,
        "state_bytes_written": written["bytes"],
        "cpu_seconds": round((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), 2),
        "load_s": round(t_load - t0, 2),
        "diff_s": round(t_diff - t_load, 2),
        "commit_s": round(t_commit - t_diff, 2),
        "cpu_load_diff_commit": [
            round(c_load - (r0.ru_utime + r0.ru_stime), 2),
            round(c_diff - c_load, 2),
            round((r1.ru_utime + r1.ru_stime) - c_diff, 2),
        ],
        "peak_rss_mb": peak_rss_mb(),
        "deltas": [d["rows"] for d in pointer.get("deltas", [])],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", 1_000_000)))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--child", default=None)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args(argv)
    work = args.work or Path("build/bench") / f"state-{args.rows}"
    if args.child and args.child != "setup":
        print(json.dumps(_child(args.child, work)))
        return 0
    if args.child == "setup":
        setup(work, args.rows)
        return 0
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.state_bench",
            "--child",
            "setup",
            "--rows",
            str(args.rows),
            "--work",
            str(work),
        ],
        check=True,
    )
    for variant in args.variants:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.state_bench", "--child", variant, "--work", str(work)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
            raise SystemExit(f"{variant} failed:\n{proc.stderr}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps({"rows": args.rows, **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
