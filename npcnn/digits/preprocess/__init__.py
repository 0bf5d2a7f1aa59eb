"""Any picture of a digit -> what MNIST looks like: a float32 (28, 28) image, white digit on black.

A model trained on MNIST has only ever seen digits prepared one particular way: white ink on
black, the digit scaled so its longer side is 20 pixels, anti-aliased, and placed in a 28x28 frame
so that its centre of mass sits at the centre.  A drawing from a canvas or a photo of paper looks
nothing like that, so ``to_mnist`` rebuilds exactly that look from any picture, step by step:

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
   deviation).  The ink is what sticks out of that surface; whether it is darker or lighter
   than the paper is decided by which side sticks out more (the total residual beyond the noise
   band).  Ink made bright: ``ink = max(+-(g - b), 0)``.  This removes lighting gradients and
   vignetting of photos, and any paper colour.
4. **Clean** (``rescale_ink``, ``remove_specks``).  Rescale robustly: ``high`` = the 90th
   percentile of the clear ink pixels (stroke cores), ``low`` = max(4 sigma, 0.2 high);
   ``(ink - low) / (high - low)`` clipped to [0, 1], so noise, texture and faint smudges go to 0
   and stroke cores to 1, keeping the grey edges.  Drop specks: connected pieces of ink with
   under 2% of the largest piece's ink.  (``to_mnist`` also drops small marks lying far from the
   main stroke: ``keep_main_ink``.)  Too faint, too little or no ink at all -> ``NoInkError``,
   never a guess.
5. **Crop** (``crop_to_ink``) to the bounding box of what is left.
6. **Normalise the stroke width** (``normalise_stroke``) when it is outside MNIST's usual range
   (MNIST's median is 2.55 px at the 20 px scale): measure it as ``2 * ink area / outline
   length`` (the outline length is the image's total variation, by the co-area formula) at a
   resolution where strokes are several pixels wide.  Within 1.4x of the median it is left
   alone; further off, the goal slides to the median itself (reached at 2.1x off), so a 1 px pen
   and a fat marker both come out like MNIST.  The outline moves in or out using the signed
   Euclidean distance to it: a dilation / erosion by a fraction of a pixel if need be, which
   never erases a piece.
7. **Scale and centre** (``place_in_frame``) in one resampling: the longer side becomes 20 px
   and the centre of mass lands on pixel (14, 14) of the 28x28 frame (where MNIST's digits have
   theirs, on average), to a fraction of a pixel.  Each output pixel is the exact mean of the
   input area it covers: anti-aliased, like MNIST's digits.
8. **Renormalise** so the brightest pixel is 1.

Big pictures are reduced early (box averaging to about 512x512 pixels) so that a 4000x4000 photo
costs little more than a canvas drawing.  ``segment_digits`` runs steps 1-4 on a whole number,
cuts it into digits and runs steps 5-8 on each; ``decode_image`` turns untrusted bytes into a
Pillow image safely.  Every step is a small public function, so you can watch what happens.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from npcnn.digits.errors import ImageError, NoInkError

__all__ = [
    "DigitCrop",
    "InkImage",
    "WorkingImage",
    "center_of_mass",
    "crop_to_ink",
    "decode_image",
    "estimate_noise",
    "find_ink",
    "fit_background",
    "flatten_alpha",
    "keep_main_ink",
    "load_image",
    "make_ink_bright",
    "normalise_stroke",
    "place_in_frame",
    "remove_specks",
    "rescale_ink",
    "segment_digits",
    "stroke_goal",
    "stroke_width",
    "to_grayscale",
    "to_mnist",
]

MNIST_SIZE = 28  # the frame
MNIST_BOX = 20  # the digit's longer side
MNIST_CENTRE = 14.0  # row and column of the centre of mass in the frame
MNIST_STROKE_WIDTH = 2.55  # median stroke width of MNIST training digits (px, 20 px scale)
STROKE_TOLERANCE = 1.4  # widths within [w / 1.4, w * 1.4] (~MNIST's 4th-92nd pct) are kept
STROKE_RAMP = (
    0.4  # beyond, the goal slides to the median, reached at 2.1x off (ln 2.1 = ln 1.4 + 0.4)
)
ANALYSIS_SIDE = 80  # strokes are measured and adjusted at this resolution (or finer)
WORK_PIXELS = 512 * 512  # bigger pictures are reduced to about this many pixels first
MIN_CONTRAST = 0.08  # ink must differ from the paper by 8% of the black-white range
MIN_INK_MASS = 4.0  # ... and add up to at least 4 fully inked pixels
SPECK_FRACTION = 0.02  # pieces with less ink than 2% of the largest piece are specks
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 brightness weights
EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)  # connectivity for connected components
DECODABLE_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "WEBP", "TIFF", "PPM", "TGA", "ICO")


# ----------------------------------------------------------------------------------------------
# Reading pictures: PIL images of any mode and NumPy arrays of any dtype -> float arrays.
# ----------------------------------------------------------------------------------------------


@dataclass
class WorkingImage:
    """A picture as float arrays at working resolution.

    ``colour``: (H, W) grey or (H, W, 3) RGB, float32 in [0, 1], *premultiplied* by ``alpha``.
    ``alpha``: (H, W) float32 in [0, 1], or None when the picture has no transparency.
    ``scale``: input pixels per working pixel (1 unless the picture was reduced).
    ``input_size``: (width, height) of the picture as given.
    """

    colour: np.ndarray
    alpha: np.ndarray | None
    scale: int
    input_size: tuple[int, int]


def _reduction_factor(width: int, height: int, max_pixels: int) -> int:
    """The integer factor that brings width x height down to at most about ``max_pixels``."""
    return max(1, math.ceil(math.sqrt(width * height / max_pixels)))


def _block_mean(array: np.ndarray, factor: int, pad_mode: str = "edge") -> np.ndarray:
    """Average ``factor x factor`` blocks; the array is first padded to whole blocks (``"edge"``:
    by repeating its last row and column, ``"constant"``: with zeros)."""
    pad_h, pad_w = -array.shape[0] % factor, -array.shape[1] % factor
    if pad_h or pad_w:
        extra = ((0, 0),) * (array.ndim - 2)
        array = np.pad(array, ((0, pad_h), (0, pad_w), *extra), mode=pad_mode)
    h, w = array.shape[0] // factor, array.shape[1] // factor
    blocks = array.reshape(h, factor, w, factor, *array.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def _split_channels(pixels: np.ndarray, scale: int, size: tuple[int, int]) -> WorkingImage:
    """(H, W) or (H, W, C) float32 in [0, 1], C in 1..4 -> WorkingImage (alpha premultiplied)."""
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        alpha = np.ascontiguousarray(pixels[..., -1])
        colour = pixels[..., 0] if pixels.shape[2] == 2 else pixels[..., :3]
        if alpha.min() >= 0.999:
            return WorkingImage(np.ascontiguousarray(colour), None, scale, size)
        colour = colour * (alpha if colour.ndim == 2 else alpha[..., None])
        return WorkingImage(colour.astype(np.float32), alpha, scale, size)
    if pixels.ndim == 3:
        pixels = pixels[..., 0] if pixels.shape[2] == 1 else pixels
    return WorkingImage(np.ascontiguousarray(pixels, dtype=np.float32), None, scale, size)


def _array_to_unit_range(array: np.ndarray) -> np.ndarray:
    """Any real array -> float32 in [0, 1].

    bool is 0/1 and uint8 is divided by 255.  Other non-negative integers are divided by
    ``2^bits - 1`` for the smallest usual bit depth (8, 10, 12 or 16) that holds their largest
    value, so a 16-bit scan and an 8-bit image stored in 16 bits both come out right.  Floats
    are taken as they are when they lie in [0, 1] and divided by 255 when they lie in [0, 255].
    Anything else (negative values, bigger numbers) is stretched from its minimum to its maximum.
    """
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ImageError("the image contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low >= 0.0 and array.dtype.kind in "iu" and high <= 65535:
        depth = next(bits for bits in (8, 10, 12, 16) if high < 2**bits)
        return array.astype(np.float32) / np.float32(2**depth - 1)
    if low >= 0.0 and high <= 255.0:
        return array.astype(np.float32) / np.float32(1.0 if high <= 1.0 else 255.0)
    if high == low:
        return np.zeros(array.shape, dtype=np.float32)
    # halves first, so that even values near the float64 limit cannot overflow
    stretched = (array.astype(np.float64) / 2 - low / 2) / (high / 2 - low / 2)
    return stretched.astype(np.float32)


def _from_array(array: np.ndarray, max_pixels: int) -> WorkingImage:
    """A NumPy array (H, W), (H, W, 1), (H, W, 2) grey+alpha, (H, W, 3) RGB or (H, W, 4) RGBA."""
    if array.dtype.kind not in "biuf":
        raise ImageError(f"an image array must hold numbers, not dtype {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ImageError(f"an image array must be (H, W) or (H, W, 1..4), got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"the image has zero size {array.shape}")
    if array.dtype == np.uint8 and (array.ndim == 2 or array.shape[2] in (3, 4)):
        return _from_pil(Image.fromarray(np.ascontiguousarray(array)), max_pixels)
    size = (array.shape[1], array.shape[0])
    factor = _reduction_factor(*size, max_pixels)
    pixels = _array_to_unit_range(array)
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4) and factor > 1:
        pixels = pixels.copy()  # average premultiplied colour, so transparent colour cannot bleed
        pixels[..., :-1] *= pixels[..., -1:]
        pixels = _block_mean(pixels, factor)
        alpha = np.maximum(pixels[..., -1:], 1e-6)
        pixels[..., :-1] = np.where(pixels[..., -1:] > 0, pixels[..., :-1] / alpha, 0.0)
    elif factor > 1:
        pixels = _block_mean(pixels, factor)
    return _split_channels(pixels, factor, size)


def _from_pil(image: Image.Image, max_pixels: int) -> WorkingImage:
    """A Pillow image of any mode; reduced with ``Image.reduce`` (box averaging) when big."""
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"the image has zero size {width}x{height}")
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _from_array(np.asarray(image), max_pixels)  # 16/32-bit: keep the full range
    if mode == "1":
        image = image.convert("L")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif mode not in ("L", "RGB", "RGBA", "LA", "RGBa", "La"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX ...
    if image.mode in ("RGBA", "LA", "La"):
        image = image.convert("RGBA").convert("RGBa")  # premultiplied: averaging stays correct
    factor = _reduction_factor(width, height, max_pixels)
    if factor > 1:
        image = image.reduce(factor)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    if image.mode != "RGBa":
        return _split_channels(pixels, factor, (width, height))
    alpha = np.ascontiguousarray(pixels[..., 3])
    colour = np.ascontiguousarray(pixels[..., :3])  # already premultiplied
    return WorkingImage(colour, None if alpha.min() >= 0.999 else alpha, factor, (width, height))


def load_image(image: Image.Image | np.ndarray, max_pixels: int = WORK_PIXELS) -> WorkingImage:
    """Read a Pillow image (any mode) or a NumPy array (any real dtype) as float arrays, reducing
    it by an integer factor (box averaging) to at most about ``max_pixels`` pixels.

    Raises ``ImageError`` for zero size, a wrong shape, NaN, or an image Pillow cannot read.
    """
    if isinstance(image, np.ndarray):
        return _from_array(image, max_pixels)
    if isinstance(image, Image.Image):
        try:
            return _from_pil(image, max_pixels)
        except ImageError:
            raise
        except (OSError, ValueError, SyntaxError, EOFError) as error:  # e.g. a truncated file
            raise ImageError(f"cannot read the image: {error}") from error
    raise ImageError(f"expected a PIL image or a NumPy array, got {type(image).__name__}")


# ----------------------------------------------------------------------------------------------
# Steps 1-4: from colours to clean, bright ink on black.
# ----------------------------------------------------------------------------------------------


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
    rows = colour[:: max(1, colour.shape[0] // 128)].astype(np.float64)
    differences = (rows[:, 1:] - rows[:, :-1]).reshape(-1, 3)
    spread = np.einsum("ni,nj->ij", differences, differences) / max(len(differences), 1)
    variances, vectors = np.linalg.eigh(spread)  # (3,), (3, 3); eigenvalues ascending
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


def fit_background(gray: np.ndarray, rounds: int = 4) -> tuple[np.ndarray, float]:
    """Step 3a: robustly fit a quadratic surface to the background; return it and the noise sigma.

    Works on a grid of about 48x48 samples.  Start flat, at the median of the samples along the
    border (mostly paper, even when the ink touches an edge).  Then, each round: ``sigma`` =
    1.4826 * the median absolute deviation of the residuals of the samples trusted so far
    (at first, the border); trust the samples within ``max(3 sigma, 2/255)`` of the surface;
    refit the surface ``b = c0 + c1 x + c2 y + c3 x^2 + c4 xy + c5 y^2`` (x, y scaled to
    [-1, 1]) to them by least squares, solving the normal equations ``(A^T A) c = A^T g``.
    """
    height, width = gray.shape
    step = max(1, int(math.sqrt(height * width / 2304)))
    samples = gray[::step, ::step]
    y = _unit_coordinates(height)[::step, None] * np.ones((1, samples.shape[1]))
    x = _unit_coordinates(width)[None, ::step] * np.ones((samples.shape[0], 1))
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).reshape(-1, 6)
    frame = max(1, round(0.03 * min(samples.shape)))
    border = np.zeros(samples.shape, dtype=bool)
    border[:frame], border[-frame:], border[:, :frame], border[:, -frame:] = True, True, True, True
    samples, trusted = samples.ravel().astype(np.float64), border.ravel()
    coefficients = np.array([np.median(samples[trusted]), 0.0, 0.0, 0.0, 0.0, 0.0])
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


def remove_specks(ink: np.ndarray, fraction: float = SPECK_FRACTION) -> np.ndarray:
    """Step 4b: zero the connected pieces (8-neighbour) whose ink (sum of values) is below
    ``fraction`` of the largest piece's, or below one pixel's worth.  Too little ink in all
    -> ``NoInkError``."""
    labels, count = ndimage.label(ink > 0, structure=EIGHT_NEIGHBOURS)
    if count == 0:
        raise NoInkError("nothing to recognise: no ink found")
    mass = ndimage.sum_labels(ink, labels, index=np.arange(1, count + 1))
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
    return InkImage(remove_specks(ink), working.scale, working.input_size)


def keep_main_ink(ink: np.ndarray) -> np.ndarray:
    """For a single digit: also drop small marks (under 25% of the largest piece's ink) lying
    further from the largest piece's bounding box than half that box's longer side."""
    labels, count = ndimage.label(ink > 0, structure=EIGHT_NEIGHBOURS)
    if count <= 1:
        return ink
    mass = ndimage.sum_labels(ink, labels, index=np.arange(1, count + 1))
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


# ----------------------------------------------------------------------------------------------
# Steps 5-8: crop, stroke width, scale and centre.
# ----------------------------------------------------------------------------------------------


def crop_to_ink(ink: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Step 5: cut ``ink`` to the bounding box of its non-zero pixels.

    Returns the crop and its box ``(x0, y0, x1, y1)`` (x1, y1 exclusive, like Pillow's boxes).
    """
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise NoInkError("nothing to recognise: no ink found")
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return ink[y0:y1, x0:x1], (x0, y0, x1, y1)


def _resize(pixels: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize a float32 (H, W) array to ``size`` = (width, height) with Pillow's float mode."""
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    return np.asarray(image.resize(size, resample), dtype=np.float32)


def stroke_width(ink: np.ndarray) -> float:
    """The mean stroke width, in pixels: ``2 * area / outline length``.

    For a stroke of width w and length L, area = w L and outline = 2 L.  The outline length of a
    grey image is its total variation ``sum |grad ink|`` (co-area formula), computed with forward
    differences on a zero-padded copy, so the outer edges count too.  A slight blur first
    (Gaussian, sigma 1 px) keeps the staircase of aliased slanted edges from counting as extra
    outline (it would make a crisp diagonal stroke look 30% thinner); it preserves the area, and
    changes the outline of strokes wider than about 4 px very little.
    """
    smooth = ndimage.gaussian_filter(np.pad(ink.astype(np.float64), 3), 1.0)
    grad_x = np.diff(smooth, axis=1)[:-1, :]  # (H + 5, W + 5)
    grad_y = np.diff(smooth, axis=0)[:, :-1]  # (H + 5, W + 5)
    outline = float(np.hypot(grad_x, grad_y).sum())
    return 2.0 * float(smooth.sum()) / outline if outline > 0 else 0.0


def _same_pieces(before: np.ndarray, after: np.ndarray) -> bool:
    """True when two masks have the same number of 8-connected pieces (none erased or split)."""
    count_before = ndimage.label(before, structure=EIGHT_NEIGHBOURS)[1]
    return count_before == ndimage.label(after, structure=EIGHT_NEIGHBOURS)[1]


def stroke_goal(width: float, target: float = MNIST_STROKE_WIDTH) -> float:
    """The stroke width (20 px scale) to aim for, given the measured ``width``.

    In log terms, ``r = ln(width / target)``.  Within ``|r| <= A = ln(STROKE_TOLERANCE)`` (MNIST's
    usual range) the width is kept.  Beyond it the goal slides back from the edge of that range
    to ``target`` itself, reached at ``|r| = A + B`` (B = ``STROKE_RAMP``):
    ``r_goal = sign(r) * A * max(0, 1 - (|r| - A) / B)``.  So a drawing just outside the range
    moves only a little (no jump), and a far-off one (a 1 px pen, a fat marker) gets MNIST's
    median width - which also makes thin and thick drawings of a digit look alike.
    """
    r, edge = math.log(max(width, 1e-6) / target), math.log(STROKE_TOLERANCE)
    if abs(r) <= edge:
        return width
    return target * math.exp(math.copysign(edge * max(0.0, 1 - (abs(r) - edge) / STROKE_RAMP), r))


def _move_outline(signed: np.ndarray, grow: float) -> tuple[np.ndarray, float]:
    """The ink whose outline is moved out by ``grow`` px (in by ``-grow``), trimmed, and its
    stroke width at the 20 px scale; an empty array and width 0 if nothing is left."""
    moved = np.clip(signed + grow + 0.5, 0.0, 1.0).astype(np.float32)
    if not moved.any():
        return moved, 0.0
    moved = crop_to_ink(moved)[0]
    return moved, stroke_width(moved) * MNIST_BOX / max(moved.shape)


def normalise_stroke(crop: np.ndarray, target: float = MNIST_STROKE_WIDTH) -> np.ndarray:
    """Step 6: bring the stroke width towards MNIST's when it is outside MNIST's usual range.

    The width ``w`` is measured (on a copy enlarged to ``ANALYSIS_SIDE`` px when smaller) and
    scaled to the 20 px box; ``stroke_goal`` says what it should be.  If it must change (on a
    copy reduced towards ``ANALYSIS_SIDE`` px, if strokes stay 4 px wide or more there), the
    outline moves by ``d`` px using the signed distance ``s`` to the outline (``s > 0`` inside):
    ``new = clip(s + d + 1/2, 0, 1)``.  For ideal strokes, growing by ``d`` adds ``2d`` to the
    width and to the box's side, so ``d = (goal - w) * side / 20 / (2 (1 - goal / 20))``; real
    digits (round ends, blobby joints) need a few such corrections, each from a new measurement,
    kept only while they bring the width closer to the goal.  An erosion that would erase or
    split a piece, or take more than 60% of the half-width, is not done.  Returns the trimmed
    crop.
    """
    enlarged, side = crop, max(crop.shape)
    if side < ANALYSIS_SIDE:
        scale = ANALYSIS_SIDE / side
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        enlarged, side = _resize(crop, size, Image.Resampling.BILINEAR), ANALYSIS_SIDE
    width = stroke_width(enlarged) * MNIST_BOX / side
    goal = stroke_goal(width, target)
    if goal == width:
        return crop
    # Strokes 4 px wide in an 80 px box are plenty to work on: reduce bigger crops (faster).
    factor = min(side // ANALYSIS_SIDE, int(width * side / MNIST_BOX / 4))
    if factor > 1:
        enlarged = _block_mean(enlarged, factor, pad_mode="constant")
        side = max(enlarged.shape)
    margin = math.ceil(2 * max(goal - width, 0.0) * side / MNIST_BOX) + 2  # room to grow
    mask = np.pad(enlarged >= 0.5 * enlarged.max(), margin)
    signed = np.where(
        mask,
        ndimage.distance_transform_edt(mask) - 0.5,
        0.5 - ndimage.distance_transform_edt(~mask),
    )
    best, best_miss, grow, moved = crop, abs(width - goal), 0.0, enlarged
    deepest = -0.3 * width * side / MNIST_BOX  # erode at most 60% of the half-width
    for _ in range(4):
        grow += (goal - width) * max(moved.shape) / MNIST_BOX / (2.0 * (1.0 - goal / MNIST_BOX))
        grow = max(grow, deepest)
        moved, width = _move_outline(signed, grow)
        if grow < 0 and not _same_pieces(mask, moved >= 0.5):
            break  # eroding this far would erase or split part of the digit
        if abs(width - goal) >= best_miss:
            break  # no closer: a blob, say, whose width shrinks with its size
        best, best_miss = moved, abs(width - goal)
        if best_miss < 0.05 * goal:
            break
    return best


def center_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    """(row, column) of the centre of mass: the intensity-weighted mean pixel position."""
    total = float(pixels.sum())
    if total <= 0:
        raise NoInkError("nothing to recognise: no ink found")
    rows = np.arange(pixels.shape[0]) @ pixels.sum(axis=1) / total
    cols = np.arange(pixels.shape[1]) @ pixels.sum(axis=0) / total
    return float(rows), float(cols)


def _area_weights(start: float, scale: float, outputs: int, inputs: int) -> np.ndarray:
    """The (outputs, inputs) matrix of area resampling along one axis.

    Output pixel ``i`` covers the input interval [start + i / scale, start + (i + 1) / scale]
    (pixel-edge coordinates); its weight on input pixel ``j`` is the length of that interval's
    overlap with [j, j + 1], times ``scale``: each output pixel is the exact mean of the area it
    covers (outside the input counts as 0).
    """
    edges = start + np.arange(outputs + 1) / scale
    pixels = np.arange(inputs + 1, dtype=np.float64)
    overlap = np.minimum(edges[1:, None], pixels[None, 1:]) - np.maximum(
        edges[:-1, None], pixels[None, :-1]
    )
    return np.clip(overlap, 0.0, None) * scale


def place_in_frame(crop: np.ndarray) -> np.ndarray:
    """Steps 7-8: scale ``crop`` so its longer side is 20 px and put its centre of mass at
    (14, 14) of a 28x28 frame, in one area resampling; then make the maximum 1.

    With scale ``k = 20 / side``, a crop position ``u`` (pixel-edge coordinates) goes to
    ``k (u - c - 1/2) + 14.5``, where ``c`` is the centre of mass (pixel-centre coordinates); so
    the frame [0, 28] shows the crop's [c + 1/2 - 14.5 / k, c + 1/2 + 13.5 / k].  If that would
    cut off part of the digit (a very lopsided one), ``c`` is moved just enough to keep it all.
    Each frame pixel is the mean of the crop area it covers (``_area_weights``), which is how
    MNIST was anti-aliased; ``frame = W_rows @ crop @ W_cols^T``.  A crop under 20 px is first
    enlarged smoothly (bilinear) to 80 px, as area resampling would enlarge it into blocks.
    """
    if max(crop.shape) < MNIST_BOX:
        scale = 4 * MNIST_BOX / max(crop.shape)
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = _resize(crop, size, Image.Resampling.BILINEAR)
    size = np.array(crop.shape, dtype=np.float64)
    k = MNIST_BOX / size.max()
    before_centre, after_centre = (MNIST_CENTRE + 0.5) / k, (MNIST_SIZE - MNIST_CENTRE - 0.5) / k
    centre = np.clip(center_of_mass(crop), size - 0.5 - after_centre, before_centre - 0.5)
    start = centre + 0.5 - before_centre  # (row, col) of the frame's top-left edge in the crop
    rows = _area_weights(start[0], k, MNIST_SIZE, crop.shape[0])  # (28, H)
    cols = _area_weights(start[1], k, MNIST_SIZE, crop.shape[1])  # (28, W)
    # frame = rows @ crop @ cols.T, written with einsum (plain loops, no BLAS threads)
    frame = np.einsum("iw,jw->ij", np.einsum("ih,hw->iw", rows, crop.astype(np.float64)), cols)
    peak = float(frame.max())
    if peak <= 0:
        raise NoInkError("nothing to recognise: no ink found")
    return np.clip(frame / peak, 0.0, 1.0).astype(np.float32)


def to_mnist(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any picture of one digit -> float32 (28, 28) in [0, 1], white digit on black, like MNIST.

    Accepts a Pillow image of any size and mode, or a 2-D / (H, W, 1..4) array of any real dtype.
    Raises ``NoInkError`` when there is nothing to recognise and ``ImageError`` for unusable input.
    See the module docstring for the steps.
    """
    ink = keep_main_ink(find_ink(image).pixels)
    crop, _ = crop_to_ink(ink)
    return place_in_frame(normalise_stroke(crop))


# ----------------------------------------------------------------------------------------------
# A whole number -> one crop per digit.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitCrop:
    """One digit of a number: ``image`` float32 (28, 28) like ``to_mnist`` gives, and ``box``
    ``(x0, y0, x1, y1)`` in the input picture's pixels (x1, y1 exclusive)."""

    image: np.ndarray
    box: tuple[int, int, int, int]


@dataclass
class _Group:
    """Connected pieces believed to form one digit: their labels, bounding box and ink."""

    labels: set[int]
    x0: int
    y0: int
    x1: int
    y1: int
    mass: float

    def merged(self, other: _Group) -> _Group:
        return _Group(
            self.labels | other.labels,
            min(self.x0, other.x0),
            min(self.y0, other.y0),
            max(self.x1, other.x1),
            max(self.y1, other.y1),
            self.mass + other.mass,
        )


def _merge_overlapping(groups: list[_Group], overlap: float = 0.6) -> list[_Group]:
    """Going left to right, each group joins the nearest earlier group whose column range it
    shares for at least ``overlap`` of the narrower one's width: a 5's floating top bar, the two
    strokes of a 4, a 7's crossbar.  Digits side by side share few columns and stay apart."""
    merged: list[_Group] = []
    for group in sorted(groups, key=lambda g: g.x0):
        for k in range(len(merged) - 1, -1, -1):
            other = merged[k]
            shared = min(other.x1, group.x1) - max(other.x0, group.x0)
            if shared >= overlap * min(other.x1 - other.x0, group.x1 - group.x0):
                merged[k] = other.merged(group)
                break
        else:
            merged.append(group)
    return merged


def _split_points(column_ink: np.ndarray, pieces: int) -> list[int]:
    """Where to cut a run of ``pieces`` touching digits, each about ``d = width / pieces`` wide.

    Near each ideal cut ``k d`` (within 0.3 d), take the column with the lowest
    ``ink / max ink + (distance to the ideal / (0.25 d))^2``: a column of little ink (where
    two digits only touch), unless it is far from where a cut should be.
    """
    width, cuts = len(column_ink), []
    digit = width / pieces
    relative = column_ink / max(float(column_ink.max()), 1e-9)
    for k in range(1, pieces):
        ideal = k * digit
        columns = np.arange(
            max(1, int(ideal - 0.3 * digit)), min(width - 1, int(ideal + 0.3 * digit) + 1)
        )
        cost = relative[columns] + ((columns - ideal) / (0.25 * digit)) ** 2
        cuts.append(int(columns[np.argmin(cost)]))
    return cuts


def _typical_digit_width(groups: list[_Group]) -> float:
    """How wide one digit of this number is: the median width of the groups that look like one
    digit (no wider than tall, and not a narrow "1"), kept within [0.5, 0.9] x the line's height;
    0.7 x the height (a usual handwritten digit) when no group looks like one."""
    line_height = max(g.y1 - g.y0 for g in groups)
    singles = [g.x1 - g.x0 for g in groups if 0.4 * line_height <= g.x1 - g.x0 <= (g.y1 - g.y0)]
    width = float(np.median(singles)) if singles else 0.7 * line_height
    return float(np.clip(width, 0.5 * line_height, 0.9 * line_height))


def _count_digits(group: _Group, digit_width: float) -> int:
    """How many touching digits a group holds: 1 unless it is wider than 1.1x its height (few
    single digits are) and than 1.6 digit widths; then ``round(width / digit_width)``."""
    width, height = group.x1 - group.x0, group.y1 - group.y0
    if width <= 1.1 * height or width <= 1.6 * digit_width:
        return 1
    return max(2, round(width / digit_width))


def segment_digits(image: Image.Image | np.ndarray) -> list[DigitCrop]:
    """A picture of a written number (e.g. "2026") -> one ``DigitCrop`` per digit, left to right.

    Steps 1-4 of ``to_mnist`` give clean ink; its connected pieces are merged when they overlap
    strongly in x (``_merge_overlapping``); groups both short and light (dots, specks) are
    dropped; a group too wide for one digit (``_count_digits``) is cut at the columns of least
    ink (``_split_points``); each digit then goes through steps 5-8.  No ink -> ``NoInkError``.
    """
    ink = find_ink(image)
    labels, count = ndimage.label(ink.pixels > 0, structure=EIGHT_NEIGHBOURS)
    masses = ndimage.sum_labels(ink.pixels, labels, index=np.arange(1, count + 1))
    boxes = ndimage.find_objects(labels)
    groups = _merge_overlapping(
        [
            _Group({label}, box[1].start, box[0].start, box[1].stop, box[0].stop, float(mass))
            for label, (box, mass) in enumerate(zip(boxes, masses, strict=True), start=1)
        ]
    )
    tallest = max(g.y1 - g.y0 for g in groups)
    heaviest = max(g.mass for g in groups)
    groups = [g for g in groups if g.y1 - g.y0 >= 0.3 * tallest or g.mass >= 0.15 * heaviest]
    digit_width = _typical_digit_width(groups)
    crops = []
    for group in sorted(groups, key=lambda g: g.x0):
        window = (slice(group.y0, group.y1), slice(group.x0, group.x1))
        pixels = np.where(np.isin(labels[window], list(group.labels)), ink.pixels[window], 0.0)
        cuts = _split_points(pixels.sum(axis=0), _count_digits(group, digit_width))
        edges = [0, *cuts, group.x1 - group.x0]
        for left, right in zip(edges[:-1], edges[1:], strict=True):
            part = np.zeros_like(pixels)
            part[:, left:right] = pixels[:, left:right]
            if part.sum() <= 0:
                continue
            crop, (x0, y0, x1, y1) = crop_to_ink(part)
            box = _to_input_box((x0 + group.x0, y0 + group.y0, x1 + group.x0, y1 + group.y0), ink)
            crops.append(DigitCrop(place_in_frame(normalise_stroke(crop)), box))
    return crops


def _to_input_box(box: tuple[int, int, int, int], ink: InkImage) -> tuple[int, int, int, int]:
    """A box in working pixels -> the same box in the input picture's pixels."""
    x0, y0, x1, y1 = (v * ink.scale for v in box)
    return x0, y0, min(x1, ink.input_size[0]), min(y1, ink.input_size[1])


# ----------------------------------------------------------------------------------------------
# Untrusted bytes -> a Pillow image.
# ----------------------------------------------------------------------------------------------


def _reducible(image: Image.Image) -> Image.Image:
    """Convert ``image`` to a mode that ``Image.reduce`` accepts, keeping alpha and 16-bit range."""
    if image.mode in ("L", "LA", "RGB", "RGBA", "I", "F"):
        return image
    if image.mode.startswith("I;16"):
        return image.convert("I")
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "PA" or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    return image.convert("RGB")


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (how the camera was held); a broken EXIF block is ignored
    rather than refusing an image whose pixels are fine."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF raises many types; the pixels are still good
        return image


def decode_image(
    data: bytes,
    max_pixels: int = 40_000_000,
    max_side: int = 20_000,
    reduce_to_pixels: int | None = 4_000_000,
) -> Image.Image:
    """Decode untrusted image bytes (PNG, JPEG, GIF, BMP, WebP, TIFF, PPM, TGA, ICO) safely.

    - The size in the header is checked *before* decoding: more than ``max_pixels`` pixels or a
      side over ``max_side`` is refused (a "decompression bomb": a tiny file that claims to be
      huge), as are zero-size images; Pillow's own bomb guard is turned into ``ImageError`` too.
    - Truncated, corrupt or unknown data -> ``ImageError`` with a clear message; nothing else.
    - EXIF orientation is applied (phone photos come out upright); an animation gives its first
      frame.
    - Pictures with more than ``reduce_to_pixels`` pixels come back reduced by an integer factor
      (JPEG: decoded at 1/2, 1/4 or 1/8 scale by the decoder itself, which is much faster).
      ``None`` keeps full size.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"expected image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError("the image is empty (0 bytes)")
    Image.init()
    formats = [name for name in DECODABLE_FORMATS if name in Image.OPEN]
    try:
        image = Image.open(io.BytesIO(bytes(data)), formats=formats)
    except Image.DecompressionBombError as error:
        raise ImageError(f"the image is too large: {error}") from error
    except Exception as error:  # Pillow's plugins raise many types on garbage
        message = "not an image in a supported format (PNG, JPEG, GIF, BMP, WebP, ...)"
        raise ImageError(message) from error
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"the image has zero size {width}x{height}")
    if width * height > max_pixels or max(width, height) > max_side:
        raise ImageError(
            f"the image is too large: {width}x{height} pixels "
            f"(the limit is {max_pixels} pixels and {max_side} per side)"
        )
    try:
        factor = (
            1 if reduce_to_pixels is None else _reduction_factor(width, height, reduce_to_pixels)
        )
        if factor > 1 and image.format in ("JPEG", "MPO"):
            image.draft(image.mode, (width // factor, height // factor))
        image.load()
        image = _upright(image)
        factor = _reduction_factor(*image.size, reduce_to_pixels) if reduce_to_pixels else 1
        if factor > 1:
            image = _reducible(image).reduce(factor)
    except Exception as error:  # truncated or corrupt data, unsupported variants of a format
        raise ImageError(f"the image data is truncated or corrupt: {error}") from error
    return image
