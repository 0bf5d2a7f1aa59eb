"""Tests of npcnn.digits.preprocess: any picture of a digit -> MNIST's look.

The digits are drawn here with Pillow (strokes of any width, any colours, any size and place), so
the tests need no data set; where the MNIST cache or the shipped model exist, a few tests also use
real MNIST digits and the model's predictions (and skip, saying why, when they do not).
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw
from scipy import ndimage

from npcnn.digits import preprocess as pp
from npcnn.digits.errors import ImageError, NoInkError

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "mnist_cnn.npz"

# --------------------------------------------------------------------------------------------
# Helpers: digits drawn as strokes, placed, coloured and photographed
# --------------------------------------------------------------------------------------------

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


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """``to_mnist`` of each digit drawn black on white, 200 px tall, on a 280x280 canvas."""
    return {d: pp.to_mnist(paint(place(coverage(d)))) for d in STROKES}


# --------------------------------------------------------------------------------------------
# to_mnist: the output contract and invariance to how the digit was drawn
# --------------------------------------------------------------------------------------------

VARIANTS = {
    "shifted": lambda ink: paint(place(ink, (280, 280), 200, at=(5, 70))),
    "off-centre in a corner": lambda ink: paint(place(ink, (500, 400), 150, at=(390, 10))),
    "tiny: 12 px in 400x400": lambda ink: paint(place(ink, (400, 400), 12, at=(300, 50))),
    "huge: 3000x3000": lambda ink: paint(place(ink, (3000, 3000), 2600)),
    "white on black": lambda ink: paint(place(ink), (255, 255, 255), (0, 0, 0)),
    "blue on yellow": lambda ink: paint(place(ink), (30, 40, 200), (250, 230, 60)),
    "red on equally bright green": lambda ink: paint(place(ink), (220, 60, 60), (90, 140, 90)),
    "photo: gradient + noise": lambda ink: photo(place(ink, (600, 450), 330, at=(140, 60))),
    "float array, white on black": lambda ink: place(ink),
    "RGBA: black strokes in alpha": lambda ink: Image.fromarray(
        np.dstack([np.zeros((280, 280, 3), np.uint8), (place(ink) * 255).astype(np.uint8)])
    ),
    "RGBA: white strokes in alpha": lambda ink: Image.fromarray(
        np.dstack([np.full((280, 280, 3), 255, np.uint8), (place(ink) * 255).astype(np.uint8)])
    ),
}

# The lowest correlation with the reference each variant must reach.  Most are near 1; a 12 px
# digit has lost detail, and a photo has noise.
MIN_CORRELATION = {"tiny: 12 px in 400x400": 0.85, "photo: gradient + noise": 0.93}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("digit", ["2", "4", "7"])
def test_to_mnist_is_invariant_to_how_the_digit_is_drawn(variant, digit, reference) -> None:
    out = pp.to_mnist(VARIANTS[variant](coverage(digit)))
    assert_mnist_like(out)
    assert corr(out, reference[digit]) > MIN_CORRELATION.get(variant, 0.97)


@pytest.mark.parametrize("digit", ["0", "3", "5", "7"])
def test_thin_and_thick_strokes_are_brought_to_mnist_width(digit) -> None:
    medium = pp.to_mnist(draw_digit(digit, width=26))
    thin = pp.to_mnist(draw_digit(digit, width=2))  # a 2 px pen on a 280 px canvas
    thick = pp.to_mnist(draw_digit(digit, width=60))  # a fat marker: 1.6x MNIST's median
    for out in (thin, thick):
        assert_mnist_like(out)
        width = pp.stroke_width(out[out.any(axis=1)][:, out.any(axis=0)])
        assert pp.MNIST_STROKE_WIDTH / 1.6 < width < pp.MNIST_STROKE_WIDTH * 1.6
    assert corr(thin, medium) > 0.9
    assert corr(thick, medium) > 0.8  # a fat marker fills the corners; eroding cannot undo that


def test_stroke_normalisation_leaves_typical_widths_alone() -> None:
    crop = pp.crop_to_ink(pp.find_ink(draw_digit("3", width=26)).pixels)[0]
    assert pp.normalise_stroke(crop) is crop


@pytest.mark.parametrize(
    "mode", ["L", "RGB", "RGBA", "P", "LA", "PA", "I;16", "I", "F", "1", "CMYK", "YCbCr", "HSV"]
)
def test_every_pillow_mode_gives_the_same_result(mode, reference) -> None:
    image = paint(place(coverage("3"))).convert(mode)
    out = pp.to_mnist(image)
    assert_mnist_like(out)
    assert corr(out, reference["3"]) > (0.95 if mode == "1" else 0.995)


def _array_variants(gray: np.ndarray) -> dict[str, np.ndarray]:
    opaque = np.full_like(gray, 255)
    return {
        "uint8 (H, W)": gray,
        "uint8 (H, W, 1)": gray[..., None],
        "uint8 (H, W, 2)": np.dstack([gray, opaque]),
        "uint8 (H, W, 3)": np.dstack([gray] * 3),
        "uint8 (H, W, 4)": np.dstack([gray] * 3 + [opaque]),
        "uint16 full range": gray.astype(np.uint16) * 257,
        "uint16 holding 8 bits": gray.astype(np.uint16),
        "int64": gray.astype(np.int64),
        "float32 in [0, 1]": gray.astype(np.float32) / 255,
        "float64 in [0, 255]": gray.astype(np.float64),
        "float in [-1, 1]": gray / 127.5 - 1.0,
        "float16": (gray / 255).astype(np.float16),
        "bool": gray > 127,
        "non-contiguous": np.dstack([gray] * 3)[:, :, ::-1],
    }


def test_every_array_kind_gives_the_same_result(reference) -> None:
    gray = np.asarray(paint(place(coverage("3"))).convert("L"))
    for name, array in _array_variants(gray).items():
        out = pp.to_mnist(array)
        assert_mnist_like(out)
        assert corr(out, reference["3"]) > (0.95 if name == "bool" else 0.995), name


def test_transparent_margins_around_a_page_vanish_into_the_page(reference) -> None:
    """Mostly opaque: the opaque pixels are the paper, so transparency becomes paper colour."""
    page = np.asarray(paint(place(coverage("7")), (20, 20, 90), (240, 235, 200)))
    alpha = np.full(page.shape[:2], 255, np.uint8)
    alpha[:, :40] = 0  # a transparent band on the left, where the colour is garbage
    rgba = np.dstack([page, alpha])
    rgba[:, :40, :3] = 0
    out = pp.to_mnist(Image.fromarray(rgba, "RGBA"))
    assert corr(out, reference["7"]) > 0.99


def test_a_colour_cast_across_a_photo_does_not_hide_a_small_digit(reference) -> None:
    """Daylight on one side, a warm lamp on the other: the paper's colour changes far more across
    the picture than the ink differs from it in any one colour - but not between neighbours."""
    h, w = 400, 500
    xx = np.linspace(0, 1, w)[None, :, None]
    paper = 0.85 * ((1 - xx) * np.array([0.55, 0.7, 1.0]) + xx * np.array([1.0, 0.75, 0.45]))
    for height in (200, 40, 15):
        ink = place(coverage("4"), (w, h), height, at=(200, 150))[..., None]
        rgb = paper * (1 - 0.8 * ink) + np.random.default_rng(height).normal(0, 0.01, (h, w, 3))
        picture = Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8))
        assert corr(pp.to_mnist(picture), reference["4"]) > 0.95


def test_large_picture_is_fast() -> None:
    picture = paint(place(coverage("5"), (4000, 4000), 3000))
    pp.to_mnist(picture)  # warm-up
    started = time.perf_counter()
    assert_mnist_like(pp.to_mnist(picture))
    assert time.perf_counter() - started < 2.0  # ~0.1 s unloaded; generous for a busy machine


def test_the_input_is_not_modified() -> None:
    gray = np.asarray(paint(place(coverage("3"))).convert("L")).astype(np.float32) / 255
    image = draw_digit("3", mode="RGBA", ink=(0, 0, 0, 255), paper=(0, 0, 0, 0))
    gray_before, image_before = gray.copy(), np.asarray(image).copy()
    pp.to_mnist(gray)
    pp.segment_digits(gray)
    pp.to_mnist(image)
    np.testing.assert_array_equal(gray, gray_before)
    np.testing.assert_array_equal(np.asarray(image), image_before)


def test_a_stray_mark_far_away_is_ignored(reference) -> None:
    ink = place(coverage("4"), (400, 400), 200, at=(60, 60))
    ink[360:372, 360:372] = 1.0  # a brush dot in the far corner
    assert corr(pp.to_mnist(paint(ink)), reference["4"]) > 0.97


def test_specks_and_dust_are_ignored(reference) -> None:
    rng = np.random.default_rng(3)
    ink = place(coverage("2"))
    for y, x in rng.integers(0, 278, size=(40, 2)):
        ink[y : y + 2, x : x + 2] = 1.0
    assert corr(pp.to_mnist(paint(ink)), reference["2"]) > 0.97


def test_a_broken_stroke_is_kept() -> None:
    whole = pp.to_mnist(draw_digit("5"))
    broken = pp.to_mnist(draw_digit("5", raise_first_stroke=0.1))
    assert corr(whole, broken) > 0.9


# --------------------------------------------------------------------------------------------
# Nothing to recognise, and unusable input
# --------------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(
    colour=st.tuples(*[st.integers(0, 255)] * 3),
    size=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    noise=st.sampled_from([0.0, 0.005, 0.01]),
    gradient=st.floats(0.0, 0.4),
)
def test_blank_uniform_or_shaded_pictures_have_no_ink(colour, size, noise, gradient) -> None:
    """A single colour, a smooth lighting gradient, faint noise: nothing to recognise."""
    w, h = size
    xx = np.linspace(0, 1, w)[None, :, None]
    rgb = np.array(colour, np.float64) / 255 * (1 - gradient * xx) * np.ones((h, 1, 1))
    rgb += np.random.default_rng(w * h).normal(0, noise, rgb.shape)
    with pytest.raises(NoInkError, match="nothing to recognise"):
        pp.to_mnist(np.clip(rgb, 0, 1))


def test_no_ink_cases() -> None:
    rng = np.random.default_rng(0)
    cases = {
        "transparent": Image.new("RGBA", (280, 280), (0, 0, 0, 0)),
        "white": Image.new("L", (280, 280), 255),
        "one hot pixel": np.pad(np.ones((1, 1)), 100),
        "salt noise": (rng.random((300, 300)) > 0.999).astype(np.float32),
        "white noise": rng.random((300, 300)),
        "1x1": np.zeros((1, 1)),
    }
    for name, image in cases.items():
        with pytest.raises(NoInkError):
            pp.to_mnist(image)
            pytest.fail(name)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 10)),
        np.zeros((10, 0, 3)),
        np.zeros(10),
        np.zeros((2, 2, 2, 2)),
        np.zeros((5, 5, 5)),
        np.full((5, 5), np.nan),
        np.array([[0.0, np.inf]]),
        np.array([["a"]]),
        np.zeros((4, 4), complex),
        np.array([[None]]),
        "not an image",
        None,
    ],
    ids=repr,
)
def test_unusable_input_raises_image_error(bad) -> None:
    with pytest.raises(ImageError):
        pp.to_mnist(bad)


def test_a_truncated_lazy_pillow_image_raises_image_error() -> None:
    data = png_bytes(draw_digit("3"))
    image = Image.open(io.BytesIO(data[: len(data) // 2]))  # opened, not yet decoded
    with pytest.raises(ImageError):
        pp.to_mnist(image)


# --------------------------------------------------------------------------------------------
# Property: any stroke drawing, anywhere, in any colours -> the output contract
# --------------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(
    points=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=6),
    canvas=st.tuples(st.integers(40, 700), st.integers(40, 700)),
    height_fraction=st.floats(0.25, 0.95),
    width_fraction=st.floats(0.01, 0.3),
    colours=st.tuples(st.tuples(*[st.integers(0, 255)] * 3), st.tuples(*[st.integers(0, 255)] * 3)),
    where=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_any_drawing_gives_an_mnist_like_output(
    points, canvas, height_fraction, width_fraction, colours, where
) -> None:
    ink_colour, paper = np.array(colours[0]), np.array(colours[1])
    contrast = abs(float((ink_colour - paper) @ pp.LUMA)) + np.abs(ink_colour - paper).max() / 4
    w, h = canvas
    size = height_fraction * min(w, h)
    x0, y0 = where[0] * (w - size), where[1] * (h - size)
    pen = max(1.5, width_fraction * size)
    image = Image.new("L", canvas, 0)
    ImageDraw.Draw(image).line(
        [(x0 + u * size, y0 + v * size) for u, v in points], fill=255, width=round(pen)
    )
    ink = np.asarray(image, np.float32) / 255
    if ink.sum() < 10 or contrast < 40:  # hardly any ink, or ink nearly the paper's colour
        return
    assert_mnist_like(pp.to_mnist(paint(ink, tuple(ink_colour), tuple(paper))))


@settings(max_examples=150)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32, np.bool_]),
        shape=st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
            lambda hw: st.sampled_from([hw, (*hw, 1), (*hw, 2), (*hw, 3), (*hw, 4)])
        ),
    )
)
def test_any_array_gives_an_mnist_like_output_or_an_image_error(array) -> None:
    """Random content, NaN, extreme values, 1-pixel images: a valid output or ImageError."""
    try:
        out = pp.to_mnist(array)
    except ImageError:
        return
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# The steps one by one
# --------------------------------------------------------------------------------------------


def test_flatten_alpha_picks_the_background_that_shows_the_ink() -> None:
    alpha = np.zeros((20, 20), np.float32)
    alpha[5:15, 9:11] = 1.0
    for ink, expected_paper in [(0.0, 1.0), (1.0, 0.0), (0.1, 1.0), (0.9, 0.0)]:
        colour = np.full((20, 20, 3), ink, np.float32) * alpha[..., None]  # premultiplied
        flat = pp.flatten_alpha(colour, alpha)
        np.testing.assert_allclose(flat[0, 0], expected_paper)
        np.testing.assert_allclose(flat[10, 10], ink, atol=1e-6)


def test_to_grayscale_keeps_contrast_between_equally_bright_colours() -> None:
    red, green = np.array([0.8, 0.2, 0.2]), np.array([0.3, 0.45, 0.35])
    assert abs((red - green) @ pp.LUMA) < 0.05  # a plain brightness formula would lose the digit
    colour = np.where(place(coverage("2"), (60, 60), 40)[..., None] > 0.5, red, green)
    gray = pp.to_grayscale(colour.astype(np.float32))
    assert gray.shape == (60, 60) and 0 <= gray.min() and gray.max() <= 1
    assert abs(gray[colour[..., 0] > 0.5].mean() - gray[colour[..., 0] < 0.5].mean()) > 0.3


def test_fit_background_recovers_a_lighting_gradient_under_ink_and_noise() -> None:
    h, w = 200, 300
    yy, xx = np.mgrid[0:h, 0:w] / 100.0
    light = 0.3 + 0.2 * xx - 0.1 * yy + 0.05 * xx * yy
    ink = place(coverage("0"), (w, h), 150) > 0.5  # ~15% of the pixels
    noisy = light - 0.5 * ink + np.random.default_rng(0).normal(0, 0.02, (h, w))
    background, sigma = pp.fit_background(noisy.astype(np.float32))
    assert np.abs(background - light).max() < 0.02
    assert sigma == pytest.approx(0.02, rel=0.25)


def test_make_ink_bright_decides_polarity() -> None:
    ink = place(coverage("7"), (100, 100), 80)
    for gray in (0.9 - 0.7 * ink, 0.1 + 0.7 * ink):
        bright = pp.make_ink_bright(gray, np.full_like(gray, np.median(gray)), 0.0)
        assert corr(bright, ink) > 0.99


def test_stroke_width_measures_bars_rings_and_slanted_strokes() -> None:
    """Exact enough for strokes of 4 px and more - the analysis resolution makes them so."""
    for width in (4, 5, 8, 13, 20):
        bar = np.zeros((40, 300), np.float32)
        bar[10 : 10 + width, 20:280] = 1.0
        assert pp.stroke_width(bar) == pytest.approx(width, rel=0.1)
    yy, xx = np.mgrid[-100:101, -100:101]
    ring = ((np.hypot(yy, xx) < 80) & (np.hypot(yy, xx) >= 70)).astype(np.float32)
    assert pp.stroke_width(ring) == pytest.approx(10, rel=0.1)
    slanted = Image.new("L", (300, 300), 0)  # aliased: a staircase along each edge
    ImageDraw.Draw(slanted).line([(20, 20), (280, 250)], fill=255, width=8)
    area_over_length = np.asarray(slanted).sum() / 255 / np.hypot(260, 230)
    assert pp.stroke_width(np.asarray(slanted) / 255) == pytest.approx(area_over_length, rel=0.15)


def test_stroke_goal_keeps_usual_widths_and_is_continuous() -> None:
    target = pp.MNIST_STROKE_WIDTH
    widths = np.geomspace(0.05, 20, 2000)
    goals = np.array([pp.stroke_goal(w) for w in widths])
    usual = (widths >= target / pp.STROKE_TOLERANCE) & (widths <= target * pp.STROKE_TOLERANCE)
    np.testing.assert_array_equal(goals[usual], widths[usual])
    assert np.all(goals >= target / pp.STROKE_TOLERANCE - 1e-9)
    assert np.all(goals <= target * pp.STROKE_TOLERANCE + 1e-9)
    assert np.abs(np.diff(goals)).max() < 0.02  # no jumps
    assert pp.stroke_goal(0.1) == pytest.approx(target) and pp.stroke_goal(10) == pytest.approx(
        target
    )


def test_normalise_stroke_reaches_its_goal_without_erasing_parts() -> None:
    for width, digit in [(3, "4"), (12, "0"), (70, "3")]:
        crop = pp.crop_to_ink(pp.find_ink(draw_digit(digit, width=width)).pixels)[0]
        before = pp.stroke_width(crop) * 20 / max(crop.shape)
        after_crop = pp.normalise_stroke(crop)
        after = pp.stroke_width(after_crop) * 20 / max(after_crop.shape)
        assert after == pytest.approx(pp.stroke_goal(before), rel=0.1)
        labels = ndimage.label(after_crop >= 0.5, structure=np.ones((3, 3)))[1]
        assert labels == ndimage.label(crop >= 0.5, structure=np.ones((3, 3)))[1]


@settings(max_examples=50)
@given(
    blob=st.lists(st.tuples(st.integers(0, 59), st.integers(0, 39)), min_size=3, max_size=40),
    scale=st.sampled_from([1, 2, 5]),
)
def test_place_in_frame_centres_the_mass_and_scales_to_20(blob, scale) -> None:
    crop = np.zeros((60 * scale, 40 * scale), np.float32)
    for y, x in blob:
        crop[max(0, y - 3) * scale : (y + 3) * scale, max(0, x - 3) * scale : (x + 3) * scale] = 1
    crop = pp.crop_to_ink(crop)[0]
    if max(crop.shape) < 20:
        return  # enlarging is interpolation; see the next test
    out = pp.place_in_frame(crop)
    row, col = ndimage.center_of_mass(out)
    ink = out > 0.05
    if not (ink[0].any() or ink[-1].any() or ink[:, 0].any() or ink[:, -1].any()):
        assert abs(row - 14) < 0.2 and abs(col - 14) < 0.2  # a box filter quantises to 1/8 px
    assert ink_box_side(out, 1e-6) in (20, 21)  # exact area coverage: no blur beyond the box
    assert out.max() == pytest.approx(1.0)


def test_place_in_frame_enlarges_a_tiny_crop_smoothly() -> None:
    crop = np.zeros((9, 6), np.float32)
    crop[:, 2:4] = 1.0
    crop[0, :] = 1.0
    out = pp.place_in_frame(crop)
    row, col = ndimage.center_of_mass(out)
    assert abs(row - 14) < 0.3 and abs(col - 14) < 0.3
    assert 19 <= ink_box_side(out, 0.5) <= 21
    assert np.count_nonzero((out > 0.05) & (out < 0.95)) > 20  # ramps, not blocks


def test_crop_to_ink_and_box() -> None:
    ink = np.zeros((50, 60), np.float32)
    ink[10:20, 30:45] = 0.5
    crop, box = pp.crop_to_ink(ink)
    assert box == (30, 10, 45, 20) and crop.shape == (10, 15)
    with pytest.raises(NoInkError):
        pp.crop_to_ink(np.zeros((5, 5)))


def test_remove_specks_and_keep_main_ink() -> None:
    ink = np.zeros((100, 100), np.float32)
    ink[20:70, 20:30] = 1.0  # the digit: 500 px of ink
    ink[20:24, 32:36] = 1.0  # a close small piece: 16 px, kept by both (a 5's bar, say)
    ink[90:92, 0:2] = 1.0  # a speck: 4 px < 2% of 500
    ink[85:95, 85:90] = 1.0  # a far mark: 50 px, 10% - not a speck, but far from the digit
    no_specks = pp.remove_specks(ink)
    assert no_specks[90:92, 0:2].sum() == 0 and no_specks[85:95, 85:90].sum() == 50
    main = pp.keep_main_ink(no_specks)
    assert main[85:95, 85:90].sum() == 0 and main[20:24, 32:36].sum() == 16
    assert main[20:70, 20:30].sum() == 500


def test_load_image_reduces_big_pictures_by_box_averaging() -> None:
    big = np.zeros((2000, 2000), np.uint8)
    big[::2] = 255  # stripes: averaging gives grey, point sampling would give black or white
    working = pp.load_image(big)
    assert working.scale == 4 and working.colour.shape == (500, 500)
    assert working.input_size == (2000, 2000)
    np.testing.assert_allclose(working.colour[1:-1, 1:-1], 0.5, atol=0.01)


# --------------------------------------------------------------------------------------------
# Real MNIST digits (when the cache is there)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """300 MNIST test digits from across the set (float in [0, 1]) and their labels."""
    from npcnn.digits import data

    (_, _), (x_test, y_test) = data.load_mnist()
    return x_test[::33][:300].astype(np.float32) / 255.0, y_test[::33][:300]


def test_mnist_digits_come_back_nearly_unchanged(mnist_digits) -> None:
    correlations = []
    for digit in mnist_digits[0]:
        row, col = ndimage.center_of_mass(digit)
        centred = ndimage.shift(digit, (14 - row, 14 - col), order=1)  # MNIST's own centring
        correlations.append(corr(pp.to_mnist(digit), centred))
    assert np.median(correlations) > 0.97 and np.percentile(correlations, 5) > 0.88


def test_mnist_conventions_match_the_constants(mnist_digits) -> None:
    digits = mnist_digits[0]
    centres = np.array([ndimage.center_of_mass(d) for d in digits])
    np.testing.assert_allclose(centres.mean(axis=0), pp.MNIST_CENTRE, atol=0.1)
    assert np.median([ink_box_side(d, 0.0) for d in digits]) == pp.MNIST_BOX
    widths = []
    for digit in digits:
        crop = pp.crop_to_ink(digit)[0]
        side = pp.ANALYSIS_SIDE / max(crop.shape)
        shape = (max(1, round(crop.shape[1] * side)), max(1, round(crop.shape[0] * side)))
        enlarged = np.asarray(Image.fromarray(crop, "F").resize(shape, Image.Resampling.BILINEAR))
        widths.append(pp.stroke_width(enlarged) * pp.MNIST_BOX / pp.ANALYSIS_SIDE)
    assert np.median(widths) == pytest.approx(pp.MNIST_STROKE_WIDTH, rel=0.08)


def mnist_as_photo(digit: np.ndarray, seed: int) -> Image.Image:
    """A MNIST digit enlarged 5x, dark on light paper, off-centre, photographed."""
    big = np.asarray(Image.fromarray(digit, "F").resize((140, 140), Image.Resampling.BILINEAR))
    canvas = np.zeros((240, 320), np.float32)
    canvas[80:220, 30:170] = np.clip(big, 0, 1)
    return photo(canvas, seed=seed, noise=0.03)


def test_mnist_digits_survive_being_photographed(mnist_digits) -> None:
    correlations = [
        corr(pp.to_mnist(mnist_as_photo(digit, i)), pp.to_mnist(digit))
        for i, digit in enumerate(mnist_digits[0][:120])
    ]
    assert np.median(correlations) > 0.95 and np.percentile(correlations, 10) > 0.9


# --------------------------------------------------------------------------------------------
# The shipped model's predictions (when the weights are there)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    if not WEIGHTS.exists():
        pytest.skip(f"the shipped model {WEIGHTS} does not exist yet")
    import npcnn

    return npcnn.load(WEIGHTS)


def predict(model, images: list[np.ndarray]) -> np.ndarray:
    return model.predict(np.stack(images)[:, None].astype(np.float32)).argmax(axis=1)


def test_model_reads_preprocessed_mnist_as_well_as_raw_mnist(model, mnist_digits) -> None:
    digits, labels = mnist_digits
    raw = (predict(model, list(digits)) == labels).mean()
    processed = (predict(model, [pp.to_mnist(d) for d in digits]) == labels).mean()
    photos = [pp.to_mnist(mnist_as_photo(d, i)) for i, d in enumerate(digits[:150])]
    photographed = (predict(model, photos) == labels[:150]).mean()
    assert processed >= raw - 0.01
    assert photographed >= raw - 0.03


def test_model_prediction_does_not_depend_on_how_the_digit_is_drawn(model) -> None:
    agree = total = correct = 0
    for digit in STROKES:
        ink = coverage(digit)
        expected = predict(model, [pp.to_mnist(paint(place(ink)))])[0]
        correct += int(expected == int(digit))
        outs = [pp.to_mnist(make(ink)) for name, make in VARIANTS.items() if "huge" not in name]
        outs += [pp.to_mnist(draw_digit(digit, width=w)) for w in (2, 26, 60)]
        predictions = predict(model, outs)
        agree += int((predictions == expected).sum())
        total += len(outs)
    assert agree / total >= 0.9
    assert correct >= len(STROKES) - 2  # drawn digits are not MNIST's handwriting, but close


# --------------------------------------------------------------------------------------------
# segment_digits: a whole number
# --------------------------------------------------------------------------------------------


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
    crops = pp.segment_digits(paint(ink))
    assert_boxes_close([c.box for c in crops], boxes, 1)
    for crop, digit in zip(crops, "2026", strict=True):
        assert_mnist_like(crop.image)
        alone = pp.to_mnist(paint(place(coverage(digit, height=150), (280, 280), 150)))
        assert corr(crop.image, alone) > 0.97


def test_segment_splits_touching_digits() -> None:
    ink, boxes = write_number("2026", gap=[40, -12, 40, 0])  # the "0" and the "2" touch
    assert ndimage.label(ink > 0.5, structure=np.ones((3, 3)))[1] == 3  # they really do
    crops = pp.segment_digits(paint(ink))
    assert_boxes_close([c.box for c in crops], boxes, 14)
    for crop, digit in zip(crops, "2026", strict=True):
        assert corr(crop.image, pp.to_mnist(draw_digit(digit))) > 0.75


def test_segment_splits_a_touching_pair_by_its_aspect_ratio() -> None:
    ink, boxes = write_number("00", gap=-8)
    assert ndimage.label(ink > 0.5, structure=np.ones((3, 3)))[1] == 1
    crops = pp.segment_digits(paint(ink))
    assert_boxes_close([c.box for c in crops], boxes, 10)


def test_segment_keeps_a_wide_digit_whole() -> None:
    wide = draw_digit("2", size=(300, 200), box=(40, 40, 200, 160), width=14)
    wide = wide.resize((430, 200))  # stretched: as wide as tall
    rows, cols = np.nonzero(np.asarray(wide) < 128)
    assert 0.9 < np.ptp(cols) / np.ptp(rows) < 1.1
    assert len(pp.segment_digits(wide)) == 1


def test_segment_merges_a_broken_digit() -> None:
    ink, _ = write_number("45", raise_first_stroke=0.12)  # the 5's top bar floats free
    assert ndimage.label(ink > 0.5, structure=np.ones((3, 3)))[1] == 3
    crops = pp.segment_digits(paint(ink))
    assert len(crops) == 2
    assert corr(crops[1].image, pp.to_mnist(draw_digit("5"))) > 0.85


def test_segment_drops_specks_and_a_decimal_point() -> None:
    ink, boxes = write_number("3175", specks=30)
    x_point = (boxes[1][2] + boxes[2][0]) // 2  # between "1" and "7", on the baseline
    bottom = boxes[1][3]
    ink[bottom - 14 : bottom, x_point - 7 : x_point + 7] = 1.0
    crops = pp.segment_digits(paint(ink, (0, 0, 120), (255, 250, 235)))
    assert_boxes_close([c.box for c in crops], boxes, 1)


def test_segment_a_big_photo_gives_boxes_in_its_own_pixels() -> None:
    ink, boxes = write_number("2026", height=900, gap=150, margin=200)
    picture = photo(ink)
    assert picture.width * picture.height > 4 * pp.WORK_PIXELS  # it will be reduced first
    crops = pp.segment_digits(picture)
    scale = pp.load_image(picture).scale
    assert_boxes_close([c.box for c in crops], boxes, 2 * scale)


@settings(max_examples=15)
@given(
    text=st.text(alphabet="01234567", min_size=1, max_size=5),
    height=st.integers(30, 160),
    gap_fraction=st.floats(0.15, 0.6),
)
def test_segment_any_separate_number(text, height, gap_fraction) -> None:
    ink, boxes = write_number(text, height=height, gap=round(gap_fraction * height))
    crops = pp.segment_digits(ink)
    assert_boxes_close([c.box for c in crops], boxes, 1)


def test_segment_nothing_raises_no_ink() -> None:
    with pytest.raises(NoInkError):
        pp.segment_digits(Image.new("RGB", (300, 100), (200, 180, 160)))


def test_segment_a_single_digit_agrees_with_to_mnist() -> None:
    image = draw_digit("6")
    (crop,) = pp.segment_digits(image)
    np.testing.assert_allclose(crop.image, pp.to_mnist(image), atol=1e-6)


# --------------------------------------------------------------------------------------------
# decode_image: untrusted bytes
# --------------------------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width x height`` 8-bit grey pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


SAMPLE_FILES = {
    fmt: png_bytes(draw_digit("3", size=(64, 48), box=(10, 5, 50, 45), width=5, mode=mode), fmt)
    for fmt, mode in [("PNG", "L"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"),
                      ("WEBP", "RGB"), ("TIFF", "L"), ("PPM", "RGB")]
}  # fmt: skip


@pytest.mark.parametrize("fmt", list(SAMPLE_FILES))
def test_decode_common_formats(fmt) -> None:
    image = pp.decode_image(SAMPLE_FILES[fmt])
    assert image.size == (64, 48)
    assert_mnist_like(pp.to_mnist(image))


def _decode_then_preprocess(data: bytes) -> None:
    """The app's path; anything but ImageError (NoInkError is one) would be a crash."""
    try:
        pp.to_mnist(pp.decode_image(data))
    except ImageError:
        pass


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt TIFF/EXIF tags
@settings(max_examples=300)
@given(st.binary(max_size=3000))
def test_random_bytes_never_crash(data) -> None:
    _decode_then_preprocess(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt TIFF/EXIF tags
@settings(max_examples=300)
@given(
    fmt=st.sampled_from(list(SAMPLE_FILES)),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    keep=st.floats(0.0, 1.0),
)
def test_damaged_files_never_crash(fmt, edits, keep) -> None:
    data = bytearray(SAMPLE_FILES[fmt])
    for position, value in edits:
        data[position % len(data)] = value
    _decode_then_preprocess(bytes(data[: max(1, round(keep * len(data)))]))


def test_truncated_png_is_an_image_error() -> None:
    data = png_bytes(draw_digit("3"))
    with pytest.raises(ImageError, match="truncated|corrupt"):
        pp.decode_image(data[: len(data) - 40])


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (8_000, 6_000), (30_000, 10)])
def test_decompression_bombs_are_refused_before_decoding(width, height) -> None:
    started = time.perf_counter()
    with pytest.raises(ImageError, match="too large"):
        pp.decode_image(png_claiming(width, height))
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("data", [b"", png_claiming(0, 10), png_claiming(10, 0), b"GIF89a"])
def test_empty_zero_size_and_headers_only_are_image_errors(data) -> None:
    with pytest.raises(ImageError):
        pp.decode_image(data)


def test_non_bytes_and_unsupported_formats_are_image_errors() -> None:
    with pytest.raises(ImageError):
        pp.decode_image("a string")  # type: ignore[arg-type]
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageError, match="not an image in a supported format"):
        pp.decode_image(eps)  # never handed to Ghostscript


def test_exif_orientation_is_applied() -> None:
    upright = draw_digit("7", size=(200, 300), box=(10, 60, 190, 240), mode="RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as the camera stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = pp.decode_image(png_bytes(stored, "JPEG", exif=exif.tobytes(), quality=95))
    assert decoded.size == upright.size
    assert corr(pp.to_mnist(decoded), pp.to_mnist(upright)) > 0.97


def test_animated_gif_gives_its_first_frame() -> None:
    first, second = draw_digit("2", mode="P"), draw_digit("7", mode="P")
    data = png_bytes(first, "GIF", save_all=True, append_images=[second], duration=100)
    decoded = pp.decode_image(data)
    assert corr(pp.to_mnist(decoded), pp.to_mnist(first)) > 0.99


def test_huge_but_legal_jpeg_is_decoded_reduced_and_fast() -> None:
    picture = paint(place(coverage("4"), (4000, 3000), 2200))
    data = png_bytes(picture, "JPEG", quality=85)
    started = time.perf_counter()
    decoded = pp.decode_image(data)
    out = pp.to_mnist(decoded)
    elapsed = time.perf_counter() - started
    assert decoded.width * decoded.height <= 4_000_000 and decoded.size == (2000, 1500)
    assert_mnist_like(out)
    assert elapsed < 3.0  # ~0.1 s unloaded
    assert pp.decode_image(data, reduce_to_pixels=None).size == (4000, 3000)


def test_size_limits_are_the_callers_to_choose() -> None:
    data = png_bytes(draw_digit("1", size=(300, 200)))
    with pytest.raises(ImageError, match="too large"):
        pp.decode_image(data, max_pixels=50_000)
    with pytest.raises(ImageError, match="too large"):
        pp.decode_image(data, max_side=250)
    assert pp.decode_image(data, max_pixels=60_000, max_side=300).size == (300, 200)
