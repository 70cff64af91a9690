"""Screenshot the top of an HTML report with headless Chromium.

    python -m tools.report_screenshot IN.html OUT.png [--width 1200] [--top 1000] [--sample]

``--width`` is the viewport's width in CSS pixels (390: a phone), ``--top`` how many pixels of the page's top
to keep (0: all of it). ``--sample`` first writes IN.html from the sample history the report's tests use
(6 segments x 30 daily runs with refusals, skips, quarantine, a failed run and per-phase timings), so the
screenshot needs no lake, no dbt build and no state store.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.headless import Browser, png_is_blank


def write_sample(path: Path) -> None:
    from sync.output.report_html import render_html
    from tests.report.fixtures_runs import synthetic_history

    runs = synthetic_history(6, 30)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(runs, generated_at="2026-01-30T06:00:00+00:00"), encoding="utf-8")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.report_screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--top", type=int, default=0)
    parser.add_argument("--sample", action="store_true")
    args = parser.parse_args(argv)
    source = args.source.resolve()
    if args.sample:
        write_sample(source)
    if not source.exists():
        print(
            f"{source} does not exist: run `make demo` (or `lakeseg report`) first, or pass --sample", file=sys.stderr
        )
        return 2
    with Browser.launch() as browser:
        page = browser.open(source.as_uri(), width=args.width, settle=1.0)
        if page.errors:
            print("console errors: " + "; ".join(page.errors), file=sys.stderr)
            return 1
        wide = page.evaluate("document.documentElement.scrollWidth")
        if wide > args.width:
            print(f"the page is {wide} px wide in a {args.width} px viewport", file=sys.stderr)
            return 1
        png = page.screenshot(args.target, width=args.width, height=args.top or None)
    if png_is_blank(png):
        print(f"{args.target} is blank", file=sys.stderr)
        return 1
    print(f"wrote {args.target} ({len(png) / 1e3:.0f} kB, {args.width} px wide)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
