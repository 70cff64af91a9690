"""Ingest partitions each model reads, next to its window (not timed).

Builds the project on DuckDB over a local lake (generated if missing), then
runs every model that reads the DUE ``all_events`` table once more under
DuckDB's JSON profiler and counts the Parquet files its ``all_events`` scans
opened. The sample lake has one file per ingest-day partition, so files read =
partitions read -- what Athena would scan (and bill) for the same filter.

    python -m benchmarks.partitions [--lake build/lake] [--endpoints 50000] [--as-of "2026-10-31 12:00:00"]

Target (issue 8): the 24-hour segment reads at most 3 daily partitions; no
model reads more than its window + 2 days.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import duckdb

PROJECT = Path(__file__).resolve().parents[1]
SOURCE = "source.lakeseg.due.all_events"
BOUNDS = re.compile(r"ingest_timestamp >= timestamp '([^']+)' and \S*ingest_timestamp <= timestamp '([^']+)'")


def reads_due(uid: str, nodes: dict, seen: set | None = None) -> bool:
    seen = seen if seen is not None else set()
    deps = nodes[uid]["depends_on"]["nodes"]
    return SOURCE in deps or any(
        d in nodes and d not in seen and not seen.add(d) and reads_due(d, nodes, seen) for d in deps
    )


def window_days(sql: str, slack_hours: float) -> float | None:
    """The model's own window in days, from the constant bounds ingest_window() rendered."""
    found = BOUNDS.findall(sql)
    if not found:
        return None
    lo, hi = (datetime.fromisoformat(v) for v in found[0])
    return round((hi - lo).total_seconds() / 86400 - slack_hours / 24, 2)


def files_read(con: duckdb.DuckDBPyConnection, sql: str, profile: Path) -> int:
    con.execute("set enable_profiling = 'json'")
    con.execute(f"set profiling_output = '{profile}'")
    con.execute(sql).fetchall()
    con.execute("set enable_profiling = 'no_output'")
    total = 0

    def walk(node: dict) -> None:
        nonlocal total
        info = node.get("extra_info") or {}
        if "due/all_events" in str(info.get("Filename(s)", "")):
            total += int(info.get("Total Files Read", 0))
        for child in node.get("children", []):
            walk(child)

    tree = json.loads(profile.read_text())
    for node in tree.get("operator", tree.get("children", [])):
        walk(node)
    return total


def measure(
    lake: Path, build: Path, as_of: str | None = None, slack_hours: float = 24, project: Path = PROJECT
) -> list[dict]:
    """Build the project over ``lake`` into ``build``; one row per DUE-reading model."""
    env = {
        **os.environ,
        "LAKESEG_LAKE_PATH": str(lake),
        "LAKESEG_BUILD_DIR": str(build),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    profiles = build / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT / "profiles.yml.example", profiles / "profiles.yml")
    args = [
        str(Path(sys.executable).parent / "dbt"),
        "run",
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(profiles),
        "--target-path",
        str(build / "target"),
        "--log-path",
        str(build / "logs"),
        "--target",
        "local",
    ]
    if as_of:
        args += ["--vars", json.dumps({"as_of": as_of})]
    subprocess.run(args, env=env, check=True, capture_output=True)
    nodes = json.loads((build / "target" / "manifest.json").read_text())["nodes"]
    rows = []
    con = duckdb.connect(str(build / "lakeseg.duckdb"), read_only=True)
    try:
        total = len(list((lake / "due" / "all_events").glob("ingest_timestamp=*")))
        for uid, node in sorted(nodes.items(), key=lambda kv: kv[1]["name"]):
            if node["resource_type"] != "model" or not reads_due(uid, nodes):
                continue
            sql = (build / "target" / "compiled" / "lakeseg" / node["original_file_path"]).read_text()
            own = window_days(sql, slack_hours)
            rows.append(
                {
                    "model": node["name"],
                    "window_days": own,
                    "partitions_read": files_read(con, sql, build / "profile.json"),
                    "partitions_in_lake": total,
                }
            )
    finally:
        con.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, default=PROJECT / "build" / "lake")
    parser.add_argument("--endpoints", type=int, default=50_000, help="when the lake must be generated")
    parser.add_argument("--as-of", default=None)
    parser.add_argument("--project", type=Path, default=PROJECT, help="another copy of the dbt project")
    opts = parser.parse_args(argv)
    from sync.lake.sample_lake import LakeSpec, generate, read_manifest

    if read_manifest(opts.lake) is None:
        generate(opts.lake, LakeSpec(endpoints=opts.endpoints))
    with tempfile.TemporaryDirectory(prefix="lakeseg-partitions-") as tmp:
        rows = measure(opts.lake, Path(tmp), opts.as_of, project=opts.project)
    print(f"{'model':28} {'window (days)':>14} {'partitions read':>16} {'of':>5}  limit (window + 2 d)")
    ok = True
    for r in rows:
        window = r["window_days"]
        limit = None if window is None else int(window) + (1 if window % 1 else 0) + 2
        verdict = "" if limit is None else ("ok" if r["partitions_read"] <= limit else "OVER")
        ok &= verdict != "OVER"
        shown = "(view)" if window is None else f"{window:g}"
        print(
            f"{r['model']:28} {shown:>14} {r['partitions_read']:>16} {r['partitions_in_lake']:>5}  "
            f"{'' if limit is None else limit} {verdict}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
