"""Run documents for report tests, made by the engine's own dataclasses (so they cannot drift from
what `lakeseg run` records)."""

from __future__ import annotations

from sync.run.diff import Plan
from sync.run.engine import RunReport, SegmentReport


def _plan(segment, rows, entered, changed, exited, previous, full_refresh_reason=""):
    return Plan(
        segment,
        rows=rows,
        previous_rows=previous,
        entered=entered,
        changed=changed,
        exited=exited,
        unchanged=rows - entered - changed,
        exit_rows=exited,
        full_refresh=bool(full_refresh_reason),
        full_refresh_reason=full_refresh_reason,
        first_sync=previous == 0,
    ).as_dict()


def history() -> list[dict]:
    """Four runs over two segments: a first sync, a change, a guard refusal plus a skip, and an interrupted run."""
    runs = []
    r1 = RunReport(
        "20261101T050000000Z-aaaaaa",
        "run",
        "local",
        "files",
        "build/state",
        "2026-11-01T05:00:00+00:00",
        "2026-11-01T05:01:00+00:00",
        "succeeded",
    )
    r1.segments = [
        SegmentReport(
            "seg_clickers",
            "synced",
            "",
            _plan("seg_clickers", 1200, 1200, 0, 0, 0, "first sync"),
            files=["part-00000.csv"],
            location="build/exports/r1/seg_clickers",
            started_at="2026-11-01T05:00:10+00:00",
        ),
        SegmentReport(
            "seg_active",
            "synced",
            "",
            _plan("seg_active", 300, 300, 0, 0, 0, "first sync"),
            files=["part-00000.csv"],
            location="build/exports/r1/seg_active",
            started_at="2026-11-01T05:00:20+00:00",
        ),
    ]
    runs.append(r1.as_dict())
    r2 = RunReport(
        "20261102T050000000Z-bbbbbb",
        "run",
        "local",
        "files",
        "build/state",
        "2026-11-02T05:00:00+00:00",
        "2026-11-02T05:01:00+00:00",
        "succeeded",
    )
    r2.segments = [
        SegmentReport(
            "seg_clickers",
            "synced",
            "",
            _plan("seg_clickers", 1260, 80, 15, 20, 1200),
            files=["part-00000.csv"],
            location="build/exports/r2/seg_clickers",
            started_at="2026-11-02T05:00:10+00:00",
        ),
        SegmentReport(
            "seg_active",
            "unchanged",
            "nothing changed",
            _plan("seg_active", 300, 0, 0, 0, 300),
            started_at="2026-11-02T05:00:20+00:00",
        ),
    ]
    runs.append(r2.as_dict())
    r3 = RunReport(
        "20261103T050000000Z-cccccc",
        "run",
        "local",
        "files",
        "build/state",
        "2026-11-03T05:00:00+00:00",
        "2026-11-03T05:01:00+00:00",
        "failed",
    )
    r3.segments = [
        SegmentReport(
            "seg_clickers",
            "skipped",
            "tests did not pass: unique_seg_clickers_endpoint_id (fail, 3 failing rows)",
            started_at="2026-11-03T05:00:10+00:00",
        ),
        SegmentReport(
            "seg_active",
            "refused",
            "would exit 250 of 300 members (83% > 30%); --allow-mass-exit",
            _plan("seg_active", 50, 0, 0, 250, 300),
            started_at="2026-11-03T05:00:20+00:00",
        ),
    ]
    doc = r3.as_dict()
    doc["segments"][0]["quarantined"] = ["id-1", "id-2"]  # a field the lead is adding: tolerated
    runs.append(doc)
    r4 = RunReport(
        "20261104T050000000Z-dddddd", "run", "local", "files", "build/state", "2026-11-04T05:00:00+00:00"
    )  # killed: still "running", no finish
    runs.append(r4.as_dict())
    return runs


def synthetic_history(segments: int = 6, runs: int = 30, *, start: str = "2026-01-01T05:00:00+00:00") -> list[dict]:
    """``runs`` daily runs over ``segments`` segments, as the engine records them: per-phase timings, as_of and
    dbt's build time; every 7th run refuses one segment (mass exit), every 11th skips one, every 13th quarantines
    rows and the 17th run fails outright."""
    from datetime import datetime, timedelta

    first = datetime.fromisoformat(start)
    names = [f"seg_{i:02d}" for i in range(segments)]
    sizes = {n: 10_000 + 1_000 * i for i, n in enumerate(names)}
    out = []
    for k in range(runs):
        t = first + timedelta(days=k)
        run = RunReport(
            f"{t:%Y%m%dT%H%M%S}000Z-{k:06x}",
            "run",
            "local",
            "files",
            "build/state",
            t.isoformat(),
            (t + timedelta(seconds=95)).isoformat(),
            "succeeded",
        )
        run.as_of = f"{t:%Y-%m-%d} 00:00:00"
        for i, name in enumerate(names):
            previous = sizes[name]
            stamp = (t + timedelta(seconds=60 + i)).isoformat()
            if k % 7 == 6 and i == k % segments:
                run.segments.append(
                    SegmentReport(
                        name,
                        "refused",
                        "would exit 80% of members (80% > 30%); --allow-mass-exit",
                        _plan(name, previous // 5, 0, 0, previous - previous // 5, previous),
                        started_at=stamp,
                        duration_s=2.5,
                    )
                )
                run.status = "failed"
                continue
            if k % 11 == 10 and i == (k + 1) % segments:
                run.segments.append(
                    SegmentReport(name, "skipped", f"tests did not pass: not_null_{name}_id (fail)", started_at=stamp)
                )
                run.status = "failed"
                continue
            entered, exited = 40 + (k * 7 + i) % 60, 30 + (k * 5 + i) % 50
            rows = previous + entered - exited
            sizes[name] = rows
            seg = SegmentReport(
                name,
                "synced",
                "",
                _plan(name, rows, entered, 10, exited, previous, "first sync" if k == 0 else ""),
                files=["part-00000.csv"],
                location=f"build/exports/{run.run_id}/{name}",
                started_at=stamp,
                duration_s=3.0 + i,
            )
            run.segments.append(seg)
        run.built_at = (t + timedelta(seconds=50)).isoformat()
        run.phases = {
            "dbt_build": 50.0,
            "select": 0.4,
            "read": 12.5,
            "diff": 8.0,
            "files": 3.1,
            "delivery": 22.0,
            "commit": 1.5,
        }
        doc = run.as_dict()
        if k % 13 == 12:
            doc["segments"][0]["quarantined"] = [{"id": f"q{j}", "message": "rejected"} for j in range(3)]
        if k == 16:
            doc["status"], doc["error"] = "failed", "dbt build failed: Database Error in model seg_00\n  details…"
        out.append(doc)
    return out
