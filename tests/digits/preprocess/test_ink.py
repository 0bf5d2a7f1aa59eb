"""Tests of npcnn.digits.preprocess.ink (steps 1-4): transparency, grayscale, background, polarity,
noise and specks -> clean ink; nothing to recognise -> ``NoInkError``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from preprocess_pictures import (
    corr,
    coverage,
    paint,
    place,
)

from npcnn.digits.errors import NoInkError
from npcnn.digits.preprocess.framing import to_mnist
from npcnn.digits.preprocess.ink import (
    LUMA,
    fit_background,
    flatten_alpha,
    keep_main_ink,
    make_ink_bright,
    remove_specks,
    to_grayscale,
)


def test_transparent_margins_around_a_page_vanish_into_the_page(reference) -> None:
    """Mostly opaque: the opaque pixels are the paper, so transparency becomes paper colour."""
    page = np.asarray(paint(place(coverage("7")), (20, 20, 90), (240, 235, 200)))
    alpha = np.full(page.shape[:2], 255, np.uint8)
    alpha[:, :40] = 0  # a transparent band on the left, where the colour is garbage
    rgba = np.dstack([page, alpha])
    rgba[:, :40, :3] = 0
    out = to_mnist(Image.fromarray(rgba, "RGBA"))
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
        assert corr(to_mnist(picture), reference["4"]) > 0.95


def test_a_stray_mark_far_away_is_ignored(reference) -> None:
    ink = place(coverage("4"), (400, 400), 200, at=(60, 60))
    ink[360:372, 360:372] = 1.0  # a brush dot in the far corner
    assert corr(to_mnist(paint(ink)), reference["4"]) > 0.97


def test_specks_and_dust_are_ignored(reference) -> None:
    rng = np.random.default_rng(3)
    ink = place(coverage("2"))
    for y, x in rng.integers(0, 278, size=(40, 2)):
        ink[y : y + 2, x : x + 2] = 1.0
    assert corr(to_mnist(paint(ink)), reference["2"]) > 0.97


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
        to_mnist(np.clip(rgb, 0, 1))


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
            to_mnist(image)
            pytest.fail(name)


def test_flatten_alpha_picks_the_background_that_shows_the_ink() -> None:
    alpha = np.zeros((20, 20), np.float32)
    alpha[5:15, 9:11] = 1.0
    for ink, expected_paper in [(0.0, 1.0), (1.0, 0.0), (0.1, 1.0), (0.9, 0.0)]:
        colour = np.full((20, 20, 3), ink, np.float32) * alpha[..., None]  # premultiplied
        flat = flatten_alpha(colour, alpha)
        np.testing.assert_allclose(flat[0, 0], expected_paper)
        np.testing.assert_allclose(flat[10, 10], ink, atol=1e-6)


def test_to_grayscale_keeps_contrast_between_equally_bright_colours() -> None:
    red, green = np.array([0.8, 0.2, 0.2]), np.array([0.3, 0.45, 0.35])
    assert abs((red - green) @ LUMA) < 0.05  # a plain brightness formula would lose the digit
    colour = np.where(place(coverage("2"), (60, 60), 40)[..., None] > 0.5, red, green)
    gray = to_grayscale(colour.astype(np.float32))
    assert gray.shape == (60, 60) and 0 <= gray.min() and gray.max() <= 1
    assert abs(gray[colour[..., 0] > 0.5].mean() - gray[colour[..., 0] < 0.5].mean()) > 0.3


def test_fit_background_recovers_a_lighting_gradient_under_ink_and_noise() -> None:
    h, w = 200, 300
    yy, xx = np.mgrid[0:h, 0:w] / 100.0
    light = 0.3 + 0.2 * xx - 0.1 * yy + 0.05 * xx * yy
    ink = place(coverage("0"), (w, h), 150) > 0.5  # ~15% of the pixels
    noisy = light - 0.5 * ink + np.random.default_rng(0).normal(0, 0.02, (h, w))
    background, sigma = fit_background(noisy.astype(np.float32))
    assert np.abs(background - light).max() < 0.02
    assert sigma == pytest.approx(0.02, rel=0.25)


def test_make_ink_bright_decides_polarity() -> None:
    ink = place(coverage("7"), (100, 100), 80)
    for gray in (0.9 - 0.7 * ink, 0.1 + 0.7 * ink):
        bright = make_ink_bright(gray, np.full_like(gray, np.median(gray)), 0.0)
        assert corr(bright, ink) > 0.99


def test_remove_specks_and_keep_main_ink() -> None:
    ink = np.zeros((100, 100), np.float32)
    ink[20:70, 20:30] = 1.0  # the digit: 500 px of ink
    ink[20:24, 32:36] = 1.0  # a close small piece: 16 px, kept by both (a 5's bar, say)
    ink[90:92, 0:2] = 1.0  # a speck: 4 px < 2% of 500
    ink[85:95, 85:90] = 1.0  # a far mark: 50 px, 10% - not a speck, but far from the digit
    no_specks = remove_specks(ink)
    assert no_specks[90:92, 0:2].sum() == 0 and no_specks[85:95, 85:90].sum() == 50
    main = keep_main_ink(no_specks)
    assert main[85:95, 85:90].sum() == 0 and main[20:24, 32:36].sum() == 16
    assert main[20:70, 20:30].sum() == 500
