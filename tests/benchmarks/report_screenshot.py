"""Manual check of `factory report`'s page: build the report of a run and screenshot index.html in headless
Chromium. Prints one JSON line: the PNG's path, the page size, the browser used, and the report's build time.

Without RUN_DIR it runs the demo recipe first (`factory run clean dedup decontam mix -c configs/demo.yaml`,
skipped when up to date) and reports runs/demo. The browser is the first found of `chromium`,
`chromium-browser`, `google-chrome`, `google-chrome-stable`, `chromium-headless-shell`, `headless_shell` on
PATH, or Playwright's bundled Chromium in ~/.cache/ms-playwright; with none, the JSON line says so and no PNG
is written (on Debian: `apt-get install chromium`). The page height is measured first by loading a copy of the
page with a one-line script that writes its height into the DOM (the report itself has no script), then the
real page is shot at that height, so the PNG holds the whole page. Look at the PNG: every section drawn,
nothing overflowing.

Usage: python tests/benchmarks/report_screenshot.py [RUN_DIR] [--out PNG] [--width 1280]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from factory import report as rep  # noqa: E402

BROWSERS = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chromium-headless-shell",
    "headless_shell",
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
MEASURE = (
    "<script>document.body.setAttribute('data-height', "
    "Math.ceil(document.documentElement.scrollHeight))</script></body>"
)


def find_browser() -> str | None:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    bundled = sorted(Path.home().glob(".cache/ms-playwright/chromium*/chrome-*/chrome*"))
    return next((str(p) for p in bundled if p.is_file() and p.stat().st_mode & 0o111), None)


def page_height(browser: str, page: Path, width: int) -> int:
    """The rendered height of `page` at `width`: a copy with a measuring script, its DOM dumped after load."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE), encoding="utf-8")
        dom = subprocess.run(
            [browser, *FLAGS, f"--window-size={width},1000", "--dump-dom", probe.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    found = re.search(r'data-height="(\d+)"', dom)
    return int(found[1]) if found else 4000


def screenshot(browser: str, page: Path, png: Path, width: int) -> tuple[int, int]:
    height = page_height(browser, page, width)
    png.unlink(missing_ok=True)
    subprocess.run(
        [browser, *FLAGS, f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    if not png.exists():
        raise RuntimeError(f"{browser} wrote no screenshot")
    return width, height


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "run_dir", nargs="?", help="a run directory (default: run the demo, report runs/demo)"
    )
    parser.add_argument("--out", help="where the PNG goes (default: RUN_DIR/report/screenshot.png)")
    parser.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels")
    args = parser.parse_args()

    run_dir = Path(args.run_dir) if args.run_dir else ROOT / "runs" / "demo"
    if not args.run_dir:
        cmd = [
            sys.executable,
            "-m",
            "factory",
            "run",
            "clean",
            "dedup",
            "decontam",
            "mix",
            "-c",
            "configs/demo.yaml",
        ]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)

    started = time.perf_counter()
    run = rep.load_run(run_dir)
    summary = rep.build_summary(run)
    folder = rep.write_report(run, summary)
    build_s = time.perf_counter() - started
    page = (folder / "index.html").resolve()
    out = {
        "run_dir": str(run_dir),
        "records_before": (summary["before"] or {}).get("records"),
        "records_after": (summary["after"] or {}).get("records"),
        "report_build_s": round(build_s, 3),
        "html": str(page),
        "html_bytes": page.stat().st_size,
    }
    browser = find_browser()
    if browser is None:
        out.update(
            png=None, browser=None, note=f"no headless Chromium found (looked for {', '.join(BROWSERS)})"
        )
    else:
        png = Path(args.out).resolve() if args.out else folder.resolve() / "screenshot.png"
        started = time.perf_counter()
        width, height = screenshot(browser, page, png, args.width)
        out.update(
            png=str(png),
            browser=browser,
            page_size=[width, height],
            png_bytes=png.stat().st_size,
            screenshot_s=round(time.perf_counter() - started, 2),
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
