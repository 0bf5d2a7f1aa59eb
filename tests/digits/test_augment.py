"""Tests of npcnn.digits.augment: shapes, ranges, reproducibility, identity, that each change does what it
says, and the background batch generator."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npcnn import kernels
from npcnn.digits import augment
from npcnn.digits.augment import AugmentConfig, augment_batch, augmented_batches
from npcnn.digits.errors import ImageError
from npcnn.errors import NpcnnError

# Every change off: tests switch on the one they look at.
NOTHING = dict(rotation_p=0.0, zoom_p=0.0, shift_p=0.0, shear_p=0.0, elastic_p=0.0, thickness_p=0.0)


def blobs(n: int = 16, seed: int = 0) -> np.ndarray:
    """n smooth random "digits": float32 (n, 1, 28, 28) in [0, 1], ink in the middle."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, 28, 28), dtype=np.float32)
    images[:, 0, 6:22, 8:20] = rng.random((n, 16, 12), dtype=np.float32)
    return images


def horizontal_bar() -> np.ndarray:
    image = np.zeros((28, 28), dtype=np.float32)
    image[13:15, 4:24] = 1.0  # 2 rows x 20 columns, centred on (13.5, 13.5)
    return image


def centroid(image: np.ndarray) -> np.ndarray:
    rows, cols = np.indices(image.shape)
    mass = image.sum()
    return np.array([(rows * image).sum() / mass, (cols * image).sum() / mass])


def orientation_deg(image: np.ndarray) -> float:
    """The angle of an image's long axis, from its second moments: 0 = horizontal, +90 = vertical,
    positive = turned counter-clockwise on screen (rows point down)."""
    rows, cols = np.indices(image.shape)
    r0, c0 = centroid(image)
    mass = image.sum()
    mu_rr = (image * (rows - r0) ** 2).sum() / mass
    mu_cc = (image * (cols - c0) ** 2).sum() / mass
    mu_rc = (image * (rows - r0) * (cols - c0)).sum() / mass
    return float(np.degrees(0.5 * np.arctan2(-2 * mu_rc, mu_cc - mu_rr)))


# --------------------------------------------------------------------------------------------
# The basics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(12, 1, 28, 28), (12, 28, 28), (5, 1, 20, 32)])
def test_shape_dtype_and_range(shape):
    images = np.random.default_rng(0).random(shape, dtype=np.float32)
    before = images.copy()
    out = augment_batch(images, np.random.default_rng(1), AugmentConfig(strength=1.5))
    assert out.shape == shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(images, before)  # the input is left alone


def test_float64_in_float64_out_and_out_of_range_input_is_clipped():
    images = blobs(4).astype(np.float64) * 3 - 1  # values in [-1, 2]
    out = augment_batch(images, np.random.default_rng(0), AugmentConfig())
    assert out.dtype == np.float64 and out.min() >= 0.0 and out.max() <= 1.0


def test_empty_batch():
    out = augment_batch(np.zeros((0, 1, 28, 28), np.float32), np.random.default_rng(0))
    assert out.shape == (0, 1, 28, 28)


def test_same_seed_same_images_other_seed_other_images():
    images = blobs(32)
    config = AugmentConfig(elastic_p=0.5, thickness_p=0.5)
    first = augment_batch(images, np.random.default_rng(42), config)
    again = augment_batch(images, np.random.default_rng(42), config)
    other = augment_batch(images, np.random.default_rng(43), config)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, images)


@pytest.mark.parametrize(
    "config",
    [
        AugmentConfig.none(),
        AugmentConfig(strength=0.0, elastic_p=1.0, thickness_p=1.0, hflip_p=1.0, vflip_p=1.0),
        AugmentConfig(**NOTHING),
        AugmentConfig(  # every change chosen, each with a zero range
            rotation_deg=0.0,
            zoom_range=(1.0, 1.0),
            shift_px=0.0,
            shear=0.0,
            elastic_alpha=0.0,
            thickness_p=0.0,
            **{name: 1.0 for name in ["rotation_p", "zoom_p", "shift_p", "shear_p", "elastic_p"]},
        ),
    ],
)
def test_zero_strength_is_the_identity(config):
    images = blobs(8)
    np.testing.assert_array_equal(augment_batch(images, np.random.default_rng(0), config), images)


def test_flips_are_off_by_default():
    config = AugmentConfig()
    assert config.hflip_p == 0.0 and config.vflip_p == 0.0
    assert "6" in AugmentConfig.__doc__ and "9" in AugmentConfig.__doc__  # the reason is given


@pytest.mark.parametrize(("field", "flip_axis"), [("hflip_p", -1), ("vflip_p", -2)])
def test_a_flip_is_an_exact_mirror(field, flip_axis):
    images = blobs(6)
    out = augment_batch(images, np.random.default_rng(0), AugmentConfig(**NOTHING, **{field: 1.0}))
    np.testing.assert_allclose(out, np.flip(images, axis=flip_axis), atol=1e-6)


# --------------------------------------------------------------------------------------------
# Each change does what it says
# --------------------------------------------------------------------------------------------


def moved(
    image: np.ndarray, forward: np.ndarray, shift: tuple[float, float] = (0, 0)
) -> np.ndarray:
    """``image`` (H, W) through augment's affine resampling by ``forward`` and ``shift``."""
    rows, cols = augment._affine_source_points(forward[None], np.array([shift]), *image.shape)
    return kernels.sample_bilinear(image[None], rows, cols)[0]


def test_a_quarter_turn_stands_a_bar_up_counter_clockwise():
    bar = horizontal_bar()
    quarter = augment._affine_matrices(
        np.array([np.pi / 2]), np.ones(1), np.zeros(1), np.zeros(1, bool), np.zeros(1, bool)
    )[0]
    turned = moved(bar, quarter)
    np.testing.assert_allclose(turned, bar.T, atol=1e-5)  # 2 columns x 20 rows, same centre
    dot = np.zeros((28, 28), np.float32)
    dot[13:15, 20:22] = 1.0  # right of the centre ...
    r, c = centroid(moved(dot, quarter))
    assert r < 8 and abs(c - 13.5) < 0.5  # ... goes up: counter-clockwise on screen


@settings(max_examples=20, deadline=None)
@given(
    angle=st.floats(-np.pi, np.pi),
    zoom=st.floats(0.5, 2.0),
    shear=st.floats(-0.5, 0.5),
    shift=st.tuples(st.floats(-4, 4), st.floats(-4, 4)),
)
def test_the_affine_resampling_is_scipys_affine_transform(angle, zoom, shear, shift):
    from scipy import ndimage

    image = blobs(1)[0, 0]
    forward = augment._affine_matrices(
        np.array([angle]), np.array([zoom]), np.array([shear]), np.zeros(1, bool), np.zeros(1, bool)
    )[0]
    centre = (np.array(image.shape) - 1) / 2
    inverse = np.linalg.inv(forward)  # scipy wants output -> input: p = A^-1 o + offset
    offset = centre - inverse @ (centre + np.array(shift))
    expected = ndimage.affine_transform(image, inverse, offset, order=1, mode="grid-constant")
    np.testing.assert_allclose(moved(image, forward, shift), expected, atol=1e-5)


@pytest.mark.parametrize(("size", "sigma"), [(28, 4.0), (9, 1.5), (5, 10.0)])
def test_gaussian_matrix_smooths_as_scipy_gaussian_filter(size, sigma):
    from scipy import ndimage

    fields = np.random.default_rng(0).uniform(-1, 1, (3, 2, size, size))
    smoothing = augment._gaussian_matrix(size, sigma)
    np.testing.assert_allclose(
        smoothing @ fields @ smoothing.T,
        ndimage.gaussian_filter(fields, sigma=(0, 0, sigma, sigma)),
        atol=1e-12,
    )


def test_random_rotation_turns_bars_within_the_range_about_the_centre():
    bars = np.repeat(horizontal_bar()[None, None], 40, axis=0)
    config = AugmentConfig(**{**NOTHING, "rotation_p": 1.0, "rotation_deg": 60.0})
    out = augment_batch(bars, np.random.default_rng(0), config)[:, 0]
    angles = np.array([orientation_deg(image) for image in out])
    assert np.all(np.abs(angles) <= 61)
    assert angles.min() < -30 and angles.max() > 30  # really spread over the range
    for image in out:
        np.testing.assert_allclose(centroid(image), [13.5, 13.5], atol=0.2)
        assert image.sum() == pytest.approx(40.0, rel=0.1)  # the ink is kept


def test_shift_moves_the_centroid_by_at_most_the_range():
    images = np.repeat(horizontal_bar()[None], 40, axis=0)
    config = AugmentConfig(**{**NOTHING, "shift_p": 1.0, "shift_px": 3.0})
    out = augment_batch(images, np.random.default_rng(0), config)
    moves = np.array([centroid(image) - 13.5 for image in out])
    assert np.abs(moves).max() <= 3.01 and np.abs(moves).max() > 2.0
    assert np.all([orientation_deg(image) == pytest.approx(0, abs=1) for image in out])


def test_zoom_scales_the_ink():
    square = np.zeros((1, 28, 28), np.float32)
    square[0, 9:19, 9:19] = 1.0  # 10 x 10
    grow = AugmentConfig(**{**NOTHING, "zoom_p": 1.0, "zoom_range": (1.3, 1.3)})
    shrink = AugmentConfig(**{**NOTHING, "zoom_p": 1.0, "zoom_range": (0.7, 0.7)})
    rng = np.random.default_rng(0)
    assert augment_batch(square, rng, grow).sum() == pytest.approx(100 * 1.3**2, rel=0.05)
    assert augment_batch(square, rng, shrink).sum() == pytest.approx(100 * 0.7**2, rel=0.05)


def test_shear_slants_a_vertical_bar():
    bar = horizontal_bar().T[None]
    config = AugmentConfig(**{**NOTHING, "shear_p": 1.0, "shear": 0.5})
    angles = [
        orientation_deg(augment_batch(bar, np.random.default_rng(seed), config)[0])
        for seed in range(12)
    ]
    assert max(abs(90 - abs(angle)) for angle in angles) > 5  # no longer upright
    assert all(abs(90 - abs(angle)) < 30 for angle in angles)  # atan(0.5) = 26.6 degrees


def test_elastic_distortion_moves_pixels_locally():
    images = blobs(8)
    config = AugmentConfig(**{**NOTHING, "elastic_p": 1.0})
    out = augment_batch(images, np.random.default_rng(0), config)
    assert all(not np.array_equal(a, b) for a, b in zip(out, images, strict=True))
    ink_before, ink_after = images.sum(axis=(1, 2, 3)), out.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(ink_after, ink_before, rtol=0.25)  # moved, not erased
    flat = AugmentConfig(**{**NOTHING, "elastic_p": 1.0, "elastic_alpha": 0.0})
    np.testing.assert_array_equal(augment_batch(images, np.random.default_rng(0), flat), images)


def test_thickness_dilates_or_erodes():
    images = blobs(40)
    config = AugmentConfig(**{**NOTHING, "thickness_p": 1.0})
    out = augment_batch(images, np.random.default_rng(0), config)
    bolder = [bool(np.all(a >= b) and a.sum() > b.sum()) for a, b in zip(out, images, strict=True)]
    finer = [bool(np.all(a <= b) and a.sum() < b.sum()) for a, b in zip(out, images, strict=True)]
    assert all(x or y for x, y in zip(bolder, finer, strict=True))
    assert 5 < sum(bolder) < 35  # about half each way


def test_probabilities_choose_about_that_share_of_images():
    images = np.repeat(horizontal_bar()[None], 400, axis=0)
    config = AugmentConfig(**{**NOTHING, "shift_p": 0.25})
    out = augment_batch(images, np.random.default_rng(0), config)
    changed = np.mean([not np.array_equal(a, b) for a, b in zip(out, images, strict=True)])
    assert 0.18 < changed < 0.32


@settings(max_examples=25, deadline=None)
@given(
    strength=st.floats(0.0, 2.0),
    probabilities=st.lists(st.floats(0.0, 1.0), min_size=6, max_size=6),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 6),
)
def test_any_config_gives_valid_reproducible_images(strength, probabilities, seed, n):
    names = ["rotation_p", "zoom_p", "shift_p", "shear_p", "elastic_p", "thickness_p"]
    config = AugmentConfig(**dict(zip(names, probabilities, strict=True)), strength=strength)
    images = blobs(n, seed=seed % 100)
    out = augment_batch(images, np.random.default_rng(seed), config)
    assert out.shape == images.shape and out.dtype == np.float32
    assert np.all((out >= 0) & (out <= 1))
    np.testing.assert_array_equal(out, augment_batch(images, np.random.default_rng(seed), config))


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((2, 3, 28, 28), np.float32),
        np.zeros((28, 28), np.float32),
        np.zeros((2, 28, 28), np.uint8),
        [[0.0]],
    ],
)
def test_bad_images_are_an_image_error(images):
    with pytest.raises(ImageError):
        augment_batch(images, np.random.default_rng(0))


@pytest.mark.parametrize(
    "knobs",
    [
        {"rotation_p": 1.5},
        {"elastic_p": -0.1},
        {"shift_px": -1.0},
        {"strength": float("nan")},
        {"zoom_range": (1.2, 0.8)},
        {"zoom_range": (0.5, 1.5), "strength": 3.0},
        {"thickness_size": 0},
    ],
)
def test_bad_configs_are_refused(knobs):
    with pytest.raises(NpcnnError):
        AugmentConfig(**knobs)


# --------------------------------------------------------------------------------------------
# The batch generator
# --------------------------------------------------------------------------------------------


def numbered_digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images whose top-left pixel is their own index (mod 256), labels = index % 10."""
    x = np.zeros((n, 28, 28), np.uint8)
    x[:, 0, 0] = np.arange(n) % 256
    return x, np.arange(n) % 10


def test_batches_keep_labels_with_their_images_and_cover_the_epoch():
    x, y = numbered_digits(250)
    rng = np.random.default_rng(0)
    batches = list(augmented_batches(x, y, 64, rng, AugmentConfig.none(), prefetch=2))
    assert [len(yb) for _, yb in batches] == [64, 64, 64, 58]
    seen = []
    for xb, yb in batches:
        assert xb.dtype == np.float32 and xb.shape == (len(yb), 1, 28, 28)
        assert yb.dtype == np.int64
        index = np.rint(xb[:, 0, 0, 0] * 255).astype(int)
        np.testing.assert_array_equal(yb, index % 10)  # each label is its own image's label
        seen.extend(index)
    assert sorted(seen) == list(range(250))  # every example exactly once ...
    assert seen != list(range(250))  # ... shuffled


def test_without_shuffle_the_order_is_kept():
    x, y = numbered_digits(10)
    batches = augmented_batches(x, y, 4, np.random.default_rng(0), AugmentConfig.none(), False)
    labels = np.concatenate([yb for _, yb in batches])
    np.testing.assert_array_equal(labels, y)


def test_batches_are_reproducible_and_independent_of_the_thread():
    x = (blobs(100)[:, 0] * 255).astype(np.uint8)
    y = np.arange(100) % 10

    def epoch(seed: int, prefetch: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [xb for xb, _ in augmented_batches(x, y, 32, rng, prefetch=prefetch)]

    background, foreground = epoch(7, prefetch=3), epoch(7, prefetch=0)
    for a, b in zip(background, foreground, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(epoch(8, prefetch=2)[0], background[0])


def test_an_error_in_the_worker_reaches_the_caller(monkeypatch):
    calls = []

    def failing(images, rng, config):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom in batch 2")
        return images

    monkeypatch.setattr(augment, "augment_batch", failing)
    x, y = numbered_digits(100)
    batches = augmented_batches(x, y, 10, np.random.default_rng(0))
    next(batches)
    with pytest.raises(RuntimeError, match="boom in batch 2"):
        next(batches)


def test_leaving_early_stops_the_worker():
    x, y = numbered_digits(2000)
    before = threading.active_count()
    batches = augmented_batches(x, y, 10, np.random.default_rng(0), prefetch=2)
    next(batches)
    assert threading.active_count() == before + 1
    batches.close()
    assert threading.active_count() == before


@pytest.mark.parametrize(
    ("x", "y", "batch_size", "error"),
    [
        (np.zeros((4, 2, 28, 28)), np.zeros(4), 2, ImageError),
        (np.zeros((4, 28, 28)), np.zeros(3), 2, NpcnnError),
        (np.zeros((4, 28, 28)), np.zeros(4), 0, NpcnnError),
        (np.zeros((4, 28, 28)), np.zeros(4), 2.0, NpcnnError),
    ],
)
def test_bad_generator_arguments(x, y, batch_size, error):
    with pytest.raises(error):
        augmented_batches(x, y, batch_size, np.random.default_rng(0))


def test_augmenter_is_augment_batch_at_a_strength():
    assert augment.augmenter(0.0) is None and augment.augmenter(-1.0) is None
    images = blobs(16)
    transform = augment.augmenter(0.5)
    expected = augment_batch(images, np.random.default_rng(7), AugmentConfig(strength=0.5))
    np.testing.assert_array_equal(transform(images, np.random.default_rng(7)), expected)
    assert not np.array_equal(expected, images)
