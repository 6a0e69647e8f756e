"""A PNG of a report's first screen, for the README: python benchmarks/report_screenshot.py OUT PNG.

Writes OUT/report.html first (vaebench report), then opens it in a headless Chromium through
playwright (pip install playwright; Debian: apt-get install chromium) and saves the top of the page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the --out folder of a vaebench run")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args(argv)
    from vaebench.reporting.html_report import find_chromium

    chromium = find_chromium()
    if chromium is None:
        print("report_screenshot: no Chromium found; install one (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    from vaebench.cli import main as vaebench

    if vaebench(["report", str(args.out)]) != 0:
        return 2
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto((args.out / "report.html").resolve().as_uri(), wait_until="load")
        args.png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.png))
        browser.close()
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
