"""Run documents for report tests, made by the engine's own dataclasses (so they cannot drift from
what `lakeseg run` records)."""

from __future__ import annotations

from sync.run.diff import Plan
from sync.run.engine import RunReport, SegmentReport


def _plan(segment, rows, entered, changed, exited, previous, full_refresh_reason=""):
    return Plan(segment, rows=rows, previous_rows=previous, entered=entered, changed=changed, exited=exited,
                unchanged=rows - entered - changed, exit_rows=exited, full_refresh=bool(full_refresh_reason),
                full_refresh_reason=full_refresh_reason, first_sync=previous == 0).as_dict()


def history() -> list[dict]:
    """Four runs over two segments: a first sync, a change, a guard refusal plus a skip, and an interrupted run."""
    runs = []
    r1 = RunReport("20261101T050000000Z-aaaaaa", "run", "local", "files", "build/state",
                   "2026-11-01T05:00:00+00:00", "2026-11-01T05:01:00+00:00", "succeeded")
    r1.segments = [
        SegmentReport("seg_clickers", "synced", "", _plan("seg_clickers", 1200, 1200, 0, 0, 0, "first sync"),
                      files=["part-00000.csv"], location="build/exports/r1/seg_clickers",
                      started_at="2026-11-01T05:00:10+00:00"),
        SegmentReport("seg_active", "synced", "", _plan("seg_active", 300, 300, 0, 0, 0, "first sync"),
                      files=["part-00000.csv"], location="build/exports/r1/seg_active",
                      started_at="2026-11-01T05:00:20+00:00"),
    ]
    runs.append(r1.as_dict())
    r2 = RunReport("20261102T050000000Z-bbbbbb", "run", "local", "files", "build/state",
                   "2026-11-02T05:00:00+00:00", "2026-11-02T05:01:00+00:00", "succeeded")
    r2.segments = [
        SegmentReport("seg_clickers", "synced", "", _plan("seg_clickers", 1260, 80, 15, 20, 1200),
                      files=["part-00000.csv"], location="build/exports/r2/seg_clickers",
                      started_at="2026-11-02T05:00:10+00:00"),
        SegmentReport("seg_active", "unchanged", "nothing changed", _plan("seg_active", 300, 0, 0, 0, 300),
                      started_at="2026-11-02T05:00:20+00:00"),
    ]
    runs.append(r2.as_dict())
    r3 = RunReport("20261103T050000000Z-cccccc", "run", "local", "files", "build/state",
                   "2026-11-03T05:00:00+00:00", "2026-11-03T05:01:00+00:00", "failed")
    r3.segments = [
        SegmentReport("seg_clickers", "skipped",
                      "tests did not pass: unique_seg_clickers_endpoint_id (fail, 3 failing rows)",
                      started_at="2026-11-03T05:00:10+00:00"),
        SegmentReport("seg_active", "refused", "would exit 250 of 300 members (83% > 30%); --allow-mass-exit",
                      _plan("seg_active", 50, 0, 0, 250, 300), started_at="2026-11-03T05:00:20+00:00"),
    ]
    doc = r3.as_dict()
    doc["segments"][0]["quarantined"] = ["id-1", "id-2"]  # a field the lead is adding: tolerated
    runs.append(doc)
    r4 = RunReport("20261104T050000000Z-dddddd", "run", "local", "files", "build/state",
                   "2026-11-04T05:00:00+00:00")  # killed: still "running", no finish
    runs.append(r4.as_dict())
    return runs
