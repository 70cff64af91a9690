"""End to end: every sync writes the HTML report; `lakeseg report` writes it on demand."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_sync_writes_the_report_and_report_rewrites_it(lakeseg, build_now, tmp_path):
    # Given a sync of a fresh build
    code, report = lakeseg.json("sync", build_now)
    assert code == 0
    # Then the run records when dbt built the segments (run_results.json's generated_at)
    import json

    generated_at = json.loads((build_now.target_path / "run_results.json").read_text())["metadata"]["generated_at"]
    assert report["built_at"] == generated_at
    # and the report exists where LAKESEG_REPORT_PATH says, naming the run and every segment, with the build time
    from sync.output.report_html import when

    html = lakeseg.report.read_text(encoding="utf-8")
    assert report["run_id"] in html
    assert all(s["segment"] in html for s in report["segments"])
    assert f'<dd id="built-at">{when(generated_at)}</dd>' in html
    # When `lakeseg report` writes it elsewhere
    out = tmp_path / "elsewhere" / "r.html"
    result = lakeseg("report", build_now, "--output", str(out))
    # Then it says what it wrote
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}: 1 run(s), {len(report['segments'])} segment(s)" in result.output
    assert out.read_text(encoding="utf-8").count('class="plotly-graph-div') == len(report["segments"])


def test_no_report_writes_none(lakeseg, build_now):
    code, _ = lakeseg.json("sync", build_now, "--no-report")
    assert code == 0 and not lakeseg.report.exists()
