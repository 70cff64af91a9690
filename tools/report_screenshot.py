"""Screenshot an HTML report with headless Chromium: ``python -m tools.report_screenshot IN.html OUT.png``."""

from __future__ import annotations

import sys
from pathlib import Path

from tools.headless import Browser, png_is_blank


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, target = Path(argv[0]).resolve(), Path(argv[1])
    if not source.exists():
        print(f"{source} does not exist: run `make demo` (or `lakeseg report`) first", file=sys.stderr)
        return 2
    with Browser.launch() as browser:
        page = browser.open(source.as_uri(), settle=1.0)
        if page.errors:
            print("console errors: " + "; ".join(page.errors), file=sys.stderr)
            return 1
        png = page.screenshot(target)
    if png_is_blank(png):
        print(f"{target} is blank", file=sys.stderr)
        return 1
    print(f"wrote {target} ({len(png) / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
