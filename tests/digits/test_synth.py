"""npcnn.digits.synth: synthetic digits and non-digits, from allowed sources only."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from npcnn.digits import synth
from npcnn.errors import ConfigError

ALLOWED_PACKAGES = {
    "fonts-dejavu-core",
    "fonts-dejavu-extra",
    "fonts-liberation2",
    "fonts-freefont-ttf",
    "fonts-urw-base35",
    "fonts-texgyre",
}
needs_fonts = pytest.mark.skipif(not synth.allowed_fonts(), reason="no allowed font installed")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NPCNN_DATA", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def digits():
    return synth.synthetic_digits(400, seed=3, cache=False)


@pytest.fixture(scope="module")
def others():
    return synth.non_digits(300, seed=3, cache=False)


def test_the_font_list_holds_only_the_allowed_packages():
    assert set(synth.FONT_FILES) == ALLOWED_PACKAGES
    for package, files in synth.FONT_FILES.items():
        assert files, package
        for path in files:
            assert path.endswith((".ttf", ".otf", ".pfb")), path
            # no calligraphy, no symbol or dingbat fonts
            assert not any(bad in path for bad in ("Z003", "chorus", "Symbol", "D050000L")), path
    assert len({p for files in synth.FONT_FILES.values() for p in files}) == sum(
        len(files) for files in synth.FONT_FILES.values()
    )
    for path in synth.allowed_fonts():
        assert synth.font_package(path) in ALLOWED_PACKAGES


@needs_fonts
def test_installed_fonts_belong_to_their_package():
    """Where dpkg can say, every file used is owned by the package it is listed under."""
    for path in synth.allowed_fonts()[::7]:
        try:
            out = subprocess.run(["dpkg", "-S", str(path)], capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("no dpkg")
        if out.returncode == 0:
            assert out.stdout.split(":")[0] == synth.font_package(path), out.stdout


def test_non_digit_characters_avoid_digit_lookalikes():
    assert not set(synth.NON_DIGIT_CHARS) & set(synth.LOOKALIKES)
    assert not set(synth.NON_DIGIT_CHARS) & set("0123456789")


@needs_fonts
def test_images_look_like_mnist_inputs(digits, others):
    for data in (digits, others):
        assert data.images.dtype == np.uint8 and data.images.shape == (len(data), 28, 28)
        assert data.labels.dtype == np.int64 and data.styles.shape == (len(data),)
        assert (data.images.max(axis=(1, 2)) == 255).all()  # white ink on black, full range
        corners = data.images[:, [0, 0, -1, -1], [0, -1, 0, -1]]
        assert (corners == 0).all()
        # framed like MNIST: the longer side 20 px (a pixel or two of anti-aliasing more), the
        # centre of mass near the centre
        ink = data.images.astype(np.float64)
        mass = ink.sum(axis=(1, 2))
        centre_r = (ink.sum(axis=2) @ np.arange(28)) / mass
        centre_c = (ink.sum(axis=1) @ np.arange(28)) / mass
        assert np.abs(centre_r - 13.5).max() < 1.5 and np.abs(centre_c - 13.5).max() < 1.5
        extent = np.maximum((ink.max(axis=2) > 0).sum(axis=1), (ink.max(axis=1) > 0).sum(axis=1))
        assert (extent <= 23).all() and np.median(extent) >= 20


@needs_fonts
def test_labels_digits_and_non_digits_are_disjoint(digits, others):
    assert set(np.unique(digits.labels)) == set(range(10))
    assert set(np.unique(others.labels)) == {synth.NOT_A_DIGIT}


@needs_fonts
def test_every_style_is_there():
    data = synth.synthetic_digits(300, seed=1, font_fraction=0.2, cache=False)
    styles = set(data.styles)
    assert "font" in styles
    for style in synth.STROKE_STYLES:
        assert f"stroke:{style}" in styles, style
    for style in ("1-flag", "1-flag-base", "7-crossed", "4-open", "4-closed", "9-straight",
                  "9-curved"):  # fmt: skip
        assert style in synth.STROKE_STYLES
        label = synth._STROKE_DIGITS[style][0]
        assert (data.labels[data.styles == f"stroke:{style}"] == label).all()
    others = synth.non_digits(300, seed=1, font_fraction=0.3, cache=False)
    assert {"font:letter", "font:symbol", *synth.SHAPE_STYLES} <= set(others.styles)


@needs_fonts
def test_seeded_and_different_per_seed(digits):
    again = synth.synthetic_digits(400, seed=3, cache=False)
    np.testing.assert_array_equal(digits.images, again.images)
    np.testing.assert_array_equal(digits.labels, again.labels)
    other = synth.synthetic_digits(400, seed=4, cache=False)
    assert not np.array_equal(digits.images, other.images)


@needs_fonts
def test_the_cache_is_written_once_and_reused(monkeypatch):
    first = synth.non_digits(50, seed=9)
    files = list(synth.cache_dir().glob("nondigits-*.npz"))
    assert len(files) == 1

    def fail(*args, **kwargs):
        raise AssertionError("generated again instead of read from the cache")

    monkeypatch.setattr(synth, "_make_non_digits", fail)
    second = synth.non_digits(50, seed=9)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.styles, second.styles)
    with pytest.raises(AssertionError):
        synth.non_digits(51, seed=9)  # other parameters: another cache entry


def test_stroke_styles_need_no_fonts():
    data = synth.synthetic_digits(60, seed=0, font_fraction=0.0, cache=False)
    assert all(s.startswith("stroke:") for s in data.styles)
    shapes = synth.non_digits(40, seed=0, font_fraction=0.0, cache=False)
    assert set(shapes.styles) <= set(synth.SHAPE_STYLES)


def test_thin_reduces_a_bar_to_a_line():
    mask = np.zeros((1, 20, 30), dtype=bool)
    mask[0, 6:13, 3:27] = True
    skeleton = synth.thin(mask)[0]
    assert skeleton.sum() < 30 and skeleton.any()
    rows = np.nonzero(skeleton.any(axis=1))[0]
    assert rows.max() - rows.min() <= 1


def test_bad_arguments():
    with pytest.raises(ConfigError):
        synth.synthetic_digits(-1)
    with pytest.raises(ConfigError):
        synth.non_digits(5, font_fraction=1.5)


@needs_fonts
def test_concatenate(digits, others):
    both = synth.concatenate(digits, others)
    assert len(both) == len(digits) + len(others)
    assert Path(synth.cache_dir()).name == "synth"


def bars_and_rings() -> tuple[np.ndarray, np.ndarray]:
    """20 upright bars and rings, like 1s and 0s, and those labels."""
    digits = np.zeros((20, 28, 28), dtype=np.uint8)
    for k in range(20):
        if k % 2:
            digits[k, 4:24, 12:16] = 255
        else:
            yy, xx = np.mgrid[:28, :28]
            ring = np.abs(np.hypot(yy - 14, (xx - 14) * 1.4) - 8) < 2
            digits[k][ring] = 255
    return digits, np.arange(20) % 2


def test_joined_digits_are_two_digits_framed_as_one():
    digits, _ = bars_and_rings()
    joined = synth.joined_digits(digits, 40, seed=0)
    assert joined.images.shape == (40, 28, 28) and joined.images.dtype == np.uint8
    assert (joined.labels == synth.NOT_A_DIGIT).all()
    assert sorted(set(joined.styles)) == sorted(synth.JOINED_STYLES)
    for image, style in zip(joined.images, joined.styles, strict=True):
        ys, xs = np.nonzero(image > 80)
        # two digits side by side: never a narrow, upright mark like one digit (a bold 1)
        assert xs.max() - xs.min() + 1 >= 0.6 * (ys.max() - ys.min() + 1), style
    seven = synth.joined_digits(digits, 40, seed=7).images
    assert np.array_equal(seven, synth.joined_digits(digits, 40, seed=7).images)
    assert not np.array_equal(seven, synth.joined_digits(digits, 40, seed=8).images)


def test_cut_digits_keep_their_digit_and_only_a_piece_of_the_neighbour():
    from scipy import ndimage

    digits, labels = bars_and_rings()
    cut = synth.cut_digits(digits, labels, 60, seed=0)
    assert cut.images.shape == (60, 28, 28) and cut.images.dtype == np.uint8
    assert sorted(set(cut.styles)) == ["cut:overlapping", "cut:touching"]
    holes = np.array([ndimage.label(image < 80)[1] - 1 for image in cut.images])
    # a ring keeps at least 85% of its ink, and its hole; a bar gets at most 30% of a ring's
    # ink, an arc that closes a loop with the bar only where it touches it at both ends
    assert (holes[cut.labels == 0] >= 1).all()
    assert np.mean(holes[cut.labels == 1] == 0) >= 0.8
    assert set(cut.labels) == {0, 1}
    again = synth.cut_digits(digits, labels, 60, seed=0)
    assert np.array_equal(cut.images, again.images)
    assert not np.array_equal(cut.images, synth.cut_digits(digits, labels, 60, seed=1).images)
    with pytest.raises(ValueError, match="a label per image"):
        synth.cut_digits(digits, labels[:5], 3)
