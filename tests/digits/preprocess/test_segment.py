"""Tests of npcnn.digits.preprocess.segment: a picture of a whole number -> one crop per digit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from preprocess_pictures import (
    assert_mnist_like,
    corr,
    coverage,
    draw_digit,
    paint,
    photo,
    place,
)
from scipy import ndimage

from npcnn.digits.errors import NoInkError
from npcnn.digits.preprocess.decode import WORK_PIXELS, load_image
from npcnn.digits.preprocess.framing import to_mnist
from npcnn.digits.preprocess.segment import segment_digits


def write_number(text: str, height=150, gap=30, margin=40, specks=0, seed=0, **kwargs):
    """A picture of ``text`` written left to right and the true ink box of each digit, as
    (x0, y0, x1, y1) with x1, y1 exclusive.  ``gap``: px between neighbours' ink, one number or
    one per pair; a negative gap makes them overlap."""
    glyphs = [coverage(d, height=height, **kwargs) for d in text]
    gaps = list(np.broadcast_to(gap, (len(text),)))
    width = sum(g.shape[1] for g in glyphs) + sum(gaps[:-1]) + 2 * margin
    tallest = max(g.shape[0] for g in glyphs)
    ink = np.zeros((tallest + 2 * margin, width), np.float32)
    boxes, x = [], margin
    for glyph, gap_after in zip(glyphs, gaps, strict=True):
        y = margin + (tallest - glyph.shape[0]) // 2
        region = ink[y : y + glyph.shape[0], x : x + glyph.shape[1]]
        np.maximum(region, glyph, out=region)
        boxes.append((x, y, x + glyph.shape[1], y + glyph.shape[0]))
        x += glyph.shape[1] + gap_after
    rng = np.random.default_rng(seed)
    for _ in range(specks):
        sy, sx = rng.integers(0, ink.shape[0] - 2), rng.integers(0, ink.shape[1] - 2)
        ink[sy : sy + 2, sx : sx + 2] = 1.0
    return ink, boxes


def assert_boxes_close(found, expected, tolerance) -> None:
    assert len(found) == len(expected)
    for f, e in zip(found, expected, strict=True):
        assert np.abs(np.subtract(f, e)).max() <= tolerance, (f, e)


def test_segment_a_number_with_separate_digits() -> None:
    ink, boxes = write_number("2026")
    crops = segment_digits(paint(ink))
    assert_boxes_close([c.box for c in crops], boxes, 1)
    for crop, digit in zip(crops, "2026", strict=True):
        assert_mnist_like(crop.image)
        alone = to_mnist(paint(place(coverage(digit, height=150), (280, 280), 150)))
        assert corr(crop.image, alone) > 0.97


def test_segment_splits_touching_digits() -> None:
    ink, boxes = write_number("2026", gap=[40, -12, 40, 0])  # the "0" and the "2" touch
    assert ndimage.label(ink > 0.5, structure=np.ones((3, 3)))[1] == 3  # they really do
    crops = segment_digits(paint(ink))
    assert_boxes_close([c.box for c in crops], boxes, 14)
    for crop, digit in zip(crops, "2026", strict=True):
        assert corr(crop.image, to_mnist(draw_digit(digit))) > 0.75


def test_segment_splits_a_touching_pair_by_its_aspect_ratio() -> None:
    ink, boxes = write_number("00", gap=-8)
    assert ndimage.label(ink > 0.5, structure=np.ones((3, 3)))[1] == 1
    crops = segment_digits(paint(ink))
    assert_boxes_close([c.box for c in crops], boxes, 10)


def test_segment_keeps_a_wide_digit_whole() -> None:
    wide = draw_digit("2", size=(300, 200), box=(40, 40, 200, 160), width=14)
    wide = wide.resize((430, 200))  # stretched: as wide as tall
    rows, cols = np.nonzero(np.asarray(wide) < 128)
    assert 0.9 < np.ptp(cols) / np.ptp(rows) < 1.1
    assert len(segment_digits(wide)) == 1


def test_segment_merges_a_broken_digit() -> None:
    ink, _ = write_number("45", raise_first_stroke=0.12)  # the 5's top bar floats free
    assert ndimage.label(ink > 0.5, structure=np.ones((3, 3)))[1] == 3
    crops = segment_digits(paint(ink))
    assert len(crops) == 2
    assert corr(crops[1].image, to_mnist(draw_digit("5"))) > 0.85


def test_segment_drops_specks_and_a_decimal_point() -> None:
    ink, boxes = write_number("3175", specks=30)
    x_point = (boxes[1][2] + boxes[2][0]) // 2  # between "1" and "7", on the baseline
    bottom = boxes[1][3]
    ink[bottom - 14 : bottom, x_point - 7 : x_point + 7] = 1.0
    crops = segment_digits(paint(ink, (0, 0, 120), (255, 250, 235)))
    assert_boxes_close([c.box for c in crops], boxes, 1)


def test_segment_a_big_photo_gives_boxes_in_its_own_pixels() -> None:
    ink, boxes = write_number("2026", height=900, gap=150, margin=200)
    picture = photo(ink)
    assert picture.width * picture.height > 4 * WORK_PIXELS  # it will be reduced first
    crops = segment_digits(picture)
    scale = load_image(picture).scale
    assert_boxes_close([c.box for c in crops], boxes, 2 * scale)


@settings(max_examples=15)
@given(
    text=st.text(alphabet="01234567", min_size=1, max_size=5),
    height=st.integers(30, 160),
    gap_fraction=st.floats(0.15, 0.6),
)
def test_segment_any_separate_number(text, height, gap_fraction) -> None:
    ink, boxes = write_number(text, height=height, gap=round(gap_fraction * height))
    crops = segment_digits(ink)
    assert_boxes_close([c.box for c in crops], boxes, 1)


def test_segment_nothing_raises_no_ink() -> None:
    with pytest.raises(NoInkError):
        segment_digits(Image.new("RGB", (300, 100), (200, 180, 160)))


def test_segment_a_single_digit_agrees_with_to_mnist() -> None:
    image = draw_digit("6")
    (crop,) = segment_digits(image)
    np.testing.assert_allclose(crop.image, to_mnist(image), atol=1e-6)
