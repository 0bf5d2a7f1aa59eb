"""Step 4b: a ruled page's lines are taken out, the digit's strokes across them kept."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from preprocess_pictures import STROKES, corr, coverage, place, predict
from scipy import ndimage

from npcnn.digits.preprocess import ink as ink_module
from npcnn.digits.preprocess.framing import to_mnist
from npcnn.digits.preprocess.ink import find_ink
from npcnn.digits.preprocess.ruling import (
    gaps_closed_along_rows,
    long_runs_along_rows,
    may_be_ruled,
    remove_ruled_lines,
)

BLUE_PEN, PAPER = np.array([20, 40, 140.0]), np.array([250, 250, 245.0])


def on_ruled_paper(
    ink: np.ndarray, spacing: int = 30, line=(150, 180, 230), thick: int = 1, margin: bool = True
) -> Image.Image:
    """``ink`` written in blue on a notebook page: light lines every ``spacing`` px from edge to
    edge, ``thick`` px thick, and a red margin line down the left."""
    rgb = PAPER + (BLUE_PEN - PAPER) * ink[..., None]
    for y in range(spacing // 2, ink.shape[0], spacing):
        rgb[y : y + thick] = np.minimum(rgb[y : y + thick], line)
    if margin:
        rgb[:, 15:17] = np.minimum(rgb[:, 15:17], (230, 120, 120))
    return Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")


@given(
    st.integers(1, 30),
    st.integers(1, 90),
    st.floats(0.2, 0.98),
    st.integers(0, 20),
    st.integers(0, 2**32 - 1),
)
def test_long_runs_are_the_opening_by_a_line(height, width, density, half, seed) -> None:
    mask = np.random.default_rng(seed).random((height, width)) < density
    run = 2 * half + 1
    expected = ndimage.binary_opening(mask, structure=np.ones((1, run), dtype=bool))
    np.testing.assert_array_equal(long_runs_along_rows(mask, run), expected)


def test_an_even_run_is_refused() -> None:
    with pytest.raises(ValueError, match="odd"):
        long_runs_along_rows(np.ones((3, 9), dtype=bool), 4)


@given(st.lists(st.booleans(), min_size=1, max_size=80), st.integers(0, 10))
def test_closing_fills_the_short_gaps_and_no_more(values, half) -> None:
    mask, gap = np.array(values), 2 * half + 1
    closed = gaps_closed_along_rows(mask, gap)
    assert (closed >= mask).all()  # nothing taken away
    inked = np.flatnonzero(mask)
    if not len(inked):
        assert not closed.any()
        return
    # beyond the ink's ends, only a margin to the border of at most half the gap is filled
    # (a dashed line that stops just short of the edge reaches it)
    first, beyond = inked[0], len(mask) - 1 - inked[-1]
    assert closed[:first].all() if first <= half else not closed[:first].any()
    assert closed[len(mask) - beyond :].all() if beyond <= half else not closed[-beyond:].any()
    for left, right in zip(inked[:-1], inked[1:], strict=True):
        if right - left - 1 < gap:  # a gap shorter than ``gap``: filled
            assert closed[left:right].all()


def test_an_even_gap_is_refused() -> None:
    with pytest.raises(ValueError, match="odd"):
        gaps_closed_along_rows(np.ones(9, dtype=bool), 4)


def test_lines_go_and_a_stroke_across_them_stays_whole() -> None:
    ink = np.zeros((200, 240), np.float32)
    for y in range(15, 200, 30):
        ink[y, :] = 0.4  # faint ruled lines, edge to edge
    ink[:, 15:17] = 0.5  # the margin
    ink[40:160, 100:110] = 1.0  # a stroke down across four lines
    ink[100:108, 110:200] = 1.0  # and one along a line (a 7's bar lying on it)
    out = remove_ruled_lines(ink)
    stroke = np.zeros_like(ink, dtype=bool)
    stroke[40:160, 100:110] = stroke[100:108, 110:200] = True
    np.testing.assert_array_equal(out[stroke], ink[stroke])  # every stroke pixel, crossings too
    assert not out[~stroke].any()  # and nothing else


def test_one_line_from_edge_to_edge_is_not_a_page() -> None:
    ink = np.zeros((100, 120), np.float32)
    ink[5:9, :] = 1.0  # a 7 cropped to its ink: the bar from edge to edge
    ink[9:100, 60:66] = 1.0
    assert remove_ruled_lines(ink) is ink
    blank = np.zeros((50, 50), np.float32)
    assert remove_ruled_lines(blank) is blank


def dashed_tilted_page(ink: np.ndarray, tilt: float = 1.5) -> np.ndarray:
    """``ink`` on a page whose lines faded into dashes (8 px gone in every 20) and slope by
    ``tilt`` degrees, with a margin: as clean ink."""
    page = ink.copy()
    height, width = page.shape
    slope = np.tan(np.radians(tilt))
    for y0 in range(10, height, 28):
        for x in range(width):
            y = int(round(y0 + slope * x))
            if 0 <= y < height and x % 20 >= 8:
                page[y, x] = max(page[y, x], 0.5)
    page[:, 20:22] = np.maximum(page[:, 20:22], 0.6)
    return page


def test_a_photographed_page_with_faded_sloping_lines_is_cleaned_too() -> None:
    ink = place(coverage("4"), (240, 240), 140)
    page = dashed_tilted_page(ink)
    assert may_be_ruled(page) and not may_be_ruled(ink)
    assert corr(remove_ruled_lines(page), ink) > 0.97 > corr(page, ink)


@pytest.mark.parametrize(("spacing", "thick", "line"), [
    (30, 1, (150, 180, 230)), (24, 1, (170, 170, 170)), (30, 2, (150, 180, 230))])  # fmt: skip
def test_digits_on_ruled_paper_look_as_on_blank_paper(spacing, thick, line) -> None:
    """The digit's clean ink on a ruled page with a margin is the one on a blank page."""
    for digit in STROKES:
        ink = place(coverage(digit), (240, 240), 140)
        blank = find_ink(on_ruled_paper(ink, spacing=10**6, margin=False)).pixels
        ruled = find_ink(on_ruled_paper(ink, spacing, line, thick)).pixels
        assert corr(ruled, blank) > 0.97, digit


def test_the_shipped_model_reads_mnist_digits_written_in_a_notebook(
    model, mnist_digits, monkeypatch
) -> None:
    """100 MNIST test digits written on a ruled page with a margin: read as on blank paper, and
    far worse without this step."""
    images, labels = mnist_digits
    pictures = []
    for image in images[:100]:
        big = np.asarray(Image.fromarray(image, "F").resize((140, 140)), np.float32)
        pictures.append(on_ruled_paper(place(np.clip(big, 0, 1), (240, 240), 140)))
    right = (predict(model, [to_mnist(p) for p in pictures]) == labels[:100]).sum()
    monkeypatch.setattr(ink_module, "remove_ruled_lines", lambda ink: ink)
    without = (predict(model, [to_mnist(p) for p in pictures]) == labels[:100]).sum()
    assert right >= 98 and without <= 80, (right, without)


@given(
    st.integers(2, 60),
    st.integers(2, 60),
    st.integers(0, 6),
    st.integers(0, 2**32 - 1),
)
def test_it_only_ever_takes_ink_away(height, width, lines, seed) -> None:
    """Whatever the picture: each pixel keeps its value or becomes 0, never anything else."""
    rng = np.random.default_rng(seed)
    ink = np.where(rng.random((height, width)) < 0.3, rng.random((height, width)), 0.0)
    for row in rng.integers(0, height, size=lines):
        ink[row, :] = rng.uniform(0.1, 1.0)  # lines from edge to edge, sometimes a page
    ink = ink.astype(np.float32)
    out = remove_ruled_lines(ink)
    assert out.shape == ink.shape and out.dtype == np.float32
    assert ((out == ink) | (out == 0)).all()
