"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) over the DevTools protocol.

Skips, naming the install command, when Chromium is missing (`make test` installs it where it can).
"""

from __future__ import annotations

import pytest

from sync.output.report_html import render_html
from tests.report.fixtures_runs import history
from tools.headless import INSTALL_HINT, Browser, find_chromium, png_is_blank

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason=f"Chromium is not installed; install it with `{INSTALL_HINT}`")


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
    assert page.count(".js-plotly-plot .scatterlayer .trace") == 2
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
