"""Data augmentation for MNIST-like digits, with scipy.ndimage.

Each image gets, each with its own probability:

* a random **affine** change - rotation, zoom, shift, shear (and flips, off by default) - composed
  into one 2x2 matrix plus offset;
* a random **elastic distortion** (Simard, Steinkraus & Platt, 2003): a random displacement field,
  smoothed by a Gaussian and scaled, moves every pixel a little, like the wobble of a hand;
* a random **stroke-thickness change**: grey dilation (bolder pen) or erosion (finer pen).

Each resampling - the affine change, then the elastic wobble - reads the whole batch at once,
bilinearly (``kernels.sample_bilinear``, a kernel of both backends), so the thread preparing
batches leaves the maths threads nearly the whole machine.

``augment_batch(images, rng, config)`` transforms a batch; ``augmented_batches(x, y, ...)`` yields
shuffled, augmented mini-batches prepared in a background thread while the model trains.  Both are
reproducible: the same ``rng`` state gives the same images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from npcnn import kernels
from npcnn.batching import as_float_images, shuffled_batches
from npcnn.batching import prefetch as prefetch_batches
from npcnn.digits.errors import ImageError
from npcnn.errors import ConfigError, ShapeError


@dataclass(frozen=True)
class AugmentConfig:
    """Every knob of the augmentation.  ``*_p`` is the probability that an image gets that change.

    The defaults suit training a robust MNIST recogniser: digits people draw are tilted, scaled,
    off-centre, slanted, wobbly, thick or thin.

    ``strength`` scales all of it at once: the ranges (angle, zoom away from 1, shift, shear,
    elastic alpha) and the probabilities of the on/off changes (thickness, flips), capped at 1.
    ``strength=0`` (or ``AugmentConfig.none()``) leaves images unchanged.

    Flips are off by default, deliberately: a mirrored 2, 3, 4, 5, 7 or 9 is not that digit any
    more, and a 6 turned upside down reads as a 9, so flipping would teach the model wrong labels.
    """

    rotation_p: float = 0.8
    rotation_deg: float = 12.0  # angle ~ uniform(-deg, +deg); positive turns counter-clockwise
    zoom_p: float = 0.8
    zoom_range: tuple[float, float] = (0.85, 1.15)  # factor ~ uniform(low, high); > 1 enlarges
    shift_p: float = 0.8
    shift_px: float = 2.5  # each of (down, right) ~ uniform(-px, +px)
    shear_p: float = 0.5
    shear: float = 0.2  # horizontal shear factor ~ uniform(-shear, +shear): the slant of italics
    elastic_p: float = 0.3
    elastic_alpha: float = 20.0  # the scale of the displacement field, in pixels (Simard: 34)
    elastic_sigma: float = 4.0  # the Gaussian smoothing it, in pixels (larger: smoother wobble)
    thickness_p: float = 0.2  # then dilate or erode, 50:50
    thickness_size: int = 2  # the square footprint of the dilation/erosion, in pixels
    hflip_p: float = 0.0  # mirror left-right (see above for why it is off)
    vflip_p: float = 0.0  # mirror top-bottom
    strength: float = 1.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_p") and not 0.0 <= value <= 1.0:
                raise ConfigError(f"AugmentConfig.{field.name} must be in [0, 1], got {value}")
        for name in (
            "rotation_deg",
            "shift_px",
            "shear",
            "elastic_alpha",
            "elastic_sigma",
            "strength",
        ):
            if not getattr(self, name) >= 0:  # also catches NaN
                raise ConfigError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        low, high = self.zoom_range
        if not 0 < low <= high:
            raise ConfigError(f"AugmentConfig.zoom_range must be 0 < low <= high, got {low, high}")
        if not (isinstance(self.thickness_size, int) and self.thickness_size >= 1):
            raise ConfigError(
                f"AugmentConfig.thickness_size must be an int >= 1, got {self.thickness_size}"
            )
        if min(self.effective_zoom_range()) <= 0:
            raise ConfigError(
                f"strength {self.strength} stretches zoom_range {self.zoom_range} below zero"
            )

    @classmethod
    def none(cls) -> AugmentConfig:
        """A configuration that changes nothing."""
        return cls(strength=0.0)

    def effective_zoom_range(self) -> tuple[float, float]:
        """``zoom_range`` after ``strength``: its distance from 1 is scaled."""
        low, high = self.zoom_range
        return 1 + (low - 1) * self.strength, 1 + (high - 1) * self.strength


def _as_stack(images: np.ndarray) -> np.ndarray:
    """Check a batch - (N, 1, H, W) or (N, H, W), floating point - and return it as (N, H, W)."""
    if not isinstance(images, np.ndarray):
        raise ImageError(f"images must be a NumPy array, got {type(images).__name__}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ImageError(f"images must be floating point in [0, 1], got {images.dtype}")
    if images.ndim == 4 and images.shape[1] == 1:
        return images[:, 0]
    if images.ndim == 3:
        return images
    raise ImageError(f"images must be shaped (N, 1, H, W) or (N, H, W), got {images.shape}")


def _affine_matrices(
    angle_rad: np.ndarray,
    zoom: np.ndarray,
    shear: np.ndarray,
    flip_h: np.ndarray,
    flip_v: np.ndarray,
) -> np.ndarray:
    """The forward 2x2 matrices A = Rotation @ Shear @ Zoom @ Flip, one per image, in (row, col)
    coordinates (row pointing down).  Shape (N, 2, 2).

    Rotation by a (counter-clockwise on screen):  [[cos a, -sin a], [sin a, cos a]]
    Shear by k (column moves by k * row):         [[1, 0], [k, 1]]
    Zoom by z:                                    [[z, 0], [0, z]]
    Flip:                                         [[fv, 0], [0, fh]],  fv, fh = -1 if flipped else 1
    """
    n = len(angle_rad)
    cos, sin = np.cos(angle_rad), np.sin(angle_rad)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    shearing = np.tile(np.eye(2), (n, 1, 1))
    shearing[:, 1, 0] = shear
    zooming = zoom[:, None, None] * np.eye(2)
    flipping = np.zeros((n, 2, 2))
    flipping[:, 0, 0] = np.where(flip_v, -1.0, 1.0)
    flipping[:, 1, 1] = np.where(flip_h, -1.0, 1.0)
    return rotation @ shearing @ zooming @ flipping


def _gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """The matrix S with  S @ v == scipy.ndimage.gaussian_filter1d(v, sigma)  for a length-``size``
    vector (its default 'reflect' edges): the filter is linear, so filtering the identity's
    columns gives it.  Smoothing a field F along both axes is then  S @ F @ S.T  - two small
    matrix products instead of a filter pass per image."""
    return ndimage.gaussian_filter1d(np.eye(size), sigma, axis=0)


def _elastic_displacements(
    count: int, height: int, width: int, rng: np.random.Generator, alpha: float, sigma: float
) -> np.ndarray:
    """Elastic distortion fields (Simard et al. 2003), shaped (count, 2, H, W): for each image two
    fields of uniform(-1, 1) noise (row and column displacement), smoothed by a Gaussian of
    standard deviation ``sigma`` (neighbouring pixels move together) and scaled by ``alpha``."""
    noise = rng.uniform(-1.0, 1.0, size=(count, 2, height, width))
    return alpha * (_gaussian_matrix(height, sigma) @ noise @ _gaussian_matrix(width, sigma).T)


def _affine_source_points(
    forward: np.ndarray, shift: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel of the affine change reads its input: rows and cols, (N, H, W).

    The change moves input point p to  o = A (p - c) + c + shift  (c the image centre), so output
    pixel o reads the input at  p = A^-1 (o - c - shift) + c.
    """
    centre = (np.array([height, width], dtype=np.float64) - 1) / 2
    grid = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij"))  # (2, H, W)
    q = grid.reshape(1, 2, height * width) - (centre + shift)[:, :, None]  # (N, 2, H*W)
    points = (np.linalg.inv(forward) @ q + centre[None, :, None]).reshape(-1, 2, height, width)
    return points[:, 0], points[:, 1]


def augment_batch(
    images: np.ndarray, rng: np.random.Generator, config: AugmentConfig | None = None
) -> np.ndarray:
    """Return a randomly augmented copy of ``images``: same shape, same dtype, values in [0, 1].

    ``images``: floating point, (N, 1, H, W) or (N, H, W), in [0, 1] (white digit on black).
    ``rng``: all randomness comes from it, in a fixed order, so the same state gives the same
    output.  ``config``: the knobs (default ``AugmentConfig()``).  The input is not modified.

    Steps per image: stroke thickness (the pen), then one affine resampling (the hand's tilt, size,
    position and slant), then the elastic wobble.
    """
    config = AugmentConfig() if config is None else config
    stack = _as_stack(images)
    n = len(stack)
    out = stack.astype(np.float32)  # a float32 copy to work on: (N, H, W)
    s = config.strength

    # 1. Draw every random number up front, whatever is used, so the pattern of draws - and hence
    #    the result - depends only on the rng state, N and the config.
    coins = rng.random((n, 8))  # who gets: rotate zoom shift shear elastic thickness hflip vflip
    angle_deg = rng.uniform(-1.0, 1.0, n) * config.rotation_deg * s
    zoom = rng.uniform(*config.effective_zoom_range(), size=n)
    shift = rng.uniform(-1.0, 1.0, (n, 2)) * config.shift_px * s
    shear = rng.uniform(-1.0, 1.0, n) * config.shear * s
    thicken = rng.random(n) < 0.5  # dilate (True) or erode (False)

    rotate = coins[:, 0] < config.rotation_p
    angle_rad = np.where(rotate, np.deg2rad(angle_deg), 0.0)
    zoom = np.where(coins[:, 1] < config.zoom_p, zoom, 1.0)
    shift = np.where((coins[:, 2] < config.shift_p)[:, None], shift, 0.0)
    shear = np.where(coins[:, 3] < config.shear_p, shear, 0.0)
    elastic = (coins[:, 4] < config.elastic_p) & (config.elastic_alpha * s > 0)
    thick = coins[:, 5] < min(1.0, config.thickness_p * s)
    flip_h = coins[:, 6] < min(1.0, config.hflip_p * s)
    flip_v = coins[:, 7] < min(1.0, config.vflip_p * s)

    # 2. Stroke thickness, batched: one dilation and one erosion call for the chosen images.
    footprint = (1, config.thickness_size, config.thickness_size)  # (image, row, col)
    dilate, erode = thick & thicken, thick & ~thicken
    if dilate.any():
        out[dilate] = ndimage.grey_dilation(out[dilate], size=footprint)
    if erode.any():
        out[erode] = ndimage.grey_erosion(out[erode], size=footprint)

    # 3. The affine change: one bilinear resampling of the whole batch (an image without one reads
    #    its own pixels at whole-number points: unchanged).
    forward = _affine_matrices(angle_rad, zoom, shear, flip_h, flip_v)
    height, width = out.shape[1:]
    out = kernels.sample_bilinear(out, *_affine_source_points(forward, shift, height, width))

    # 4. The elastic wobble of the chosen images: output pixel o reads the affine result at o + d(o).
    if elastic.any():
        d = _elastic_displacements(
            int(elastic.sum()), height, width, rng, config.elastic_alpha * s, config.elastic_sigma
        )
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        out[elastic] = kernels.sample_bilinear(out[elastic], rows + d[:, 0], cols + d[:, 1])

    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(images.dtype, copy=False).reshape(images.shape)


def _float_batch(images: np.ndarray) -> np.ndarray:
    """uint8 (0..255) or float (0..1) images, (B, H, W) or (B, 1, H, W) -> float32 (B, 1, H, W)."""
    images = as_float_images(images)
    return images if images.ndim == 4 else images[:, None]


def augmented_batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    config: AugmentConfig | None = None,
    shuffle: bool = True,
    prefetch: int = 2,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of augmented mini-batches ``(xb, yb)``: xb float32 (B, 1, H, W) in [0, 1], yb the
    matching labels as int64.  The last batch may be smaller.

    ``x``: uint8 (0..255) or float (0..1) images, (N, H, W) or (N, 1, H, W); ``y``: (N,) labels.
    With ``prefetch > 0`` a background thread prepares up to ``prefetch`` batches ahead while the
    caller trains on the current one (scipy.ndimage and NumPy release the GIL in their C loops).

    Reproducible whatever the thread timing: the shuffle order and one seed per batch are drawn
    from ``rng`` here, in the caller's thread (see ``npcnn.batching``).
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[1] != 1):
        raise ImageError(f"x must be shaped (N, H, W) or (N, 1, H, W), got {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ShapeError(f"y must be shaped ({len(x)},) to match x, got {y.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ConfigError(f"batch_size must be an integer, got {batch_size!r}")
    if batch_size < 1 or prefetch < 0:
        raise ConfigError(f"need batch_size >= 1 and prefetch >= 0, got {batch_size}, {prefetch}")
    config = AugmentConfig() if config is None else config

    def transform(batch: np.ndarray, batch_rng: np.random.Generator) -> np.ndarray:
        return augment_batch(_float_batch(batch), batch_rng, config)

    batches = shuffled_batches(x, y.astype(np.int64), batch_size, rng, shuffle, transform)
    return batches if prefetch == 0 else prefetch_batches(batches, depth=prefetch)


def augmenter(
    strength: float = 1.0,
) -> Callable[[np.ndarray, np.random.Generator], np.ndarray] | None:
    """``fit``'s ``augment``: ``augment_batch`` with ``AugmentConfig(strength=strength)`` applied
    to each training batch; ``None`` (no augmentation) when ``strength <= 0``."""
    if strength <= 0:
        return None
    config = AugmentConfig(strength=strength)

    def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return augment_batch(batch, rng, config)

    return augment
