"""Shared by the browser tests and ``screenshots.py``: start the app, launch Chromium, draw digits.

Chromium is Debian's (``/usr/bin/chromium``), never a downloaded one.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from digit_strokes import DIGIT_STROKES, Box, draw_strokes  # tests/ is on sys.path
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SHIPPED = ROOT / "weights" / "mnist_cnn.npz"


CENTRE: Box = (0.3, 0.15, 0.7, 0.85)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weights_for_tests() -> Path | None:
    """``$NPCNN_TEST_WEIGHTS``, else the shipped model, else None."""
    chosen = os.environ.get("NPCNN_TEST_WEIGHTS")
    if chosen:
        return Path(chosen)
    return SHIPPED if SHIPPED.is_file() else None


@contextmanager
def running_app(weights: Path, database_url: str | None = None) -> Iterator[str]:
    """Serve the app with werkzeug's threaded server on a free port; yields its base URL.

    Corrections go to ``database_url`` (the tests pass a temporary SQLite file), with a rate
    limit loose enough for a test session."""
    from werkzeug.serving import make_server

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import app as app_module

    app = app_module.create_app(weights, database_url=database_url, feedback_burst=1000)
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def launch_chromium(playwright):
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def stroke_points(digit: int, rect: dict, box: Box = CENTRE, steps: int = 6) -> list[list]:
    """Each stroke of ``digit`` as page coordinates inside ``rect`` (the canvas's bounding box),
    with ``steps`` points between corners so the pointer moves like a hand."""
    x0, y0, x1, y1 = box
    strokes = []
    for stroke in DIGIT_STROKES[digit]:
        corners = [
            (
                rect["x"] + rect["width"] * (x0 + (x1 - x0) * x),
                rect["y"] + rect["height"] * (y0 + (y1 - y0) * y),
            )
            for x, y in stroke
        ]
        points = [corners[0]]
        for (ax, ay), (bx, by) in zip(corners, corners[1:], strict=False):
            points += [
                (ax + (bx - ax) * t / steps, ay + (by - ay) * t / steps)
                for t in range(1, steps + 1)
            ]
        strokes.append(points)
    return strokes


def canvas_rect(page) -> dict:
    """The pad's box in viewport coordinates (scrolled into view first)."""
    page.locator("#canvas").scroll_into_view_if_needed()
    return page.locator("#canvas").bounding_box()


def draw_with_mouse(page, digit: int, box: Box = CENTRE) -> None:
    for points in stroke_points(digit, canvas_rect(page), box):
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y)
        page.mouse.up()


# "207" written across the pad, each digit in its own third.
SPACED_207: list[tuple[int, Box]] = [
    (2, (0.04, 0.3, 0.26, 0.7)),
    (0, (0.38, 0.3, 0.62, 0.7)),
    (7, (0.74, 0.3, 0.96, 0.7)),
]


def draw_number(page, digits: list[tuple[int, Box]]) -> None:
    """Draw each ``(digit, box)`` with the mouse, left to right."""
    for digit, box in digits:
        draw_with_mouse(page, digit, box)


def draw_with_touch(page, digit: int, box: Box = CENTRE) -> None:
    """Real touch input through the DevTools protocol (a finger on a touch screen)."""
    cdp = page.context.new_cdp_session(page)
    for points in stroke_points(digit, canvas_rect(page), box):
        x, y = points[0]
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]}
        )
        for x, y in points[1:]:
            cdp.send(
                "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
            )
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def digit_picture(
    digit: int,
    size: tuple[int, int] = (400, 300),
    box: Box = (0.35, 0.15, 0.65, 0.85),
    ink: tuple[int, int, int] = (25, 40, 150),
    paper: tuple[int, int, int] = (250, 228, 120),
    width: float = 0.06,
) -> bytes:
    """A PNG of ``digit`` in coloured ink on coloured paper, e.g. to upload."""
    image = Image.new("RGB", size, paper)
    draw_strokes(image, digit, box, width, ink)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def send_file_event(page, event: str, data: bytes, name: str = "digit.png") -> None:
    """Fire a ``drop`` on the pad or a ``paste`` on the document carrying ``data`` as a file."""
    page.evaluate(
        """([event, b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            if (event === "paste") {
                document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer,
                                                                     bubbles: true }));
            } else {
                const zone = document.getElementById("drop-zone");
                for (const type of ["dragenter", "dragover", "drop"]) {
                    zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true,
                                                             cancelable: true }));
                }
            }
        }""",
        [event, base64.b64encode(data).decode(), name],
    )
