"""Pictures for the preprocessing tests: digits drawn as strokes, placed, coloured and photographed.

The digits are drawn with Pillow (strokes of any width, any colours, any size and place), so the
tests need no data set.  Shared by the tests of every step (``tests/`` and this folder are on
``sys.path``; the module's name is unique in the test tree).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

WEIGHTS = Path(__file__).resolve().parents[3] / "weights" / "mnist_cnn.npz"


# Each digit is a list of strokes; each stroke a polyline in a unit box (x right, y down).
STROKES = {
    "0": [[(0.5, 0.03), (0.8, 0.15), (0.9, 0.5), (0.8, 0.85), (0.5, 0.97), (0.2, 0.85),
           (0.1, 0.5), (0.2, 0.15), (0.5, 0.03)]],
    "1": [[(0.45, 0.12), (0.6, 0.03), (0.5, 0.97)]],
    "2": [[(0.15, 0.25), (0.3, 0.08), (0.6, 0.05), (0.82, 0.2), (0.8, 0.4), (0.15, 0.95),
           (0.9, 0.95)]],
    "3": [[(0.15, 0.12), (0.5, 0.03), (0.82, 0.18), (0.75, 0.38), (0.42, 0.48), (0.8, 0.6),
           (0.85, 0.82), (0.5, 0.97), (0.12, 0.87)]],
    "4": [[(0.6, 0.02), (0.1, 0.68), (0.92, 0.68)], [(0.7, 0.35), (0.7, 0.98)]],
    "5": [[(0.85, 0.05), (0.25, 0.05)],
          [(0.25, 0.07), (0.2, 0.45), (0.55, 0.4), (0.82, 0.6), (0.78, 0.85), (0.45, 0.97),
           (0.15, 0.88)]],
    "6": [[(0.75, 0.05), (0.35, 0.3), (0.15, 0.65), (0.3, 0.95), (0.7, 0.92), (0.8, 0.65),
           (0.5, 0.5), (0.2, 0.65)]],
    "7": [[(0.1, 0.05), (0.9, 0.05), (0.4, 0.97)]],
}  # fmt: skip


def draw_digit(
    digit: str,
    size=(280, 280),
    box=(40, 40, 240, 240),
    width=26,
    ink=0,
    paper=255,
    mode="L",
    raise_first_stroke=0.0,
) -> Image.Image:
    """Draw ``digit`` with round-ended strokes ``width`` px wide, 0.7 box-heights wide, centred in
    ``box``; ``raise_first_stroke`` lifts the first stroke by that fraction (a broken 5)."""
    image = Image.new("L" if mode == "P" else mode, size, paper)  # a new "P" image is all black
    pen = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    height = y1 - y0
    left = (x0 + x1) / 2 - 0.35 * height
    for i, stroke in enumerate(STROKES[digit]):
        lift = raise_first_stroke * height if i == 0 else 0.0
        points = [(left + u * 0.7 * height, y0 + v * height - lift) for u, v in stroke]
        pen.line(points, fill=ink, width=width, joint="curve")
        r = width / 2
        for px, py in (points[0], points[-1]):
            pen.ellipse((px - r, py - r, px + r, py + r), fill=ink)
    return image.convert("P") if mode == "P" else image


def coverage(digit: str, height=400, **kwargs) -> np.ndarray:
    """A float ink coverage map (1 = ink) of ``digit``, cut to its ink."""
    margin = height // 4
    side = height + 2 * margin
    box = (margin, margin, side - margin, side - margin)
    width = kwargs.pop("width", round(0.09 * height))
    image = draw_digit(digit, (side, side), box, width, ink=255, paper=0, **kwargs)
    ink = np.asarray(image, np.float32) / 255
    rows, cols = np.nonzero(ink)
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def place(ink: np.ndarray, canvas=(280, 280), height=200, at=None) -> np.ndarray:
    """Scale ``ink`` to ``height`` px tall and put it on a blank canvas (w, h) at (x, y)."""
    width = max(1, round(ink.shape[1] * height / ink.shape[0]))
    filt = Image.Resampling.BOX if height < ink.shape[0] else Image.Resampling.BILINEAR
    scaled = np.asarray(Image.fromarray(ink, "F").resize((width, height), filt), np.float32)
    out = np.zeros((canvas[1], canvas[0]), np.float32)
    x, y = at if at is not None else ((canvas[0] - width) // 2, (canvas[1] - height) // 2)
    out[y : y + height, x : x + width] = np.clip(scaled, 0, 1)
    return out


def paint(ink: np.ndarray, colour=(0, 0, 0), paper=(255, 255, 255)) -> Image.Image:
    """An RGB picture: ``colour`` where ``ink`` is 1, ``paper`` where it is 0, mixed between."""
    colour, paper = np.array(colour, np.float32), np.array(paper, np.float32)
    rgb = paper + ink[..., None] * (colour - paper)
    return Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")


def photo(ink: np.ndarray, seed=0, noise=0.05) -> Image.Image:
    """Like a phone photo of a pen digit on paper: a warm lighting gradient, grey-blue ink that is
    not fully dark, Gaussian sensor noise and a little blur."""
    h, w = ink.shape
    yy, xx = np.mgrid[0:h, 0:w]
    light = 0.5 + 0.35 * xx / w + 0.12 * (yy / h) ** 2
    paper = light[..., None] * np.array([1.0, 0.95, 0.82])
    pen = np.array([0.15, 0.15, 0.28])
    rgb = paper + 0.85 * ndimage.gaussian_filter(ink, 1.0)[..., None] * (pen - paper)
    rgb += np.random.default_rng(seed).normal(0, noise, rgb.shape)
    return Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8), "RGB")


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def ink_box_side(out: np.ndarray, level: float = 0.2) -> int:
    rows, cols = np.nonzero(out > level)
    return int(max(np.ptp(rows), np.ptp(cols))) + 1


def assert_mnist_like(out: np.ndarray) -> None:
    """The output contract: (28, 28) float32 in [0, 1], max 1, centre of mass within 1 px of
    (14, 14) (unless a lopsided shape had to be pulled back to stay in the frame), longer side of
    the ink ~20 px."""
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() == pytest.approx(1.0)
    row, col = ndimage.center_of_mass(out)
    ink = out > 0.05
    touches_frame = ink[0].any() or ink[-1].any() or ink[:, 0].any() or ink[:, -1].any()
    assert touches_frame or (abs(row - 14) <= 1 and abs(col - 14) <= 1), (row, col)
    assert 18 <= ink_box_side(out) <= 22


def png_bytes(image: Image.Image, fmt="PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def predict(model, images: list[np.ndarray]) -> np.ndarray:
    return model.predict(np.stack(images)[:, None].astype(np.float32)).argmax(axis=1)
