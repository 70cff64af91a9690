"""Where lakeseg's sync time goes: every statement of the bench's sync, timed.

``python -m benchmarks.sync_profile [--rows 2000000] [--work build/bench2m]``
builds the bench data (as ``benchmarks.sync_bench`` does, cached under
``--work``), then runs lakeseg's plan + import files once on a connection that
times each statement -- wall seconds, CPU seconds of the process (DuckDB's
threads included) and the peak RSS so far -- and the copy contender once for
comparison. Not part of ``make test``; figures on a shared machine vary from
run to run, their proportions less.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from benchmarks.sync_bench import _lakeseg_connection, lakeseg_sync


class TimedConnection:
    """A DuckDB connection that records each statement's wall and CPU time."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con
        self.timings: list[tuple[float, float, int, str]] = []

    def execute(self, sql: str, *args):
        t0, c0 = time.perf_counter(), time.process_time()
        result = self._con.execute(sql, *args)
        rows = result.fetchall() if result.description else []
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        self.timings.append((time.perf_counter() - t0, time.process_time() - c0, peak_mb, " ".join(sql.split())))
        return _Rows(rows)

    def __getattr__(self, name):
        return getattr(self._con, name)


class _Rows:
    def __init__(self, rows: list):
        self._rows = rows

    def fetchall(self) -> list:
        return self._rows


def _copy_seconds(work: Path) -> tuple[float, float]:
    con = duckdb.connect()
    con.execute(f"attach '{work / 'segment.duckdb'}' as seg (read_only)")
    t0, c0 = time.perf_counter(), time.process_time()
    con.execute(f"copy seg.main.segment to '{work / 'out-profile-copy.csv'}' (header)")
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--work", type=Path, default=Path("build/bench2m"))
    ap.add_argument("--min-seconds", type=float, default=0.01, help="leave out statements faster than this")
    args = ap.parse_args(argv)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.sync_bench",
            "--child",
            "setup",
            "--rows",
            str(args.rows),
            "--work",
            str(args.work),
        ],
        check=True,
    )
    con = TimedConnection(_lakeseg_connection(args.work))
    t0, c0 = time.perf_counter(), time.process_time()
    plan, _files = lakeseg_sync(con, args.work, args.work / "out-profile")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{'wall s':>7} {'CPU s':>7} {'peak MB':>8}  statement")
    for w, c, peak, sql in con.timings:
        if w >= args.min_seconds:
            print(f"{w:7.2f} {c:7.2f} {peak:8d}  {sql[:110]}")
    print(
        f"{wall:7.2f} {cpu:7.2f} {'':8}  lakeseg in all (entered {plan.entered:,}, changed {plan.changed:,}, "
        f"exited {plan.exited:,})"
    )
    copy_wall, copy_cpu = _copy_seconds(args.work)
    print(f"{copy_wall:7.2f} {copy_cpu:7.2f} {'':8}  copy (the contender, in the same process after lakeseg)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
