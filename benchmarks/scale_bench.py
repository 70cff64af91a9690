"""Benchmark: the scale table -- today's design (the diff on the runner) against the pushdown (the diff in Athena).

``python -m benchmarks.scale_bench [--sizes 1000000 2000000 10000000]`` (``make bench``).
The data is ``sync_bench``'s (5% churn: 2.5% entered, 2.5% exited, 5% changed),
with the segment written as Parquet (snappy), the form Athena's UNLOAD hands
the runner and the form the segment's table has in the lake. At each size,
each side is a whole process of its own:

- ``today``: the runner loads the committed snapshot from the state store,
  reads the whole segment (the UNLOAD's Parquet), classifies every member
  (``prepare``), writes the import files and commits the delta
  (``delta_to_commit``). To the runner: the segment's Parquet and the
  snapshot; from it: the import files and the delta. Athena scans the
  segment's columns.
- ``pushdown``, in two processes. *Athena's side*, stood in for by DuckDB
  (its CPU is Athena's, not the runner's): keys and keyed digests of the
  segment, ``classify.classification_sql`` against the snapshot, the rows to
  send (values, exit rows with their exit values) UNLOADed as Parquet, the
  delta written beside the base. *The runner*: reads the rows to send and
  writes the import files, then moves the pointer. To the runner: the rows to
  send; from it: the import files (and a pointer of a few hundred bytes).
  Athena scans the segment's columns and the snapshot files, once (the
  classification is kept as a small table the UNLOAD and the delta read).

Per-row costs are fitted by least squares (``y = a + b * rows``) over the
measured sizes and extrapolated to 100M and 1B members; the table says which
cells are measured (``m``) and which extrapolated (``x``). Last, the DuckDB
path against a raw ``COPY`` of the same rows (``sync_bench``'s contenders,
interleaved, best of ``--repeat``) at the largest measured size.
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

from benchmarks.state_bench import count_writes, peak_rss_mb
from benchmarks.sync_bench import EXIT, MEMORY_LIMIT, TARGET_PEAK_MB, _key, _segment

SIZES = (1_000_000, 2_000_000, 10_000_000)
TARGETS = (10_000_000, 100_000_000, 1_000_000_000)
TARGET_COPY_RATIO = 1.5  # issue 26: the DuckDB path at most 1.5x a raw COPY, at most 400 MB
MAX_FILE_BYTES = 100 * 1024 * 1024
METRICS = (
    ("to_runner_mb", "bytes to the runner (MB)"),
    ("from_runner_mb", "bytes from the runner (MB)"),
    ("runner_cpu_s", "runner CPU (s)"),
    ("runner_peak_mb", "runner peak memory (MB)"),
    ("state_written_mb", "state-store bytes written (MB)"),
    ("athena_scanned_mb", "Athena bytes scanned (MB)"),
    ("athena_cpu_s", "Athena-side CPU, DuckDB stand-in (s)"),
)
MB = 1e6
# Held, not fitted: DuckDB keeps its working set under memory_limit and spills the rest to disk, so the peak
# does not grow per row once the limit is reached (what grows is the spill on disk).
HELD = ("runner_peak_mb",)


def work_dir(root: Path, rows: int) -> Path:
    return root / f"state-{rows}"  # state_bench's folder: the same data


def _size(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _connect(work: Path, memory_limit: str = MEMORY_LIMIT):
    import duckdb

    from sync.run.diff import configure

    con = duckdb.connect()
    configure(con, memory_limit, work / "spill")
    return con


def _setup(work: Path, rows: int) -> None:
    """sync_bench's data, plus the segment as snappy Parquet (what UNLOAD writes)."""
    import duckdb

    from benchmarks.sync_bench import setup

    setup(work, rows)
    out = work / "segment.parquet"
    if out.exists():
        return
    con = duckdb.connect()
    con.execute(f"attach '{work / 'segment.duckdb'}' as seg (read_only)")
    con.execute(f"copy seg.main.segment to '{out}.tmp' (format parquet, compression snappy)")
    os.replace(f"{out}.tmp", out)


def _segment_sql(work: Path) -> str:
    return f"read_parquet('{work / 'segment.parquet'}')"


def run_today(work: Path) -> dict:
    """The runner diff: load the snapshot, read every member, classify, write import files, commit the delta."""
    from sync.core.import_files import write_import_files
    from sync.run.diff import changes_sql, delta_to_commit, effective_mapping_hash, prepare, save_delta_rows
    from sync.state.local import LocalStateStore

    seg, key = _segment(), _key()
    root, out = work / "scale-state", work / "scale-today"
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    store = LocalStateStore(root)
    con = _connect(work)
    mapping_hash = effective_mapping_hash(con, seg, key.fingerprint)
    prev_rows = con.execute(f"select count(*) from read_parquet('{work / 'previous.parquet'}')").fetchall()[0][0]
    common = {"fields": seg.fields, "mapping_hash": mapping_hash}
    store.commit_snapshot("files", "bench", work / "previous.parquet", rows=prev_rows, run_id="base", **common)
    written = count_writes(store)
    cpu0 = _cpu()
    previous = store.load_snapshot("files", "bench", out / "load")
    assert previous is not None
    prepared = prepare(con, seg, _segment_sql(work), previous=previous, workdir=out, digest_key=key)
    files = write_import_files(con, changes_sql(prepared), out / "import", MAX_FILE_BYTES)
    save_delta_rows(con, prepared)
    delta = delta_to_commit(con, prepared, frozenset())
    store.commit_snapshot(
        "files", "bench", prepared.new_snapshot, rows=prepared.plan.rows, run_id="next", delta=delta, **common
    )
    cpu = _cpu() - cpu0
    downloaded = _size(work / "segment.parquet", work / "previous.parquet")
    return {
        "to_runner_mb": downloaded / MB,
        "from_runner_mb": (_size(*files) + written["bytes"]) / MB,
        "runner_cpu_s": cpu,
        "runner_peak_mb": peak_rss_mb(),
        "state_written_mb": written["bytes"] / MB,
        "athena_scanned_mb": _size(work / "segment.parquet") / MB,
        "athena_cpu_s": None,  # Athena's UNLOAD of the whole segment: not stood in
        "sent_rows": prepared.plan.to_send,
    }


def run_athena(work: Path) -> dict:
    """The pushdown's Athena side, on DuckDB: classify, UNLOAD the rows to send, write the delta."""
    from sync.core.sql import qi, ql
    from sync.run import classify
    from sync.run.diff import DIGEST_KEY_VARIABLE, digest_sql, digest_subkey, key_sql
    from sync.state.deltas import DELETED

    seg, key = _segment(), _key()
    out = work / "scale-athena"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    con = _connect(work, "2GB")  # Athena's memory, not the runner's
    cpu0 = _cpu()
    con.execute(f"set variable {DIGEST_KEY_VARIABLE} = ?", [digest_subkey(key.secret)])
    renamed = ", ".join(f"cast({qi(m.column)} as varchar) as {qi(m.field)}" for m in seg.mappings)
    values = f"(select {renamed} from {_segment_sql(work)})"
    current = (
        f"(select {qi('Id')} as Id, {key_sql(qi('Id'))}, {digest_sql(seg.fields, keyed=True)} as digest from {values})"
    )
    snapshot = f"read_parquet('{work / 'previous.parquet'}')"
    con.execute(f"create temp table cls as {classify.classification_sql(current, snapshot)}")
    fields = ", ".join(f"c.{qi(f)}" for f in seg.fields)
    sent = (
        f"select {fields}, c.k1, c.k2, c.digest from (select *, {key_sql(qi('Id'))}, "
        f"{digest_sql(seg.fields, keyed=True)} as digest from {values}) c "
        f"semi join (select k1, k2 from cls where kind in ('e', 'c')) d on d.k1 = c.k1 and d.k2 = c.k2"
    )
    con.execute(f"create temp table sent as {sent}")
    exits = ", ".join("p.Id" if f == "Id" else f"{ql(EXIT[f])} as {qi(f)}" for f in seg.fields)
    churn = out / "churn.parquet"
    con.execute(
        f"copy (select {', '.join(qi(f) for f in seg.fields)} from sent union all "
        f"select {exits} from {snapshot} p semi join (select k1, k2 from cls where kind = 'x') d "
        f"on d.k1 = p.k1 and d.k2 = p.k2) to {ql(str(churn))} (format parquet, compression snappy)"
    )
    delta = out / "delta.parquet"
    con.execute(
        f"copy (select Id, k1, k2, digest, false as {DELETED} from (select {qi('Id')} as Id, k1, k2, digest from sent) "
        f"union all select p.Id, p.k1, p.k2, null, true from {snapshot} p "
        f"semi join (select k1, k2 from cls where kind = 'x') d on d.k1 = p.k1 and d.k2 = p.k2) "
        f"to {ql(str(delta))} (format parquet, compression uncompressed, dictionary_size_limit 1)"
    )
    cpu = _cpu() - cpu0
    return {
        "athena_scanned_mb": _size(work / "segment.parquet", work / "previous.parquet") / MB,
        "athena_cpu_s": cpu,
        "state_written_mb": _size(delta) / MB,
        "churn_mb": _size(churn) / MB,
        "sent_rows": con.execute(f"select count(*) from read_parquet({ql(str(churn))})").fetchall()[0][0],
    }


def run_pushdown_runner(work: Path) -> dict:
    """The pushdown's runner: the rows to send, from Athena's Parquet to import files, then the pointer."""
    from sync.core.import_files import write_import_files

    churn = work / "scale-athena" / "churn.parquet"
    out = work / "scale-pushdown"
    shutil.rmtree(out, ignore_errors=True)
    con = _connect(work)
    cpu0 = _cpu()
    files = write_import_files(con, f"select * from read_parquet('{churn}')", out / "import", MAX_FILE_BYTES)
    pointer = json.dumps(
        {
            "format": 2,
            "base": {"file": "snapshots/files/bench/base-0123abcd.parquet", "sha256": "0" * 64, "rows": 1},
            "deltas": [{"file": "snapshots/files/bench/delta-0123abcd.parquet", "sha256": "0" * 64, "rows": 1}],
            "rows": 1,
            "fields": list(_segment().fields),
            "mapping_hash": "0" * 80,
            "run_id": "next",
            "committed_at": "2026-01-01T00:00:00+00:00",
            "quarantine": [],
        },
        indent=2,
    ).encode()
    (out / "current.json").write_bytes(pointer)
    cpu = _cpu() - cpu0
    return {
        "to_runner_mb": _size(churn) / MB,
        "from_runner_mb": (_size(*files) + len(pointer)) / MB,
        "runner_cpu_s": cpu,
        "runner_peak_mb": peak_rss_mb(),
    }


CHILDREN = {"today": run_today, "athena": run_athena, "pushdown": run_pushdown_runner}


def _run(child: str, work: Path, rows: int = 0) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale_bench", "--child", child, "--work", str(work), "--rows", str(rows)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"{child} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares ``y = a + b * x``: (a, b). One point: through the origin."""
    if len(xs) == 1:
        return 0.0, ys[0] / xs[0]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b


def _label(rows: int) -> str:
    return f"{rows // 1_000_000_000}B" if rows >= 1_000_000_000 else f"{rows // 1_000_000}M"


def _cell(value: float | None, how: str) -> str:
    return "-" if value is None else f"{value:,.1f} {how}" if how == "m" else f"{value:,.0f} {how}"


def table(measured: dict[int, dict[str, dict]]) -> list[str]:
    """The scale table: each metric at each target size, today | pushdown: measured (m), fitted (x) or held (h)."""
    sizes = sorted(measured)
    head = f"{'metric':38}" + "".join(f"{_label(t) + ' today':>15}{_label(t) + ' pushdown':>17}" for t in TARGETS)
    lines, fits = [head], []
    for metric, name in METRICS:
        cells = []
        for target in TARGETS:
            for design in ("today", "pushdown"):
                ys = [measured[s][design][metric] for s in sizes]
                if target in measured:
                    cells.append(_cell(measured[target][design][metric], "m"))
                elif ys[0] is None:
                    cells.append("-")
                elif metric in HELD:
                    cells.append(_cell(ys[-1], "h"))
                else:
                    a, b = fit([float(s) for s in sizes], ys)
                    cells.append(_cell(a + b * target, "x"))
        lines.append(f"{name:38}" + "".join(f"{c:>15}{d:>17}" for c, d in zip(cells[::2], cells[1::2])))
        for design in ("today", "pushdown"):
            ys = [measured[s][design][metric] for s in sizes]
            if ys[0] is None:
                continue
            a, b = fit([float(s) for s in sizes], ys)
            measured_at = ", ".join(f"{y:,.1f}" for y in ys)
            fits.append(f"  {name} ({design}): measured {measured_at}; fit {a:,.2f} + {b * 1e6:,.3f} per 1M rows")
    return [
        *lines,
        "",
        "m: measured at that size; x: a + b * rows, least squares over the measured sizes; h: held at the largest",
        f"measured size (DuckDB spills past memory_limit {MEMORY_LIMIT}: the peak stops growing, the spill on disk",
        "grows instead); -: not stood in (today's Athena side is the UNLOAD of every member).",
        f"per-row fits over {', '.join(_label(s) for s in sizes)} (the measured values, then the fit):",
        *fits,
    ]


def copy_comparison(work: Path, repeat: int) -> list[str]:
    """The DuckDB path (lakeseg: prepare + import files) against a raw COPY of the same rows, interleaved."""
    from benchmarks.sync_bench import _measure

    copies, syncs = [], []
    for _ in range(repeat):
        copies.append(_measure("copy", work))
        syncs.append(_measure("lakeseg", work))
    best_copy = min(c["seconds"] for c in copies)
    best_sync = min(s["seconds"] for s in syncs)
    peak = max(s["peak_rss_mb"] for s in syncs)
    ratio = best_sync / best_copy
    return [
        f"DuckDB path against a raw COPY at {_label(_rows(work))} (best of {repeat}, interleaved, wall seconds):",
        f"  copy {best_copy:.2f} s, lakeseg {best_sync:.2f} s: {ratio:.2f}x "
        f"(target <= {TARGET_COPY_RATIO}x: {'met' if ratio <= TARGET_COPY_RATIO else 'NOT met'}); "
        f"lakeseg peak {peak:.0f} MB (target <= {TARGET_PEAK_MB} MB: {'met' if peak <= TARGET_PEAK_MB else 'NOT met'}; "
        f"memory_limit {MEMORY_LIMIT})",
        "  per pair: " + ", ".join(f"{s['seconds'] / c['seconds']:.2f}x" for c, s in zip(copies, syncs)),
    ]


def _rows(work: Path) -> int:
    return int(json.loads(next(work.glob("ready-*.json")).read_text())["rows"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--root", type=Path, default=Path("build/bench"))
    ap.add_argument("--repeat", type=int, default=3, help="copy/lakeseg pairs at the largest size (0: none)")
    ap.add_argument("--child", choices=sorted(CHILDREN) + ["setup"], help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "setup":
        _setup(args.work, args.rows)
        return 0
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.work)))
        return 0
    measured: dict[int, dict[str, dict]] = {}
    for rows in sorted(args.sizes):
        work = work_dir(args.root, rows)
        _run("setup", work, rows)
        t0 = time.perf_counter()
        today = _run("today", work)
        athena = _run("athena", work)
        pushdown = {**_run("pushdown", work), **athena}
        if today["sent_rows"] != athena["sent_rows"]:
            raise SystemExit(f"{rows}: today sends {today['sent_rows']} rows, the pushdown {athena['sent_rows']}")
        measured[rows] = {"today": today, "pushdown": pushdown}
        print(
            f"measured {_label(rows)} ({time.perf_counter() - t0:.0f} s): {today['sent_rows']:,} rows sent both ways; "
            + json.dumps({"today": today, "pushdown": pushdown}, default=lambda v: round(v, 2)),
            flush=True,
        )
    print()
    print("scale table, 5% churn: m = measured here, x = extrapolated (a + b * rows, least squares)")
    print("\n".join(table(measured)))
    if args.repeat:
        print()
        print("\n".join(copy_comparison(work_dir(args.root, max(args.sizes)), args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
