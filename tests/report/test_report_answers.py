"""What the report answers first (freshness, time, failure), and that its size grows sub-linearly with history.

Read from the rendered HTML; the same points in a real browser are in test_report_browser.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import plotly
import pytest

from sync.output.report_html import collect, one_line, render_html, run_duration, run_phases, seconds
from tests.report.fixtures_runs import history, synthetic_history

LATER = "2026-01-30T06:00:00+00:00"  # an hour after the last of 30 synthetic daily runs


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _section(html: str, ident: str) -> str:
    start = html.index(f'id="{ident}"')
    end = html.find("<h2 ", start + 1)
    return html[start : end if end > 0 else None]


def test_the_header_gives_as_of_build_time_data_age_and_the_last_runs_status():
    # Given 30 daily runs that recorded as_of and dbt's build time
    runs = synthetic_history(6, 30)
    # When the report is written an hour after the last run
    header = _text(_section(render_html(runs, generated_at=LATER), "freshness"))
    # Then its header answers freshness first: as_of, when dbt built it, how old the data is, the last run
    assert "Data as of 2026-01-30 00:00:00" in header
    assert "Built by dbt 2026-01-30 05:00:50 UTC" in header
    assert "Data age 6 h 0 min" in header
    assert "Last run succeeded 2026-01-30 05:00:00 UTC" in header
    assert "Last run took 1 min 35 s" in header


def test_a_run_report_without_build_time_or_as_of_says_not_recorded():
    header = _text(_section(render_html(history(), generated_at="2026-11-05T00:00:00+00:00"), "freshness"))
    assert "Data as of not recorded" in header and "Built by dbt not recorded" in header
    assert "Last run interrupted" in header


def test_the_last_runs_phases_are_shown_in_the_order_a_run_goes_through_them():
    # Given runs that recorded per-phase seconds
    html = render_html(synthetic_history(6, 30), generated_at=LATER)
    # Then the header shows each phase with its seconds, in the pipeline's order
    phases = _text(_section(html, "time"))
    assert re.search(
        r"dbt_build 50 s select 0\.4 s read 12 s diff 8\.0 s files 3\.1 s delivery 22 s commit 1\.5 s", phases
    ), phases
    # and each run in the runs table has its duration and phases
    runs = _text(_section(html, "runs"))
    assert "1 min 35 s dbt_build 50 s · select 0.4 s · read 12 s" in runs


@pytest.mark.parametrize(
    "phases, expected",
    [
        pytest.param(None, [], id="phases-missing"),
        pytest.param(
            {"read": 2, "dbt_build": 1.5, "custom": 0.1, "bad": "x", "neg": -1},
            [("dbt_build", 1.5), ("read", 2.0), ("custom", 0.1)],
            id="pipeline-order-then-others",
        ),
    ],
)
def test_phases_are_tolerated_when_absent_or_odd(phases, expected):
    run = {"run_id": "r", "started_at": "2026-01-01T00:00:00+00:00"}
    if phases is not None:
        run["phases"] = phases
    assert run_phases(run) == expected


@pytest.mark.parametrize(
    "value, text",
    [
        pytest.param(0.44, "0.4 s", id="under-ten-seconds"),
        pytest.param(42, "42 s", id="seconds"),
        pytest.param(185, "3 min 05 s", id="minutes"),
        pytest.param(7380, "2 h 03 min", id="hours"),
        pytest.param(None, "-", id="unknown"),
    ],
)
def test_durations_read_as_people_say_them(value, text):
    assert seconds(value) == text


def test_a_run_without_a_finish_has_no_duration():
    assert run_duration({"started_at": "2026-01-01T00:00:00+00:00"}) is None


def test_each_failure_has_its_one_line_reason_and_the_command_that_reproduces_it():
    # Given 30 runs with refusals, skips and one run whose dbt build failed with a two-line error
    html = render_html(synthetic_history(6, 30), generated_at=LATER)
    rows = re.findall(r"<tr data-filter[^>]*>.*?</tr>", _section(html, "failures"), re.S)
    text = [_text(r) for r in rows]
    # Then the failed run shows the first line of its error and `lakeseg run` to reproduce it
    assert any("dbt build failed: Database Error in model seg_00 lakeseg run" in t and "details" not in t for t in text)
    # and each refused or skipped segment its reason and `lakeseg run --select <segment>`
    assert any("refused" in t and "would exit 80%" in t and "lakeseg run --select seg_" in t for t in text)
    assert any("skipped" in t and "tests did not pass" in t and "lakeseg run --select seg_" in t for t in text)


def test_a_failed_run_without_an_error_names_its_segments_instead_of_an_empty_cell():
    html = render_html(history(), generated_at="2026-11-05T00:00:00+00:00")
    runs = _text(_section(html, "runs"))
    assert "seg_clickers skipped; seg_active refused" in runs


def test_one_line_keeps_the_first_line_and_shortens_it():
    assert one_line("\n  boom: x\nmore") == "boom: x"
    assert one_line("y" * 300).endswith("…") and len(one_line("y" * 300)) == 200


def test_refusals_and_quarantine_link_to_the_run_in_the_segments_history():
    # Given the four-run history (a refusal of seg_active, quarantined rows in seg_clickers)
    html = render_html(history(), generated_at="2026-11-05T00:00:00+00:00")
    # Then each link points at an element that exists: the run's row in the segment's history
    for section in ("refusals", "quarantine", "failures"):
        targets = re.findall(r'href="#([^"]+)"', _section(html, section))
        assert targets, section
        for target in targets:
            assert f'id="{target}"' in html, (section, target)
    assert 'href="#seg-seg_active-run-20261103T050000000Z-cccccc"' in _section(html, "refusals")


def test_links_to_runs_aggregated_into_a_week_still_land_in_that_weeks_row():
    # Given a year of runs: the early refusals are summed into week rows
    html = render_html(synthetic_history(6, 365), generated_at="2026-12-31T06:00:00+00:00")
    targets = re.findall(r'href="#(seg-[^"]+-run-[^"]+)"', html)
    # Then every link to a run still has a target
    missing = [t for t in targets if f'id="{t}"' not in html]
    assert targets and not missing, missing[:3]


def test_entered_and_exited_are_totalled_per_day_and_per_week_from_committed_runs_only():
    # Given 30 runs
    runs = synthetic_history(6, 30)
    data = collect(runs)
    days, weeks = data.periods("day"), data.periods("week")
    # Then each day's totals are what the committed runs sent that day
    day = next(p for p in days if p.segment == "seg_00" and p.label == "2026-01-29")
    point = next(
        p for s in data.segments if s.name == "seg_00" for p in s.points if p.started_at.startswith("2026-01-29")
    )
    assert (day.entered, day.exited) == (point.plan["entered"], point.plan["exited"])
    # and a week's totals add up its days, leaving out refused plans
    week = next(p for p in weeks if p.segment == "seg_00" and p.label == "2026-W02")
    committed = [
        p
        for s in data.segments
        if s.name == "seg_00"
        for p in s.points
        if "2026-01-05" <= p.started_at[:10] <= "2026-01-11" and p.status == "synced"
    ]
    assert week.runs == 7 and week.entered == sum(p.plan["entered"] for p in committed)
    html = render_html(runs, generated_at=LATER)
    assert 'id="totals-day-table"' in html and 'id="totals-week-table"' in html


def test_a_refused_run_is_a_mark_off_the_members_line_not_a_dip_in_it():
    # Given a history in which seg_active's guard refused a plan to drop from 300 to 50 members
    data = collect(history())
    active = next(s for s in data.segments if s.name == "seg_active")
    # Then the refused row has no committed members, and the text alternative's lowest is a committed size
    assert [b.committed_members for b in active.buckets] == [300, 300, None]
    assert "lowest 300, highest 300; 1 row(s) with no committed run, marked ×" in active.summary()


def test_member_axes_start_at_zero_and_exits_are_drawn_as_negative_deltas():
    html = render_html(synthetic_history(2, 30), generated_at=LATER)
    assert '"rangemode":"tozero"' in html
    figure = re.search(r'"name":"exited".*?"y":\[([^\]]*)\]', html, re.S) or re.search(
        r'"y":\[([^\]]*)\][^{}]*"name":"exited"', html, re.S
    )
    assert figure and all(float(v) <= 0 for v in figure.group(1).split(",") if v)


def test_every_chart_has_a_text_alternative_and_a_table_of_its_numbers():
    html = render_html(synthetic_history(6, 30), generated_at=LATER)
    assert html.count('role="img" aria-label="Chart of seg_') == 6
    assert html.count("<figcaption") == 6
    for i in range(6):
        assert f'id="table-seg_{i:02d}"' in html
    assert re.search(r"seg_00: members [\d,]+ to [\d,]+ over 30 run\(s\)", html)


def test_filters_are_labelled_selects_for_segment_status_and_time_range():
    html = render_html(synthetic_history(6, 30), generated_at=LATER)
    for ident in ("f-segment", "f-status", "f-range"):
        assert f'<label for="{ident}">' in html and f'<select id="{ident}">' in html


def test_the_size_grows_sub_linearly_with_history_and_plotly_is_inlined_once():
    # Given 6 segments with 30 and with 365 daily runs
    small = render_html(synthetic_history(6, 30), generated_at=LATER)
    large = render_html(synthetic_history(6, 365), generated_at="2026-12-31T06:00:00+00:00")
    # Then plotly.js is in each page once, and nothing is fetched from elsewhere
    for html in (small, large):
        assert html.count("* plotly.js v") == 1 and not re.search(r"<script[^>]+src=", html)
    # and twelve times the history costs far less than twelve times the page beyond plotly.js
    plotly_js = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").stat().st_size
    assert len(large) < 5.6e6 and len(small) < 5.2e6, (len(small), len(large))
    assert len(large) - plotly_js < 4 * (len(small) - plotly_js), (len(small), len(large), plotly_js)
