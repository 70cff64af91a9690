"""Terminal output: the plain table (pipes, logs), the rich table (terminals), history text."""

from __future__ import annotations

import io

from rich.console import Console

from sync.app.history import history_lines
from sync.output.terminal import Progress, print_rich, render
from sync.run.engine import RunReport, SegmentReport
from tests.report.fixtures_runs import _plan, history


def a_run(command="sync") -> RunReport:
    run = RunReport(
        "20261101T050000000Z-aaaaaa",
        command,
        "local",
        "files",
        "build/state",
        "2026-11-01T05:00:00+00:00",
        "2026-11-01T05:01:00+00:00",
        "succeeded",
    )
    run.segments = [
        SegmentReport(
            "seg_new",
            "synced" if command != "plan" else "planned",
            "first sync",
            _plan("seg_new", 10, 10, 0, 0, 0, "first sync"),
            files=["part-00000.csv"],
            location="build/exports/x/seg_new",
        ),
        SegmentReport(
            "seg_old",
            "synced" if command != "plan" else "planned",
            "",
            _plan("seg_old", 100, 3, 2, 1, 99),
            files=["part-00000.csv"],
        ),
    ]
    return run


def test_plain_table_shows_why_a_segment_had_a_full_send():
    text = render(a_run())
    header, rule, new, old = text.splitlines()[2:6]
    assert header.split() == [
        "segment",
        "status",
        "rows",
        "entered",
        "changed",
        "exited",
        "unchanged",
        "resent",
        "sent",
        "quarantined",
        "files",
        "full",
        "send",
    ]
    assert new.endswith("first sync") and old.endswith("-")
    assert "\x1b[" not in text  # no terminal escapes in plain output


def test_plan_says_it_compares_the_last_dbt_build_not_the_lake():
    assert "last dbt build (not the lake itself)" in render(a_run("plan"))


def test_rich_table_carries_the_same_content():
    out = io.StringIO()
    print_rich(a_run(), Console(file=out, width=160, force_terminal=False))
    text = out.getvalue()
    assert "seg_new" in text and "first sync" in text and "2 of 2 segment(s) ok" in text


def test_progress_is_silent_off_a_terminal():
    stream = io.StringIO()
    bars = Progress(stream)
    bars("seg_a", "delivering", 1, 2)
    bars.close()
    assert stream.getvalue() == ""


def test_progress_draws_bars_when_enabled():
    stream = io.StringIO()
    bars = Progress(stream, enabled=True)
    bars("seg_a", "delivering", 1, 2)
    bars.close()
    assert "seg_a" in stream.getvalue()


def test_history_shows_full_sends_and_interrupted_runs():
    lines = "\n".join(history_lines(list(reversed(history()))))
    assert "20261104T050000000Z-dddddd  run   interrupted" in lines
    assert "the run never finished" in lines
    assert "seg_clickers: synced (rows 1,200, entered 1,200, changed 0, exited 0) - full send: first sync" in lines
    assert "seg_active: refused" in lines and "would exit 250" in lines


def test_the_terminal_table_is_rich_and_plain_text_is_its_unstyled_form(monkeypatch):
    # Given the same run printed to a colour terminal and rendered as plain text
    out = io.StringIO()
    print_rich(a_run(), Console(file=out, width=200, force_terminal=True, color_system="standard"))
    plain = render(a_run())
    # Then the terminal has styles, the plain text none, and both carry the same rows
    assert "\x1b[" in out.getvalue() and "\x1b[" not in plain
    assert [line.split()[:2] for line in plain.splitlines()[4:6]] == [["seg_new", "synced"], ["seg_old", "synced"]]


def test_no_color_leaves_the_terminal_table_without_colours(monkeypatch):
    # Given NO_COLOR, when the run is printed to a terminal, then rich writes no colour codes
    monkeypatch.setenv("NO_COLOR", "1")
    out = io.StringIO()
    print_rich(a_run(), Console(file=out, width=200, force_terminal=True))
    assert "\x1b[32m" not in out.getvalue() and "seg_new" in out.getvalue()
