"""Steps 5-8 of preprocessing: clean ink of one digit -> MNIST's frame (``to_mnist``).

A model trained on MNIST has only ever seen digits prepared one particular way: white ink on
black, the digit scaled so its longer side is 20 pixels, anti-aliased, and placed in a 28x28 frame
so that its centre of mass sits at the centre.  These steps rebuild exactly that look:

5. **Crop** (``crop_to_ink``) to the bounding box of the ink.
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
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage

from npcnn.digits.errors import NoInkError
from npcnn.digits.preprocess.decode import block_mean
from npcnn.digits.preprocess.ink import EIGHT_NEIGHBOURS, find_ink, keep_main_ink

MNIST_SIZE = 28  # the frame
MNIST_BOX = 20  # the digit's longer side
MNIST_CENTRE = 14.0  # row and column of the centre of mass in the frame
MNIST_STROKE_WIDTH = 2.55  # median stroke width of MNIST training digits (px, 20 px scale)
STROKE_TOLERANCE = 1.4  # widths within [w / 1.4, w * 1.4] (~MNIST's 4th-92nd pct) are kept
STROKE_RAMP = (
    0.4  # beyond, the goal slides to the median, reached at 2.1x off (ln 2.1 = ln 1.4 + 0.4)
)
ANALYSIS_SIDE = 80  # strokes are measured and adjusted at this resolution (or finer)


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
    stroke width at the 20 px scale; an empty array and width 0 if nothing is left.

    Only the ink proper (pixels at least half covered) and the one-pixel anti-aliased rim round
    it are kept: an erosion can leave a trail of faint pixels further out (where the stroke
    narrows to about twice the erosion's depth), which would stretch the box the digit is
    scaled by and leave it smaller than 20 px in its frame."""
    moved = np.clip(signed + grow + 0.5, 0.0, 1.0).astype(np.float32)
    solid = moved >= 0.5
    if not solid.any():
        return np.zeros_like(moved), 0.0
    moved[~ndimage.binary_dilation(solid, structure=EIGHT_NEIGHBOURS)] = 0.0
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
        enlarged = block_mean(enlarged, factor, pad_mode="constant")
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
    np.maximum(overlap, 0.0, out=overlap)  # no overlap: 0 (ufuncs: np.clip's wrapper is slower)
    overlap *= scale
    return overlap


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
    frame = rows @ crop.astype(np.float64) @ cols.T  # two small matrix products
    peak = float(frame.max())
    if peak <= 0:
        raise NoInkError("nothing to recognise: no ink found")
    frame /= peak
    np.maximum(frame, 0.0, out=frame)  # clip to [0, 1]
    np.minimum(frame, 1.0, out=frame)
    return frame.astype(np.float32)


def to_mnist(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any picture of one digit -> float32 (28, 28) in [0, 1], white digit on black, like MNIST.

    Accepts a Pillow image of any size and mode, or a 2-D / (H, W, 1..4) array of any real dtype.
    Raises ``NoInkError`` when there is nothing to recognise and ``ImageError`` for unusable input.
    See the module docstring for the steps.
    """
    return ink_to_mnist(find_ink(image).pixels)


def ink_to_mnist(ink: np.ndarray) -> np.ndarray:
    """Steps 5-8 for the clean ink of one digit (``find_ink(...).pixels``): keep the main ink
    (``keep_main_ink``), crop, normalise the stroke, scale and centre.  ``to_mnist`` is
    ``ink_to_mnist(find_ink(image).pixels)``."""
    crop, _ = crop_to_ink(keep_main_ink(ink))
    return place_in_frame(normalise_stroke(crop))
