"""The HTML report: what it gathers from run history, and that it is one self-contained, escaped page."""

from __future__ import annotations

import re

from sync.output.report_html import collect, render_html, run_outcome, write_report
from sync.state import open_state_store
from tests.report.fixtures_runs import history


def test_collect_orders_each_segments_runs_oldest_first():
    # Given run documents listed newest first, as the state store lists them
    data = collect(list(reversed(history())))
    # Then each segment's points run oldest to newest, and the last status is the newest run's
    clickers = next(s for s in data.segments if s.name == "seg_clickers")
    assert [p.status for p in clickers.points] == ["synced", "synced", "skipped"]
    assert clickers.last.reason.startswith("tests did not pass")
    assert [s.name for s in data.segments] == ["seg_active", "seg_clickers"]


def test_refusals_skips_quarantine_and_deliveries_are_listed():
    data = collect(history())
    assert [(n, p.status) for n, p in data.events("refused")] == [("seg_active", "refused")]
    assert [(n, p.run_id[-6:]) for n, p in data.events("skipped")] == [("seg_clickers", "cccccc")]
    assert [(n, p.quarantined) for n, p in data.quarantines] == [("seg_clickers", 2)]
    assert [p.location for _, p in data.deliveries][0] == "build/exports/r2/seg_clickers"
    first = next(p for s in data.segments for p in s.points if s.name == "seg_clickers")
    assert first.full_send == "first sync"


def test_a_run_still_running_without_a_finish_is_interrupted():
    runs = history()
    assert [run_outcome(r) for r in runs] == ["succeeded", "succeeded", "failed", "interrupted"]


def test_page_inlines_plotly_once_and_loads_nothing_from_the_network():
    html = render_html(history(), generated_at="2026-11-05T00:00:00+00:00")
    # plotly.js is in the page exactly once; no script or stylesheet comes from elsewhere
    assert html.count("* plotly.js v") == 1  # the library's banner: inlined once
    assert html.count("Plotly.newPlot") == 2  # one chart per segment with counts
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=\"https?:", html)
    assert html.count('class="plotly-graph-div') == 2  # one chart per segment with counts
    for expected in (
        "seg_active",
        "seg_clickers",
        "would exit 250 of 300",
        "unique_seg_clickers_endpoint_id",
        "build/exports/r2/seg_clickers",
        "interrupted",
        "2026-11-03 05:00:20 UTC",
    ):
        assert expected in html


def test_reasons_are_html_escaped():
    runs = history()
    runs[2]["segments"][0]["reason"] = "tests did not pass: <script>alert(1)</script>"
    html = render_html(runs)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_unknown_fields_and_odd_shapes_are_tolerated():
    runs = history()
    runs[0]["segments"][0]["quarantined"] = {"count": 7, "reason": "rejected 3 times"}
    runs[1]["segments"][1]["plan"] = None
    runs[1]["brand_new_field"] = {"x": 1}
    runs.append({"run_id": "x", "segments": [{"segment": "seg_new", "status": "failed", "reason": "boom"}]})
    data = collect(runs)
    assert [p.quarantined for n, p in data.quarantines] == [2, 7]
    assert "seg_new" in render_html(runs)


def test_empty_history_says_so():
    assert "No runs recorded yet" in render_html([])


def test_write_report_reads_the_state_store(tmp_path):
    # Given a local state store holding the runs
    store = open_state_store(str(tmp_path / "state"))
    for run in history():
        store.write_run(run)
    # When the report is written
    written = write_report(store, tmp_path / "out" / "index.html")
    # Then the page is there, whole, with every run
    assert written.path.read_text().rstrip().endswith("</html>")
    assert (written.runs, written.segments) == (4, 2)
    assert written.bytes == written.path.stat().st_size
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_a_run_in_progress_is_running_in_the_report_and_history_and_a_dead_one_interrupted(live_pid):
    import socket
    from datetime import datetime, timezone

    from sync.app.history import history_lines

    # Given a run document still 'running' (no finish time) whose process is alive on this host, and one whose
    # process is gone
    now = datetime.now(timezone.utc).isoformat()
    alive = {
        "run_id": "r-live",
        "command": "sync",
        "status": "running",
        "started_at": now,
        "host": socket.gethostname(),
        "pid": live_pid,
        "segments": [],
    }
    dead = {**alive, "run_id": "r-dead", "pid": 2**22 + 7}
    # Then the report and history agree: the live one is running, the dead one interrupted
    assert [run_outcome(alive), run_outcome(dead)] == ["running", "interrupted"]
    lines = history_lines([alive, dead])
    assert "running" in lines[0] and "interrupted" not in lines[0] and "killed or crashed" not in "\n".join(lines[:1])
    assert "interrupted" in lines[1]
