"""Step 4a: a ruled page's lines are taken out, the digit's strokes across them kept."""

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
from npcnn.digits.preprocess.ruling import long_runs_along_rows, remove_ruled_lines

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
