"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) over the DevTools protocol.

Skips, naming the install command, when Chromium is missing (`make test` installs it where it can).
"""

from __future__ import annotations

import pytest

from sync.output.report_html import render_html
from tests.report.fixtures_runs import history, synthetic_history
from tools.headless import INSTALL_HINT, Browser, find_chromium, png_is_blank

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason=f"Chromium is not installed; install it with `{INSTALL_HINT}`"
)


@pytest.fixture(scope="module")
def browser():
    with Browser.launch() as b:
        yield b


def test_report_renders_its_charts_without_errors_or_network(tmp_path, browser):
    # Given a report of four runs over two segments, written to a file
    page_file = tmp_path / "index.html"
    page_file.write_text(render_html(history()), encoding="utf-8")
    # When Chromium opens it from file://
    page = browser.open(page_file.as_uri())
    # Then each segment's chart has drawn its SVG (a line, and bars for entered up and exited down)
    assert page.count(".js-plotly-plot") == 2
    assert page.count(".js-plotly-plot svg.main-svg") >= 4
    # (and seg_active's refused run a × of its own, off the members line)
    assert page.count(".js-plotly-plot .scatterlayer .trace") == 3
    assert page.count(".js-plotly-plot .barlayer .trace") == 4
    # and the console shows no errors, and nothing was asked of the network
    assert page.errors == []
    assert page.requests == [page_file.as_uri()]
    # and a screenshot is not blank
    png = page.screenshot(tmp_path / "report.png")
    assert not png_is_blank(png)


def test_blank_page_screenshot_is_detected_as_blank(tmp_path, browser):
    # The blank check itself must be able to fail
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><html><body style='background:#fff'></body></html>")
    page = browser.open(blank.as_uri())
    assert png_is_blank(page.screenshot())


# --------------------------------------------------------------------------- the first answers, on any screen

LATER = "2026-01-30T06:00:00+00:00"  # an hour after the last of 30 synthetic daily runs
WIDTHS = [pytest.param(390, id="phone-390px"), pytest.param(1200, id="desktop-1200px")]


@pytest.fixture(scope="module")
def thirty_runs(tmp_path_factory):
    """6 segments x 30 daily runs, with refusals, skips, quarantine, a failed run and per-phase timings."""
    path = tmp_path_factory.mktemp("report") / "index.html"
    path.write_text(render_html(synthetic_history(6, 30), generated_at=LATER), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def four_runs(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "index.html"
    path.write_text(render_html(history(), generated_at="2026-11-05T00:00:00+00:00"), encoding="utf-8")
    return path


def _visible(page, selector: str) -> int:
    return int(
        page.evaluate(
            f"Array.from(document.querySelectorAll({selector!r})).filter(e => e.offsetParent !== null).length"
        )
    )


@pytest.mark.parametrize("fixture", ["thirty_runs", "four_runs"])
@pytest.mark.parametrize("width", WIDTHS)
def test_no_horizontal_scrolling_at_any_width(request, browser, fixture, width):
    # Given a report
    page_file = request.getfixturevalue(fixture)
    # When Chromium opens it in a viewport of that width
    page = browser.open(page_file.as_uri(), width=width)
    # Then the page is no wider than the viewport (measured in the page), and the charts drew without errors
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # nor is any element (plotly's drag handles, inside its clipped SVG, aside)
    assert (
        page.evaluate(
            "Math.max(...Array.from(document.querySelectorAll('body *'))"
            ".filter(e => !e.parentElement.closest('svg'))"
            ".map(e => e.getBoundingClientRect().right))"
        )
        <= width
    )
    assert page.errors == [] and page.requests == [page_file.as_uri()]  # offline: nothing else was fetched
    # and at 390 px the members, entered and exited of the last status are on screen, labelled
    if width == 390:
        labels = page.evaluate(
            "Array.from(document.querySelectorAll('#last-status tbody tr:first-child td'))"
            ".map(td => getComputedStyle(td, '::before').content)"
        )
        assert {'"Members"', '"Entered"', '"Exited"'} <= set(labels)


def test_the_header_shows_freshness_time_and_the_last_status_above_the_fold(browser, thirty_runs):
    # Given 30 runs, opened on a phone
    page = browser.open(thirty_runs.as_uri(), width=390, height=844)
    # Then as_of, dbt's build time, the data's age and the last run's status are within the first screen
    for ident in ("as-of", "built-at", "data-age", "last-duration"):
        box = page.evaluate(f"document.getElementById('{ident}').getBoundingClientRect().bottom")
        assert box < 844, ident
    assert page.evaluate("document.getElementById('data-age').textContent") == "6 h 0 min"
    # and the last run's phases are drawn as bars, one per phase
    assert page.count(".phases li .bar") == 7


def test_filters_work_from_the_keyboard(browser, thirty_runs):
    # Given the report, with the keyboard focus at the top of the page
    page = browser.open(thirty_runs.as_uri(), width=390)
    total = _visible(page, "tr[data-filter]")
    # When Tab reaches the segment filter and ArrowDown picks the first segment
    for _ in range(10):
        page.press("Tab")
        if page.focused == "f-segment":
            break
    assert page.focused == "f-segment"
    page.press("ArrowDown")
    # Then only that segment's rows and section remain
    assert page.evaluate("document.getElementById('f-segment').value") == "seg_00"
    segments = page.evaluate(
        "Array.from(document.querySelectorAll('[data-segment]')).filter(e => e.offsetParent"
        " !== null || e.tagName === 'TR' && !e.hidden && e.closest('details')).map(e =>"
        " e.getAttribute('data-segment'))"
    )
    assert segments and all("seg_00" in s.split(" ") for s in segments)
    assert page.count("section.segment:not([hidden])") == 1
    # When Tab moves to the status filter and ArrowDown chooses "any problem"
    page.press("Tab")
    assert page.focused == "f-status"
    page.press("ArrowDown")
    assert page.evaluate("document.getElementById('f-status').value") == "problem"
    statuses = page.evaluate(
        "Array.from(document.querySelectorAll('#failures-table tbody tr:not([hidden])'))"
        ".map(tr => tr.getAttribute('data-status'))"
    )
    assert statuses and set(statuses) <= {"failed", "skipped", "refused", "interrupted"}
    # When Tab moves to the time range and ArrowDown twice chooses the last 7 days
    page.press("Tab")
    assert page.focused == "f-range"
    page.press("ArrowDown", 2)
    assert page.evaluate("document.getElementById('f-range').value") == "7"
    oldest = page.evaluate(
        "Math.min(...Array.from(document.querySelectorAll('tr[data-t]:not([hidden])'))"
        ".map(tr => Number(tr.getAttribute('data-t'))).concat([Infinity]))"
    )
    assert oldest >= page.evaluate("Number(document.body.dataset.ref)") - 7 * 86400
    # and the count of rows shown is announced
    assert "showing" in page.evaluate("document.getElementById('f-count').textContent")
    assert _visible(page, "tr[data-filter]") < total


def test_every_chart_has_a_text_alternative_and_its_numbers_in_a_table(browser, thirty_runs):
    page = browser.open(thirty_runs.as_uri())
    charts = page.evaluate(
        "Array.from(document.querySelectorAll('.js-plotly-plot')).map(c => {"
        " const box = c.closest('[role=img]'); const fig = c.closest('figure');"
        " const table = document.getElementById('table-' + c.id.replace('chart-', ''));"
        " return [box && box.getAttribute('aria-label'), fig && fig.querySelector('figcaption')"
        " .textContent, table && table.querySelectorAll('tbody tr').length]; })"
    )
    assert len(charts) == 6
    for label, caption, rows in charts:
        assert label and label.startswith("Chart of seg_") and "members" in label
        assert caption and "entered" in caption and rows >= 1


def test_member_axes_start_at_zero_in_the_drawn_chart(browser, thirty_runs):
    page = browser.open(thirty_runs.as_uri())
    lows = page.evaluate(
        "Array.from(document.querySelectorAll('.js-plotly-plot')).map(c => c._fullLayout.yaxis.range[0])"
    )
    assert lows and all(low <= 0 for low in lows)


@pytest.mark.parametrize("section", ["refusals", "quarantine", "failures"])
def test_a_refusal_quarantine_or_failure_link_opens_the_run_in_its_segments_history(browser, four_runs, section):
    # Given the report, with the segment's history folded
    page = browser.open(four_runs.as_uri())
    # When the first link of the section is followed from the keyboard (focus, Enter)
    target = page.evaluate(
        f"(() => {{ const a = document.querySelector('#{section} ~ table a[href^=\"#seg-\"]');"
        " a.focus(); return a.getAttribute('href').slice(1); })()"
    )
    page.press("Enter")
    import time

    time.sleep(0.3)
    # Then the page went to that run's row, which is now shown (its history unfolded)
    assert page.evaluate("location.hash.slice(1)") == target
    assert page.evaluate(f"document.getElementById({target!r}).offsetParent !== null")
