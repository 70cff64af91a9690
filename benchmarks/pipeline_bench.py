"""Benchmark: the whole pipeline, ``lakeseg run`` (dbt build on DuckDB, then sync), at scale.

Run with ``make bench`` (it runs ``--endpoints 1000000 10000000``) or
``python -m benchmarks.pipeline_bench --endpoints 100000`` for a quick look.

For each size, in a fresh copy of the dbt project (so nothing is shared with
the checkout's ``build/`` or ``target/``):

1. the sample lake is written (``lakeseg lake generate``; not part of the pipeline's figures);
2. ``lakeseg run`` runs twice, each a whole process: the first sync sends every
   member of every segment, the second finds nothing changed (the steady state
   of a scheduled run over an unchanged lake).

Reported per run: wall seconds, CPU seconds (user + system of the process and
everything it waited for), peak RSS (the largest process: lakeseg holds dbt
in-process, so that is the run itself), the run report's phase times, members
in the segments, rows written to the export folder and bytes the state store
holds. Nothing here is asserted: the figures are for reading side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.sync_bench import _csv_rows

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "lakeseg.yml", "models", "macros")
LAKESEG = Path(sys.executable).with_name("lakeseg")


def _copy_project(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, dest / name)
    if not (dest / "profiles.yml").exists():
        shutil.copy2(ROOT / "profiles.yml.example", dest / "profiles.yml")


def _env(project: Path, lake: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LAKESEG_LAKE_PATH=str(lake),
        LAKESEG_BUILD_DIR=str(project / "build"),
        LAKESEG_EXPORT_DIR=str(project / "build" / "exports"),
        LAKESEG_STATE_DIR=str(project / "build" / "state"),
        LAKESEG_WORK_DIR=str(project / "build" / "work"),
        LAKESEG_DIGEST_KEY=f"file:{project / 'build' / 'digest.key'}",
        LAKESEG_TARGET="local",
        DBT_PROFILES_DIR=str(project),
        NO_COLOR="1",
    )
    return env


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _rows_exported(path: Path) -> int:
    """Rows in every import file under ``path`` (header lines not counted)."""
    return _csv_rows(*path.rglob("*.csv"))


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict:
    """One whole process: wall, CPU and peak RSS of it alone (run in a fresh child of its own)."""
    probe = [
        sys.executable,
        "-c",
        "import json,resource,subprocess,sys,time;"
        "t=time.perf_counter();p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
        "w=time.perf_counter()-t;ru=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "sys.stderr.write(p.stderr[-4000:]);"
        "print(json.dumps({'rc':p.returncode,'wall':w,'cpu':ru.ru_utime+ru.ru_stime,"
        "'peak_mb':ru.ru_maxrss/1024,'stdout':p.stdout}))",
        *cmd,
    ]
    proc = subprocess.run(probe, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)}: the probe failed\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["rc"] not in (0,):
        raise SystemExit(f"{' '.join(cmd)} exited {result['rc']}\n{proc.stderr}")
    return result


def measure(endpoints: int, work: Path, events_per_endpoint: int) -> list[dict]:
    """Both runs at one size: a list of row dicts for the table."""
    project = work / f"project-{endpoints}"
    lake = work / f"lake-{endpoints}-{events_per_endpoint}"
    shutil.rmtree(project, ignore_errors=True)
    _copy_project(project)
    env = _env(project, lake)
    t0 = time.perf_counter()
    gen = [str(LAKESEG), "lake", "generate", "--path", str(lake), "--endpoints", str(endpoints)]
    gen += ["--events-per-endpoint", str(events_per_endpoint), "--if-missing"]
    subprocess.run(gen, cwd=project, env=env, check=True, capture_output=True)
    print(
        f"{endpoints:,} endpoints: lake ready in {time.perf_counter() - t0:.0f} s ({_tree_bytes(lake) / 1e6:,.0f} MB)"
    )
    rows = []
    for label in ("first run (full send)", "second run (nothing changed)"):
        exported_before = _rows_exported(project / "build" / "exports")
        r = _timed([str(LAKESEG), "run", "--json"], project, env)
        report = json.loads(r["stdout"])
        plans = [s.get("plan") or {} for s in report.get("segments", [])]
        members = sum(p.get("rows", 0) for p in plans)
        sent = sum(p.get("to_send", 0) for p in plans)
        rows.append(
            {
                "endpoints": endpoints,
                "run": label,
                "wall": r["wall"],
                "cpu": r["cpu"],
                "peak_mb": r["peak_mb"],
                "phases": report.get("phases", {}),
                "segments": len(report.get("segments", [])),
                "members": members,
                "sent": sent,
                "exported_rows": _rows_exported(project / "build" / "exports") - exported_before,
                "state_bytes": _tree_bytes(project / "build" / "state"),
            }
        )
        print(f"  {label}: {r['wall']:.1f} s wall, {r['peak_mb']:.0f} MB peak")
    return rows


def _phases(phases: dict) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in phases.items() if isinstance(v, (int, float)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoints", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--events-per-endpoint", type=int, default=4, help="sample-lake events per endpoint")
    ap.add_argument("--work", type=Path, default=Path("build/bench-pipeline"))
    args = ap.parse_args(argv)
    work = args.work.resolve()
    rows = [row for n in args.endpoints for row in measure(n, work, args.events_per_endpoint)]
    table = Table(title=f"lakeseg run on DuckDB (sample lake, {args.events_per_endpoint} events per endpoint)")
    for col in (
        "endpoints",
        "run",
        "wall s",
        "CPU s",
        "peak MB",
        "members",
        "rows to send",
        "rows exported",
        "state MB",
        "phases (s)",
    ):
        table.add_column(col, justify="left" if col in ("run", "phases (s)") else "right")
    for r in rows:
        table.add_row(
            f"{r['endpoints']:,}",
            r["run"],
            f"{r['wall']:.1f}",
            f"{r['cpu']:.1f}",
            f"{r['peak_mb']:.0f}",
            f"{r['members']:,}",
            f"{r['sent']:,}",
            f"{r['exported_rows']:,}",
            f"{r['state_bytes'] / 1e6:.1f}",
            _phases(r["phases"]),
        )
    Console(width=200).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
