"""Benchmark: plan + import-file writing for a 10M-endpoint segment.

Run with ``make bench`` (or ``python -m benchmarks.sync_bench --rows 1000000``
for a quick look). Three contenders, measured side by side in one run, each in
its own process so peak memory is its own:

- ``copy``:    a plain DuckDB ``COPY`` of the segment's rows to CSV (the floor);
- ``lakeseg``: the real diff (``sync.diff.prepare``) against the previous
  snapshot plus the import files (``sync.import_files``), DuckDB memory
  limit 1 GB;
- ``python``:  a straightforward pure-Python implementation with the csv
  module and dicts, doing the same job.

The segment has an Id and 4 attribute columns. The previous snapshot differs
by 5% churn: 2.5% of members entered, 2.5% exited and 5% changed.
Targets: lakeseg ≤ 1.5× copy, ≥ 10× faster than python, peak ≤ 1.5 GB.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

FIELDS = ("Id", "User.UserAttributes.State", "User.UserAttributes.Plan", "Attributes.Tier", "Metrics.Score")
COLUMNS = ("endpoint_id", "state", "plan", "tier", "score")
EXIT = {"User.UserAttributes.State": "None", "User.UserAttributes.Plan": "None", "Attributes.Tier": "None",
        "Metrics.Score": "0"}
MEMORY_LIMIT = "1GB"
# A fixed test key: the bench runs the keyed digest, as every real sync does.
BENCH_KEY_SECRET = "lakeseg-bench-key-not-a-secret-0123456789"


def _key():
    from sync.digest_key import DigestKey

    return DigestKey(BENCH_KEY_SECRET, "bench")


def _segment():
    from sync.contract import FieldMapping, Segment
    from sync.readers.base import RelationRef

    return Segment(
        unique_id="model.bench.seg_bench", name="seg_bench", relation=RelationRef("seg", "main", "segment"),
        mappings=tuple(FieldMapping(c, f) for c, f in zip(COLUMNS, FIELDS)), exit=EXIT, segment_name=None,
        tags=(), path="",
    )


def _rows_sql(lo: int, hi: int, changed: bool) -> str:
    """Rows for ids in [lo, hi); `changed` alters every 20th row's values (5%)."""
    bump = "+ case when i % 20 = 0 then 1 else 0 end" if changed else ""
    return f"""
        select md5('endpoint-' || i::varchar)::uuid::varchar as endpoint_id,
               list_extract(['CA','NY','TX','WA','O''Hare, IL','Zürich'], 1 + ((i {bump}) % 6)::integer) as state,
               'plan-' || ((i {bump}) % 3)::varchar as plan,
               'tier "' || ((i {bump}) % 4)::varchar || '"' as tier,
               (((i {bump}) * 37) % 1000)::varchar as score
        from range({lo}, {hi}) t(i)"""


def setup(work: Path, rows: int) -> None:
    """The segment (DuckDB file), the previous snapshot in both formats."""
    marker = work / f"ready-{rows}.json"
    if marker.exists():
        return
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    churn = rows // 40  # 2.5%
    con = duckdb.connect(str(work / "segment.duckdb"))
    con.execute("set preserve_insertion_order = false")
    # Current members: ids [0, rows). Previous: ids [churn, rows + churn) with
    # 5% of the shared ones carrying other values. So ids [0, churn) entered,
    # ids [rows, rows + churn) exited, every 20th shared id changed.
    con.execute(f"create table segment as {_rows_sql(0, rows, changed=False)}")
    con.execute(f"create table previous as {_rows_sql(churn, rows + churn, changed=True)}")
    # Previous snapshot for the pure-Python contender: the values themselves.
    con.execute(f"copy previous to '{work / 'previous.csv'}' (header)")
    con.close()
    # Previous snapshot for lakeseg: produced by lakeseg itself from `previous`.
    from sync.diff import prepare

    seg = _segment()
    con = duckdb.connect()
    con.execute(f"attach '{work / 'segment.duckdb'}' as seg (read_only)")
    prepared = prepare(con, seg, "seg.main.previous", previous=None, workdir=work / "prev", digest_key=_key())
    shutil.move(prepared.new_snapshot, work / "previous.parquet")
    con.close()
    marker.write_text(json.dumps({"rows": rows}))


class _Snapshot:
    def __init__(self, path: Path, rows: int, mapping_hash: str):
        self.path, self.rows, self.mapping_hash = path, rows, mapping_hash


def run_copy(work: Path) -> dict:
    con = duckdb.connect()
    con.execute(f"attach '{work / 'segment.duckdb'}' as seg (read_only)")
    t0 = time.perf_counter()
    con.execute(f"copy seg.main.segment to '{work / 'out-copy.csv'}' (header)")
    return {"seconds": time.perf_counter() - t0}


def lakeseg_sync(con: duckdb.DuckDBPyConnection, work: Path, out: Path):
    """lakeseg's plan + import files for the bench segment against the previous snapshot."""
    from sync.diff import changes_sql, effective_mapping_hash, prepare
    from sync.import_files import write_import_files

    seg, key = _segment(), _key()
    shutil.rmtree(out, ignore_errors=True)
    prev_rows = con.execute(f"select count(*) from read_parquet('{work / 'previous.parquet'}')").fetchall()[0][0]
    previous = _Snapshot(work / "previous.parquet", prev_rows, effective_mapping_hash(con, seg, key.fingerprint))
    prepared = prepare(con, seg, "seg.main.segment", previous=previous, workdir=out, digest_key=key)
    files = write_import_files(con, changes_sql(prepared), out / "import", 100 * 1024 * 1024)
    return prepared.plan, files


def run_lakeseg(work: Path) -> dict:
    con = duckdb.connect()
    con.execute(f"set memory_limit = '{MEMORY_LIMIT}'")
    con.execute(f"set temp_directory = '{work / 'spill'}'")
    con.execute("set preserve_insertion_order = false")
    con.execute(f"attach '{work / 'segment.duckdb'}' as seg (read_only)")
    t0 = time.perf_counter()
    plan, files = lakeseg_sync(con, work, work / "out-lakeseg")
    seconds = time.perf_counter() - t0
    sent = sum(sum(1 for _ in f.open("rb")) - 1 for f in files)
    return {"seconds": seconds, "entered": plan.entered, "changed": plan.changed, "exited": plan.exited,
            "unchanged": plan.unchanged, "rows_sent": sent, "files": len(files)}


def run_python(work: Path) -> dict:
    """The straightforward way: dicts of rows, csv module in and out."""
    out = work / "out-python"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    # The current rows as CSV are the input a pure-Python tool would read;
    # exporting them is not timed (the copy contender measures that).
    src = work / "current.csv"
    if not src.exists():
        con = duckdb.connect()
        con.execute(f"attach '{work / 'segment.duckdb'}' as seg (read_only)")
        con.execute(f"copy seg.main.segment to '{src}' (header)")
        con.close()
    t0 = time.perf_counter()
    with open(work / "previous.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        previous = {row[0]: tuple(row[1:]) for row in reader}
    entered = changed = unchanged = 0
    with open(src, newline="", encoding="utf-8") as f, \
            open(out / "changes.csv", "w", newline="", encoding="utf-8") as changes, \
            open(out / "snapshot.csv", "w", newline="", encoding="utf-8") as snap:
        reader = csv.reader(f)
        next(reader)
        w, s = csv.writer(changes, lineterminator="\r\n"), csv.writer(snap)
        w.writerow(FIELDS)
        s.writerow(FIELDS)
        seen = set()
        for row in reader:
            key, values = row[0], tuple(row[1:])
            seen.add(key)
            old = previous.get(key)
            if old is None:
                entered += 1
                w.writerow(row)
            elif old != values:
                changed += 1
                w.writerow(row)
            else:
                unchanged += 1
            s.writerow(row)
        exited = 0
        exit_values = [EXIT[f] for f in FIELDS[1:]]
        for key in previous:
            if key not in seen:
                exited += 1
                w.writerow([key, *exit_values])
    return {"seconds": time.perf_counter() - t0, "entered": entered, "changed": changed, "exited": exited,
            "unchanged": unchanged}


RUNNERS = {"copy": run_copy, "lakeseg": run_lakeseg, "python": run_python}


def _child(variant: str, work: Path) -> dict:
    result = RUNNERS[variant](work)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _measure(variant: str, work: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.sync_bench", "--child", variant, "--work", str(work)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode:
        raise SystemExit(f"{variant} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--work", type=Path, default=Path("build/bench"))
    ap.add_argument("--repeat", type=int, default=5, help="runs of copy and lakeseg (best counts); python runs once")
    ap.add_argument("--skip-python", action="store_true")
    ap.add_argument("--child", choices=sorted(RUNNERS) + ["setup"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "setup":
        setup(args.work, args.rows)
        return 0
    if args.child:
        print(json.dumps(_child(args.child, args.work)))
        return 0

    t0 = time.perf_counter()
    # In a child too: Linux keeps a process's peak RSS across exec, so the
    # parent must stay small for the children's figures to be their own.
    subprocess.run([sys.executable, "-m", "benchmarks.sync_bench", "--child", "setup", "--rows", str(args.rows),
                    "--work", str(args.work)], check=True)
    print(f"data ready in {time.perf_counter() - t0:.1f}s ({args.rows:,} rows, 5% churn) under {args.work}")
    results: dict[str, list[dict]] = {"copy": [], "lakeseg": []}
    for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
        for variant in ("copy", "lakeseg"):
            results[variant].append(_measure(variant, args.work))
    best = {v: min(rs, key=lambda r: r["seconds"]) for v, rs in results.items()}
    if not args.skip_python:
        best["python"] = _measure("python", args.work)
    lk = best["lakeseg"]
    print(f"\nlakeseg plan: entered {lk['entered']:,}, changed {lk['changed']:,}, exited {lk['exited']:,}, "
          f"unchanged {lk['unchanged']:,}; {lk['rows_sent']:,} rows in {lk['files']} file(s)")
    if "python" in best:
        py = best["python"]
        agree = all(py[k] == lk[k] for k in ("entered", "changed", "exited", "unchanged"))
        print(f"pure-Python plan agrees: {agree}")
    print(f"\n{'contender':<10} {'seconds':>8} {'peak MB':>8}   (best of {args.repeat} for copy/lakeseg)")
    for v, r in best.items():
        print(f"{v:<10} {r['seconds']:8.2f} {r['peak_rss_mb']:8.0f}")
    ratio_copy = lk["seconds"] / best["copy"]["seconds"]
    print(f"\nlakeseg / copy   = {ratio_copy:.2f}x   (target <= 1.5x)")
    if "python" in best:
        print(f"python / lakeseg = {best['python']['seconds'] / lk['seconds']:.1f}x   (target >= 10x)")
    print(f"lakeseg peak     = {lk['peak_rss_mb']:.0f} MB   (target <= 1536 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
