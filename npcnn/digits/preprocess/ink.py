"""Steps 1-4 of preprocessing: a picture (``WorkingImage``) -> clean, bright ink on black.

1. **Flatten alpha** (``flatten_alpha``).  Transparent pixels are background.  When the opaque
   pixels are few they are the ink (strokes on a transparent canvas): composite onto white if
   that ink is dark, onto black if it is light.  When most pixels are opaque they hold the
   background (a page with transparent margins): composite onto their median colour, so the
   margins vanish into it.
2. **Grayscale** (``to_grayscale``).  Project each colour onto the colour axis along which
   neighbouring pixels differ most (where the strokes' edges are), oriented so that brighter
   stays brighter.  Black on white gives ordinary brightness; blue ink on yellow paper - or red
   on green of equal brightness - still gives strong contrast, which a plain luminance formula
   would lose for the latter; and a colour cast across a photo does not distract it.
3. **Background and polarity** (``fit_background``, ``make_ink_bright``).  A noisy picture is
   blurred a little first.  Fit a smooth surface ``b(x, y) = c0 + c1 x + c2 y + c3 x^2 + c4 xy
   + c5 y^2`` to the background by robust least squares: start flat at the median of the border
   (mostly paper, even where ink touches an edge), then refit on the pixels within ``3 sigma``
   of the surface, a few times (sigma, the noise level, comes from the median absolute
   deviation).  If that ends with a sigma far above the pixel noise (a big digit on a steep
   background, swallowed by the surface), fit again from a plane that follows the slope.  The ink
   is what sticks out of that surface; whether it is darker or lighter than the paper is
   decided by which side sticks out more (the total residual beyond the noise band).  Ink made
   bright: ``ink = max(+-(g - b), 0)``.  This removes lighting gradients and vignetting of
   photos, and any paper colour.
4. **Clean** (``rescale_ink``, ``remove_specks``).  Rescale robustly: ``high`` = the 90th
   percentile of the clear ink pixels (stroke cores), ``low`` = max(4 sigma, 0.2 high);
   ``(ink - low) / (high - low)`` clipped to [0, 1], so noise, texture and faint smudges go to 0
   and stroke cores to 1, keeping the grey edges.  On a ruled page (a notebook), take the
   page's lines out and keep the strokes across them (``ruling.remove_ruled_lines``: step 4b,
   its own module).  Drop specks: connected pieces of ink with
   under 2% of the largest piece's ink.  (For a single digit ``keep_main_ink`` also drops small
   marks lying far from the main stroke.)  Too faint, too little or no ink at all ->
   ``NoInkError``, never a guess.

``find_ink`` runs the four steps; the result (``InkImage``) goes on to the framing of one digit
(``framing.to_mnist``) or to the segmentation of a number (``segment.segment_digits``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from npcnn.digits.errors import NoInkError
from npcnn.digits.preprocess.decode import load_image
from npcnn.digits.preprocess.ruling import remove_ruled_lines

MIN_CONTRAST = 0.08  # ink must differ from the paper by 8% of the black-white range
MIN_INK_MASS = 4.0  # ... and add up to at least 4 fully inked pixels
SPECK_FRACTION = 0.02  # pieces with less ink than 2% of the largest piece are specks
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 brightness weights
EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)  # connectivity for connected components
SWALLOWED_NOISE_RATIO = 3.0  # a background fit whose sigma is over 3x the pixel noise is retried


def flatten_alpha(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Step 1: composite premultiplied ``colour`` onto a background that makes the ink stand out.

    Few opaque pixels (under half) are ink on a transparent canvas: composite onto white when
    their alpha-weighted brightness is below 1/2, else onto black.  Many opaque pixels hold the
    background: composite onto their median colour.  ``out = colour + (1 - alpha) * background``.
    """
    if alpha is None:
        return colour
    opaque = alpha > 0.5
    if opaque.mean() >= 0.5:
        step = max(1, int(opaque.sum()) // 20000)  # a sample is plenty for a median
        unmultiplied = colour[opaque][::step] / (
            alpha[opaque][::step] if colour.ndim == 2 else alpha[opaque][::step, None]
        )
        background = np.median(unmultiplied, axis=0)
    else:
        brightness = colour if colour.ndim == 2 else _mix_channels(colour, LUMA)
        ink_brightness = brightness.sum() / max(float(alpha.sum()), 1e-6)
        background = 1.0 if ink_brightness < 0.5 else 0.0
    weight = 1.0 - alpha if colour.ndim == 2 else (1.0 - alpha)[..., None]
    return (colour + weight * background).astype(np.float32)


def _mix_channels(colour: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_c weights[c] * colour[..., c]`` for an (H, W, 3) image, as plain element-wise
    arithmetic: a matrix product would call multi-threaded BLAS, which costs milliseconds of
    thread hand-off on a busy machine for work that takes microseconds."""
    w0, w1, w2 = (float(w) for w in weights)
    return colour[..., 0] * w0 + colour[..., 1] * w1 + colour[..., 2] * w2


def _colour_spread(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The eigenvalues (ascending) and eigenvectors of ``mean(d d^T)`` over the colour differences
    ``d`` between horizontal neighbours of ``rows`` (H, W, 3)."""
    rows = rows.astype(np.float64)
    differences = (rows[:, 1:] - rows[:, :-1]).reshape(-1, 3)
    spread = np.einsum("ni,nj->ij", differences, differences) / max(len(differences), 1)
    return np.linalg.eigh(spread)


def to_grayscale(colour: np.ndarray) -> np.ndarray:
    """Step 2: (H, W, 3) RGB -> (H, W) float32 in [0, 1]; grey (H, W) is returned as it is.

    Project onto the colour axis ``a`` along which neighbouring pixels differ most: the top
    eigenvector of the 3x3 matrix ``mean(d d^T)`` of the colour differences ``d`` between
    horizontal neighbours.  Stroke edges dominate those differences; a smooth lighting gradient
    (even a colour cast going from blue to orange) hardly does, and noise spreads over all axes.
    ``a`` is signed so that ``a . LUMA >= 0``, and the possible range [sum of the negative
    a_i, sum of the positive a_i] is mapped linearly onto [0, 1].  (A grey picture stored as
    RGB gives its grey.)
    """
    if colour.ndim == 2:
        return colour.astype(np.float32, copy=False)
    if np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(
        colour[..., 1], colour[..., 2]
    ):
        return np.ascontiguousarray(colour[..., 0])  # a grey picture stored as RGB
    step = max(1, colour.shape[0] // 128)  # about 128 rows are enough to see the strokes' edges
    variances, vectors = _colour_spread(colour[::step])
    if variances[-1] <= 1e-12 and step > 1:  # ... unless a mark lies between them (a thin dash)
        variances, vectors = _colour_spread(colour)
    axis = vectors[:, -1] if variances[-1] > 1e-12 else LUMA.astype(np.float64)
    if axis @ LUMA < 0:
        axis = -axis
    low, high = axis[axis < 0].sum(), axis[axis > 0].sum()
    return ((_mix_channels(colour, axis) - low) / (high - low)).astype(np.float32)


def estimate_noise(gray: np.ndarray) -> float:
    """The standard deviation of pixel noise, from neighbouring-pixel differences.

    For independent noise of std ``s``, a difference of neighbours has std ``s * sqrt(2)``; the
    median absolute difference (times 1.4826) estimates that and ignores the few stroke edges.
    """
    if gray.shape[1] < 2:
        return 0.0
    differences = np.abs(np.diff(gray[:: max(1, gray.shape[0] // 256)], axis=1))
    return float(1.4826 * np.median(differences) / math.sqrt(2.0))


def _unit_coordinates(count: int) -> np.ndarray:
    """Positions 0 .. count - 1 scaled to [-1, 1] (keeps the surface fit well conditioned)."""
    return np.arange(count) / max(count - 1, 1) * 2.0 - 1.0


def _robust_surface(
    samples: np.ndarray,
    design: np.ndarray,
    coefficients: np.ndarray,
    trusted: np.ndarray,
    rounds: int,
) -> tuple[np.ndarray, float]:
    """Rounds of the robust fit from ``coefficients`` (6,), trusting ``trusted`` (n,) at first.

    Each round: ``sigma`` = 1.4826 * the median absolute deviation of the residuals of the samples
    trusted so far; trust the samples within ``max(3 sigma, 2/255)`` of the surface; refit the
    surface to them by least squares, solving the normal equations ``(A^T A) c = A^T g``.
    ``samples`` (n,) and ``design`` (n, 6) are the grey levels and the rows of ``A``.
    """
    for round_ in range(rounds + 1):
        residual = samples - np.einsum("ni,i->n", design, coefficients)
        kept = residual[trusted]
        sigma = float(1.4826 * np.median(np.abs(kept - np.median(kept))))
        trusted = np.abs(residual) < max(3.0 * sigma, 2.0 / 255.0)
        if round_ == rounds or trusted.sum() < 6:
            break
        if not residual[trusted].any():  # a perfectly even background (a canvas): already fitted
            break
        fit_rows = design[trusted]
        # (6, 6) normal matrix; the tiny ridge keeps a 1-pixel-wide image solvable
        normal = np.einsum("ni,nj->ij", fit_rows, fit_rows) + 1e-9 * np.eye(6)
        coefficients = np.linalg.solve(normal, np.einsum("ni,n->i", fit_rows, samples[trusted]))
    return coefficients, sigma


def _slope_plane(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The plane ``c0 + c1 x + c2 y`` (as 6 surface coefficients) whose slopes are the median
    differences between neighbouring samples of ``grid`` (H, W), at positions ``x``, ``y`` (H, W).

    Along a row, paper next to paper differs by the background's slope, ink next to ink by about
    0, and the two sides of a stroke by + and - its contrast; while most neighbours are paper,
    the median is close to the slope, whatever the digit.  ``c0`` makes the median residual 0.
    """
    c1 = float(np.median(np.diff(grid, axis=1)) / (x[0, 1] - x[0, 0])) if grid.shape[1] > 1 else 0.0
    c2 = float(np.median(np.diff(grid, axis=0)) / (y[1, 0] - y[0, 0])) if grid.shape[0] > 1 else 0.0
    return np.array([float(np.median(grid - c1 * x - c2 * y)), c1, c2, 0.0, 0.0, 0.0])


def _closest_half_fit(
    samples: np.ndarray, design: np.ndarray, coefficients: np.ndarray, rounds: int
) -> tuple[np.ndarray, np.ndarray]:
    """Least trimmed squares: each round, refit the surface to the half of the samples closest to
    it (a "concentration step": the kept half's sum of squares never grows).  While the paper is
    more than half of the picture and the start is near it, the closest half is paper, and stays
    paper.  Returns the coefficients and the kept half, as a mask (n,)."""
    half = max(1, len(samples) // 2)
    for _ in range(rounds):
        distance = np.abs(samples - np.einsum("ni,i->n", design, coefficients))
        rows = np.argpartition(distance, half - 1)[:half]
        normal = np.einsum("ni,nj->ij", design[rows], design[rows]) + 1e-9 * np.eye(6)
        coefficients = np.linalg.solve(normal, np.einsum("ni,n->i", design[rows], samples[rows]))
    distance = np.abs(samples - np.einsum("ni,i->n", design, coefficients))
    return coefficients, distance <= np.partition(distance, half - 1)[half - 1]


def fit_background(gray: np.ndarray, rounds: int = 4) -> tuple[np.ndarray, float]:
    """Step 3a: robustly fit a quadratic surface to the background; return it and the noise sigma.

    Works on a grid of about 48x48 samples.  Start flat, at the median of the samples along the
    border (mostly paper, even when the ink touches an edge).  Then, each round
    (``_robust_surface``): ``sigma`` = 1.4826 * the median absolute deviation of the residuals
    of the samples trusted so far (at first, the border); trust the samples within
    ``max(3 sigma, 2/255)`` of the surface; refit the surface ``b = c0 + c1 x + c2 y + c3 x^2 +
    c4 xy + c5 y^2`` (x, y scaled to [-1, 1]) to them by least squares.

    A steep background (a colour gradient, strong shading) under a big, thick digit (ink on a
    fifth of the picture or more) can trap that: measured against the flat start, the border's
    own slope looks like noise, ``3 sigma`` then trusts every sample, the surface bends to follow
    the digit, and the residuals stay wide - a fixed point in which the digit *is* background,
    and the picture looks blank.  That shows as a ``sigma`` far above the pixel noise
    (``estimate_noise``: it reads neighbouring pixels, which a slope hardly changes).  Then the
    fit starts again from a plane that already follows the slope (``_slope_plane``), fitted to
    the half of the samples closest to it (``_closest_half_fit``: the paper), then refined by the
    same rounds; the fit with the smaller ``sigma``, the one that explains the paper better, is
    kept.  Other pictures never get there, so their background is the first fit's, exactly.
    """
    height, width = gray.shape
    step = max(1, int(math.sqrt(height * width / 2304)))
    grid = gray[::step, ::step].astype(np.float64)
    y = _unit_coordinates(height)[::step, None] * np.ones((1, grid.shape[1]))
    x = _unit_coordinates(width)[None, ::step] * np.ones((grid.shape[0], 1))
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).reshape(-1, 6)
    frame = max(1, round(0.03 * min(grid.shape)))
    border = np.zeros(grid.shape, dtype=bool)
    border[:frame], border[-frame:], border[:, :frame], border[:, -frame:] = True, True, True, True
    samples, border = grid.ravel(), border.ravel()
    flat = np.array([np.median(samples[border]), 0.0, 0.0, 0.0, 0.0, 0.0])
    coefficients, sigma = _robust_surface(samples, design, flat, border, rounds)
    limit = SWALLOWED_NOISE_RATIO * 2.0 / 255.0  # the noise is measured only when sigma exceeds it
    if sigma > limit and sigma > SWALLOWED_NOISE_RATIO * estimate_noise(gray):
        start, paper = _closest_half_fit(samples, design, _slope_plane(grid, x, y), rounds)
        retried, retried_sigma = _robust_surface(samples, design, start, paper, rounds)
        if retried_sigma < sigma:
            coefficients, sigma = retried, retried_sigma
    c0, c1, c2, c3, c4, c5 = coefficients
    x, y = _unit_coordinates(width), _unit_coordinates(height)[:, None]
    # the surface at every pixel, grouped as (terms in y) + (terms in x) + (the xy term)
    background = (c0 + c2 * y + c5 * y * y) + (c1 * x + c3 * x * x) + c4 * (y * x)
    return background.astype(np.float32), sigma


def make_ink_bright(gray: np.ndarray, background: np.ndarray, sigma: float) -> np.ndarray:
    """Step 3b: decide the polarity and return the ink as bright on black: ``max(+-(g - b), 0)``.

    Dark ink on light paper when the residual mass below the noise band (``g - b < -t``) is at
    least the mass above it, where ``t = max(4 sigma, MIN_CONTRAST / 2)``; light ink otherwise.
    """
    residual = gray - background
    threshold = max(4.0 * sigma, MIN_CONTRAST / 2)
    dark = float(np.maximum(-residual - threshold, 0.0).sum())
    light = float(np.maximum(residual - threshold, 0.0).sum())
    if dark == 0.0 and light == 0.0:
        raise NoInkError("nothing to recognise: the image is blank or a single colour")
    return np.maximum(-residual if dark >= light else residual, 0.0).astype(np.float32)


def rescale_ink(ink: np.ndarray, sigma: float) -> np.ndarray:
    """Step 4a: stroke cores -> 1, noise and faint smudges -> 0, grey edges kept in between.

    ``high`` = 90th percentile of the pixels above ``max(4 sigma, MIN_CONTRAST / 2)``,
    ``low`` = ``max(4 sigma, 0.2 high)``; returns ``clip((ink - low) / (high - low), 0, 1)``.
    """
    clear = ink[ink > max(4.0 * sigma, MIN_CONTRAST / 2)]
    if clear.size == 0:
        raise NoInkError("nothing to recognise: no ink stands out of the noise")
    high = float(np.percentile(clear, 90))
    if high < MIN_CONTRAST:
        raise NoInkError("nothing to recognise: the marks are too faint")
    low = max(4.0 * sigma, 0.2 * high)
    return np.clip((ink - low) / (high - low), 0.0, 1.0).astype(np.float32)


def piece_masses(ink: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """The ink (sum of values) of each of the ``count`` labelled pieces, float64, in label order.

    ``np.bincount`` over the inked pixels only: the same sums as ``ndimage.sum_labels``, about
    three times faster, since most of a picture is background (label 0).
    """
    flat = labels.ravel()
    inside = np.flatnonzero(flat)
    sums = np.bincount(flat[inside], weights=ink.ravel()[inside], minlength=count + 1)
    return sums[1:]


def remove_specks(ink: np.ndarray, fraction: float = SPECK_FRACTION) -> np.ndarray:
    """Step 4c: zero the connected pieces (8-neighbour) whose ink (sum of values) is below
    ``fraction`` of the largest piece's, or below one pixel's worth.  Too little ink in all
    -> ``NoInkError``."""
    labels, count = ndimage.label(ink > 0, structure=EIGHT_NEIGHBOURS)
    if count == 0:
        raise NoInkError("nothing to recognise: no ink found")
    mass = piece_masses(ink, labels, count)
    if mass.max() < MIN_INK_MASS:
        raise NoInkError("nothing to recognise: only specks, no strokes")
    keep = np.concatenate([[False], mass >= max(fraction * mass.max(), 1.0)])
    return np.where(keep[labels], ink, 0.0).astype(np.float32)


@dataclass
class InkImage:
    """Clean ink (float32 (H, W) in [0, 1], white on black) at working resolution, with the
    ``scale`` (input pixels per working pixel) and the ``input_size`` (width, height)."""

    pixels: np.ndarray
    scale: int
    input_size: tuple[int, int]


def find_ink(image: Image.Image | np.ndarray) -> InkImage:
    """Steps 1-4: any picture -> clean bright ink on black, at working resolution."""
    working = load_image(image)
    gray = to_grayscale(flatten_alpha(working.colour, working.alpha))
    if estimate_noise(gray) > 0.01:  # noisy (a photo): smooth a little before measuring
        gray = ndimage.gaussian_filter(gray, 1.0)
    background, sigma = fit_background(gray)
    ink = rescale_ink(make_ink_bright(gray, background, sigma), sigma)
    return InkImage(remove_specks(remove_ruled_lines(ink)), working.scale, working.input_size)


def keep_main_ink(ink: np.ndarray) -> np.ndarray:
    """For a single digit: also drop small marks (under 25% of the largest piece's ink) lying
    further from the largest piece's bounding box than half that box's longer side."""
    labels, count = ndimage.label(ink > 0, structure=EIGHT_NEIGHBOURS)
    if count <= 1:
        return ink
    mass = piece_masses(ink, labels, count)
    boxes = ndimage.find_objects(labels)
    main = boxes[int(np.argmax(mass))]
    reach = 0.5 * max(main[0].stop - main[0].start, main[1].stop - main[1].start)
    keep = [True]
    for piece_mass, box in zip(mass, boxes, strict=True):
        gap_y = max(main[0].start - box[0].stop, box[0].start - main[0].stop, 0)
        gap_x = max(main[1].start - box[1].stop, box[1].start - main[1].stop, 0)
        keep.append(piece_mass >= 0.25 * mass.max() or max(gap_x, gap_y) <= reach)
    keep[0] = False
    return np.where(np.array(keep)[labels], ink, 0.0).astype(np.float32)
