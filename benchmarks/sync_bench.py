"""Benchmark: plan + import-file writing for a 10M-endpoint segment.

Run with ``make bench`` (or ``python -m benchmarks.sync_bench --rows 1000000``
for a quick look). Contenders, measured side by side in one run, each in its
own process so peak memory is its own:

- ``copy``:    a plain DuckDB ``COPY`` of the segment's rows to CSV (the floor);
- ``lakeseg``: the real diff (``sync.run.diff.prepare``, keyed digest) against the
  previous snapshot plus the import files (``sync.core.import_files``), with the
  engine's DuckDB settings (``sync.run.diff.configure``, memory limit below);
- ``python``:  a straightforward pure-Python implementation with the csv
  module and dicts, doing the same job;
- ``drt``:     the closest open-source peer, drt-core (``.tools/drt``, its
  own environment: ``make bench`` installs it), file destination, same table,
  as a whole CLI process -- a first sync (the previous members) and a second
  sync (the current ones) -- beside lakeseg's first and second sync, each a
  whole process too.

The segment has an Id and 4 attribute columns. The previous snapshot differs
by 5% churn: 2.5% of members entered, 2.5% exited and 5% changed.
Targets: lakeseg <= 1.0x copy (best of 5, interleaved), >= 10x faster than
python, peak RSS <= 400 MB.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

FIELDS = ("Id", "User.UserAttributes.State", "User.UserAttributes.Plan", "Attributes.Tier", "Metrics.Score")
COLUMNS = ("endpoint_id", "state", "plan", "tier", "score")
EXIT = {
    "User.UserAttributes.State": "None",
    "User.UserAttributes.Plan": "None",
    "Attributes.Tier": "None",
    "Metrics.Score": "0",
}
MEMORY_LIMIT = "256MB"  # the diff spills past it; keeps the process under 400 MB at 10M
TARGET_RATIO = 1.0  # lakeseg / copy
TARGET_PEAK_MB = 400
DRT = Path(".tools/drt/bin/drt")
# A fixed test key: the bench runs the keyed digest, as every real sync does.
BENCH_KEY_SECRET = "lakeseg-bench-key-not-a-secret-0123456789"


def _key():
    from sync.run.digest_key import DigestKey

    return DigestKey(BENCH_KEY_SECRET, "bench")


def _segment():
    from sync.dbt.contract import FieldMapping, Segment
    from sync.readers.base import RelationRef

    return Segment(
        unique_id="model.bench.seg_bench",
        name="seg_bench",
        relation=RelationRef("seg", "main", "segment"),
        mappings=tuple(FieldMapping(c, f) for c, f in zip(COLUMNS, FIELDS)),
        exit=EXIT,
        segment_name=None,
        tags=(),
        path="",
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
    from sync.run.diff import DIGEST_SCHEME, prepare

    marker = work / f"ready-{rows}.json"
    if not marker.exists():
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
        marker.write_text(json.dumps({"rows": rows}))
    # Previous snapshot for lakeseg: produced by lakeseg itself from `previous`
    # (again whenever the digest's construction changes).
    snap_marker = work / f"previous-{DIGEST_SCHEME}.json"
    if snap_marker.exists():
        return
    con = duckdb.connect()
    con.execute(f"attach '{work / 'segment.duckdb'}' as seg (read_only)")
    prepared = prepare(con, _segment(), "seg.main.previous", previous=None, workdir=work / "prev", digest_key=_key())
    shutil.move(prepared.new_snapshot, work / "previous.parquet")
    con.close()
    snap_marker.write_text(json.dumps({"rows": rows}))


def expected_churn(rows: int) -> tuple[int, int, int]:
    """(entered, changed, exited) the bench data is built to have."""
    churn = rows // 40
    changed = len(range(-(-churn // 20) * 20, rows, 20))  # multiples of 20 in [churn, rows)
    return churn, changed, churn


def run_copy(work: Path) -> dict:
    con = duckdb.connect()
    con.execute(f"attach '{work / 'segment.duckdb'}' as seg (read_only)")
    t0 = time.perf_counter()
    con.execute(f"copy seg.main.segment to '{work / 'out-copy.csv'}' (header)")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows_written": _csv_rows(work / "out-copy.csv")}


def _csv_rows(*files: Path) -> int:
    """Records in CSV files with a header (the bench's values hold no line breaks)."""
    total = 0
    for f in files:
        with f.open("rb") as fh:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) - 1
    return total


def lakeseg_sync(con: duckdb.DuckDBPyConnection, work: Path, out: Path):
    """lakeseg's plan + import files for the bench segment against the previous snapshot."""
    from sync.core.import_files import write_import_files
    from sync.run.diff import changes_sql, effective_mapping_hash, prepare
    from sync.state.base import Snapshot

    seg, key = _segment(), _key()
    shutil.rmtree(out, ignore_errors=True)
    prev_rows = con.execute(f"select count(*) from read_parquet('{work / 'previous.parquet'}')").fetchall()[0][0]
    previous = Snapshot(
        work / "previous.parquet",
        seg.fields,
        effective_mapping_hash(con, seg, key.fingerprint),
        prev_rows,
        run_id="previous",
        committed_at="",
    )
    prepared = prepare(con, seg, "seg.main.segment", previous=previous, workdir=out, digest_key=key)
    files = write_import_files(con, changes_sql(prepared), out / "import", 100 * 1024 * 1024)
    return prepared.plan, files


def _lakeseg_connection(work: Path) -> duckdb.DuckDBPyConnection:
    from sync.run.diff import configure

    con = duckdb.connect()
    configure(con, MEMORY_LIMIT, work / "spill")
    con.execute(f"attach '{work / 'segment.duckdb'}' as seg (read_only)")
    return con


def run_lakeseg(work: Path) -> dict:
    con = _lakeseg_connection(work)
    t0 = time.perf_counter()
    plan, files = lakeseg_sync(con, work, work / "out-lakeseg")
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "entered": plan.entered,
        "changed": plan.changed,
        "exited": plan.exited,
        "unchanged": plan.unchanged,
        "rows_written": _csv_rows(*files),
        "files": len(files),
    }


def run_lakeseg_first(work: Path) -> dict:
    """lakeseg's first sync of the previous members: everything is sent."""
    from sync.core.import_files import write_import_files
    from sync.run.diff import changes_sql, prepare

    out = work / "out-lakeseg-first"
    shutil.rmtree(out, ignore_errors=True)
    con = _lakeseg_connection(work)
    prepared = prepare(con, _segment(), "seg.main.previous", previous=None, workdir=out, digest_key=_key())
    files = write_import_files(con, changes_sql(prepared), out / "import", 100 * 1024 * 1024)
    return {"rows_written": _csv_rows(*files)}


def _drt_project(work: Path, table: str) -> Path:
    """A drt project (and HOME with its profiles.yml) syncing `table` to one CSV file."""
    root = (work / "drt").resolve()
    (root / "home" / ".drt").mkdir(parents=True, exist_ok=True)
    (root / "project" / "syncs").mkdir(parents=True, exist_ok=True)
    (root / "home" / ".drt" / "profiles.yml").write_text(
        f"bench:\n  type: duckdb\n  database: {json.dumps(str((work / 'segment.duckdb').resolve()))}\n"
    )
    (root / "project" / "drt_project.yml").write_text("name: bench\nprofile: bench\n")
    # The same header as lakeseg's files: the Pinpoint field names.
    select = ", ".join(f'{c} as "{f}"' for c, f in zip(COLUMNS, FIELDS))
    (root / "project" / "syncs" / "seg_bench.yml").write_text(
        "name: seg_bench\n"
        f"model: {json.dumps(f'select {select} from main.{table}')}\n"
        "destination:\n  type: file\n  path: out/seg_bench.csv\n  format: csv\n"
    )
    return root


def run_drt(work: Path, table: str) -> dict:
    """One `drt run` as a whole CLI process; its own peak RSS (the only child of this process)."""
    root = _drt_project(work, table)
    env = {**os.environ, "HOME": str(root / "home"), "DO_NOT_TRACK": "1", "NO_COLOR": "1"}
    proc = subprocess.run(
        [str(DRT.resolve()), "run"], cwd=root / "project", env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode:
        raise SystemExit(f"drt run failed:\n{proc.stdout}\n{proc.stderr}")
    return {
        "rows_written": _csv_rows(root / "project" / "out" / "seg_bench.csv"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


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
    with (
        open(src, newline="", encoding="utf-8") as f,
        open(out / "changes.csv", "w", newline="", encoding="utf-8") as changes,
        open(out / "snapshot.csv", "w", newline="", encoding="utf-8") as snap,
    ):
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
    return {
        "seconds": time.perf_counter() - t0,
        "entered": entered,
        "changed": changed,
        "exited": exited,
        "unchanged": unchanged,
    }


RUNNERS = {
    "copy": run_copy,
    "lakeseg": run_lakeseg,
    "python": run_python,
    # The peer comparison: first sync (previous members), second sync (current members).
    "lakeseg-first": run_lakeseg_first,
    "lakeseg-second": run_lakeseg,
    "drt-first": lambda work: run_drt(work, "previous"),
    "drt-second": lambda work: run_drt(work, "segment"),
}


def _child(variant: str, work: Path) -> dict:
    result = RUNNERS[variant](work)
    result.setdefault("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def _measure(variant: str, work: Path) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.sync_bench", "--child", variant, "--work", str(work)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"{variant} failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # The whole process, start-up included: how the peer comparison times both tools.
    result["process_seconds"] = time.perf_counter() - t0
    return result


def _drt_version() -> str:
    out = subprocess.run([str(DRT), "--version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"\d+\.\d+\.\d+", out)
    return found.group(0) if found else "?"


def _check(ok: bool, what: str, problems: list[str]) -> str:
    if not ok:
        problems.append(what)
    return "ok" if ok else "WRONG"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--work", type=Path, default=Path("build/bench"))
    ap.add_argument("--repeat", type=int, default=5, help="runs of copy and lakeseg (best counts); python runs once")
    ap.add_argument("--skip-python", action="store_true")
    ap.add_argument("--skip-drt", action="store_true", help="leave out the drt-core peer")
    ap.add_argument("--child", choices=sorted(RUNNERS) + ["setup"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "setup":
        setup(args.work, args.rows)
        return 0
    if args.child:
        print(json.dumps(_child(args.child, args.work)))
        return 0
    if not args.skip_drt and not DRT.exists():
        raise SystemExit(f"drt-core is not installed at {DRT}: run `make bench` (it installs it), or pass --skip-drt")

    t0 = time.perf_counter()
    # In a child too: Linux keeps a process's peak RSS across exec, so the
    # parent must stay small for the children's figures to be their own.
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
    print(f"data ready in {time.perf_counter() - t0:.1f}s ({args.rows:,} rows, 5% churn) under {args.work}")
    results: dict[str, list[dict]] = {"copy": [], "lakeseg": []}
    for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
        for variant in ("copy", "lakeseg"):
            results[variant].append(_measure(variant, args.work))
    best = {v: min(rs, key=lambda r: r["seconds"]) for v, rs in results.items()}
    if not args.skip_python:
        best["python"] = _measure("python", args.work)
    lk = best["lakeseg"]
    entered, changed, exited = expected_churn(args.rows)
    problems: list[str] = []
    print(
        f"\nlakeseg plan: entered {lk['entered']:,}, changed {lk['changed']:,}, exited {lk['exited']:,}, "
        f"unchanged {lk['unchanged']:,}; {lk['rows_written']:,} rows in {lk['files']} file(s)"
    )
    built = _check(
        (lk["entered"], lk["changed"], lk["exited"]) == (entered, changed, exited)
        and lk["rows_written"] == entered + changed + exited,
        "lakeseg's plan or rows",
        problems,
    )
    print(f"lakeseg plan and rows equal the churn the data was built with: {built}")
    if "python" in best:
        py = best["python"]
        agree = all(py[k] == lk[k] for k in ("entered", "changed", "exited", "unchanged"))
        print(f"pure-Python plan agrees: {_check(agree, 'the pure-Python plan', problems)}")
        py["rows_written"] = py["entered"] + py["changed"] + py["exited"]
    print(
        f"\n{'contender':<10} {'seconds':>8} {'peak MB':>8} {'rows written':>13} {'vs copy':>8}"
        f"   (best of {args.repeat} for copy/lakeseg)"
    )
    for v, r in best.items():
        print(
            f"{v:<10} {r['seconds']:8.2f} {r['peak_rss_mb']:8.0f} {r['rows_written']:13,} "
            f"{r['seconds'] / best['copy']['seconds']:7.2f}x"
        )
    runs = ", ".join(f"{lr['seconds'] / cr['seconds']:.2f}x" for cr, lr in zip(results["copy"], results["lakeseg"]))
    print(f"(lakeseg / copy per interleaved pair: {runs})")
    ratio_copy = lk["seconds"] / best["copy"]["seconds"]
    peak = max(r["peak_rss_mb"] for r in results["lakeseg"])
    print(
        f"\nP1 lakeseg / copy   = {ratio_copy:.2f}x   (target <= {TARGET_RATIO:.1f}x: "
        f"{'met' if ratio_copy <= TARGET_RATIO else 'NOT met'})"
    )
    if "python" in best:
        print(f"   python / lakeseg  = {best['python']['seconds'] / lk['seconds']:.1f}x   (target >= 10x)")
    print(
        f"P3 lakeseg peak     = {peak:.0f} MB   (highest of {args.repeat}; target <= {TARGET_PEAK_MB} MB: "
        f"{'met' if peak <= TARGET_PEAK_MB else 'NOT met'}; DuckDB memory_limit {MEMORY_LIMIT})"
    )
    if not args.skip_drt:
        _peer(args, problems)
    if problems:
        print(f"\nWRONG OUTPUT: {', '.join(problems)}")
        return 1
    return 0


def _peer(args, problems: list[str]) -> None:
    """drt-core and lakeseg, first and second sync of the same table, each a whole process."""
    entered, changed, exited = expected_churn(args.rows)
    runs = {v: _measure(v, args.work) for v in ("drt-first", "lakeseg-first", "drt-second", "lakeseg-second")}
    print(
        f"\npeer: drt-core {_drt_version()} (file destination, `drt run`) and lakeseg, each a whole process "
        "(start-up included)"
    )
    print(
        f"{'sync':<7} {'drt s':>7} {'lakeseg s':>9} {'drt/lakeseg':>11} {'drt MB':>7} {'lakeseg MB':>10} "
        f"{'drt rows':>11} {'lakeseg rows':>12}  output"
    )
    for sync, lk_expected in (("first", args.rows), ("second", entered + changed + exited)):
        d, lk = runs[f"drt-{sync}"], runs[f"lakeseg-{sync}"]
        # drt has no diff for a DuckDB source: every sync writes every member.
        ok = _check(d["rows_written"] == args.rows and lk["rows_written"] == lk_expected, f"{sync} sync rows", problems)
        print(
            f"{sync:<7} {d['process_seconds']:7.2f} {lk['process_seconds']:9.2f} "
            f"{d['process_seconds'] / lk['process_seconds']:10.1f}x {d['peak_rss_mb']:7.0f} "
            f"{lk['peak_rss_mb']:10.0f} {d['rows_written']:11,} {lk['rows_written']:12,}  {ok}"
        )
    print(
        f"(expected rows: drt {args.rows:,} both times; lakeseg {args.rows:,}, then the churn "
        f"{entered + changed + exited:,})"
    )


if __name__ == "__main__":
    sys.exit(main())
