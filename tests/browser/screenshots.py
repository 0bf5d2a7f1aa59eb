"""Screenshots of the page: light and dark, phone (390 x 844) and desktop (1280 x 800).

Each shows a digit drawn on the pad, its prediction, and the explanation panel open.

    python tests/browser/screenshots.py [--weights PATH] [--url http://127.0.0.1:5000] [OUT_DIR]

OUT_DIR defaults to ``$NPCNN_SHOTS_DIR`` or /tmp/npcnn-shots.  Needs /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/digit_strokes.py

from browser_helpers import (  # noqa: E402
    draw_with_mouse,
    draw_with_touch,
    launch_chromium,
    running_app,
    weights_for_tests,
)

VIEWS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
}


def take_screenshots(browser, app_url: str, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Save ``{light,dark}-{desktop,phone}.png`` (full page) in ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for scheme in ("light", "dark"):
        for view, options in VIEWS.items():
            context = browser.new_context(color_scheme=scheme, **options)
            page = context.new_page()
            page.goto(app_url.rstrip("/") + "/")
            page.wait_for_function("() => document.getElementById('canvas').width > 64")
            if options.get("has_touch"):
                draw_with_touch(page, 3)
            else:
                draw_with_mouse(page, 3)
            page.click("#explain-panel summary")
            page.evaluate("() => window.scrollTo(0, 0)")
            page.wait_for_function(
                "() => document.getElementById('prediction').textContent !== '–'"
            )
            page.wait_for_function(
                "() => document.getElementById('saliency').src.startsWith('data:')"
            )
            page.wait_for_timeout(300)  # let the bars' transition finish
            path = out / f"{scheme}-{view}.png"
            page.screenshot(path=str(path), full_page=True)
            paths.append(path)
            context.close()
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "out_dir", nargs="?", default=os.environ.get("NPCNN_SHOTS_DIR", "/tmp/npcnn-shots")
    )
    parser.add_argument("--weights", help="model file (default: the shipped one)")
    parser.add_argument("--url", help="use this running app instead of starting one")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    weights = Path(args.weights) if args.weights else weights_for_tests()
    if not args.url and weights is None:
        parser.error("no model: pass --weights, or train weights/mnist_cnn.npz first")
    server = nullcontext(args.url) if args.url else running_app(weights)
    with server as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        for path in take_screenshots(browser, url, args.out_dir):
            print(path)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
