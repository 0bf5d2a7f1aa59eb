"""Reading a number by sliding a window along it: a network that sees each digit in its context.

``numbers`` cuts the ink first and asks the network about each piece; where digits overlap, no
cut separates them and the right pieces are never offered.  Here nothing is cut.  A square
window slides along the line of ink, a few pixels at a time, and a network trained for it says
for each position either "a digit is centred here, and it is d" or "no digit is centred here"
(class 10).  The neighbours' strokes reaching into the window are part of what it learned from,
so two digits whose strokes cross are read as two.

1. **The line** (``line_geometry``).  The ink is scaled so that the line's digits are about
   ``DIGIT_PX`` pixels tall, as MNIST's are; for every column, the top and bottom of its ink.
2. **Windows** (``cut_windows``).  Every ``STRIDE`` line heights, a ``WINDOW x WINDOW`` window
   centred on that column and on the ink of the columns around it (``BAND`` line heights either
   side), scaled so that this local ink is ``DIGIT_PX`` tall: a digit centred in the window is
   framed like an MNIST digit, with whatever of its neighbours falls inside.
3. **Runs** (``decode``).  ``s(x) = 1 - P(no digit | window at x)`` is high over the few
   windows centred near a digit's centre and low between digits.  Each run of windows with
   ``s >= RUN_LEVEL`` is one digit, unless ``s`` dips inside it (two digits close together) or
   its most probable digit changes from one group of windows to another; the digit is the one
   with the largest sum of ``s x P(digit)`` over the run, its confidence the highest probability
   a window of the run gave it.

The network is trained (``train_number_reader.py``) on windows cut the same way from the
project's own number pictures (``number_set.make_number`` with the "train" digits: MNIST's
training digits outside the validation split, which the development set is made of, and
synthetic ones, each augmented before it is placed), labelled from the known digit boxes: a
digit's class when the window's centre is within ``CENTRED`` local heights of that digit's
centre, class 10 when it is at least ``OFF_CENTRE`` from every digit's centre, and left out in
between; between two digits closer together than that, the limits shrink with their distance
(``PAIR_CENTRED``, ``PAIR_OFF_CENTRE``), so that halfway between two close 1s means "no digit".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from npcnn import kernels
from npcnn.digits.errors import NoInkError
from npcnn.digits.number_set import NumberPicture
from npcnn.digits.numbers import (
    NOT_A_DIGIT,
    RUNNER_UP_RATIO,
    NumberDigit,
    NumberReading,
    digit_pieces,
    frame_candidate,
)
from npcnn.digits.preprocess.ink import InkImage, find_ink

WINDOW = 28  # the window's height: the network's input height, as a single digit's
DIGIT_PX = 20  # a digit's height in the window (MNIST's box)
STRIDE = 0.1  # windows this many line heights apart
TRAINING_STRIDE = 0.05  # ... and twice as many for training (more positions to learn from)
BAND = 0.25  # a window's vertical placement comes from the ink this many heights either side
CENTRED = 0.08  # training: within this many local heights of a digit's centre -> that digit
OFF_CENTRE = 0.22  # ... at least this far from every digit's centre -> class 10
PAIR_CENTRED = 0.2  # ... between two close digits: within this x their distance -> the digit
PAIR_OFF_CENTRE = 0.4  # ... at least this x their distance from both -> class 10
RUN_LEVEL = 0.8  # a digit is read where s(x) = 1 - P(no digit) stays at least this high
DIP = 0.9  # ... split where s dips below this x the highest s on either side
MIN_GROUP = 2  # ... or where the most probable digit changes between groups of this many windows
BOX_REACH = 0.5  # a digit's box reaches this many heights past its windows (not past halfway)
INK_LEVEL = 0.2  # a pixel at least this bright counts as ink for the columns' extents


@dataclass
class Line:
    """The ink of a number scaled so that its digits are about ``DIGIT_PX`` tall: ``ink`` (H, W)
    float32, ``zoom`` (line pixels per working pixel), and per column the ``top`` and ``bottom``
    rows of its ink (``bottom < top`` where a column is empty)."""

    ink: np.ndarray
    zoom: float
    top: np.ndarray
    bottom: np.ndarray


def digit_ink(ink: np.ndarray) -> np.ndarray:
    """Clean ink without underlines and tiny specks (``numbers.digit_pieces``)."""
    pieces = digit_pieces(ink)
    kept = np.isin(pieces.labels, np.flatnonzero(pieces.keep) + 1)
    return np.where(kept, ink, 0.0).astype(np.float32)


def column_extents(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the first and last row holding ink (``bottom = -1``, ``top = H`` if none)."""
    inked = ink >= INK_LEVEL
    height = ink.shape[0]
    any_ink = inked.any(axis=0)
    top = np.where(any_ink, inked.argmax(axis=0), height)
    bottom = np.where(any_ink, height - 1 - inked[::-1].argmax(axis=0), -1)
    return top, bottom


def line_geometry(ink: np.ndarray) -> Line:
    """Step 1: clean ink (working pixels) -> the line scaled to ``DIGIT_PX``-tall digits.

    The digits' height is the 90th percentile of the inked columns' heights: a vertical stroke
    spans its digit, a slope does not add to any one column."""
    ink = digit_ink(ink)
    top, bottom = column_extents(ink)
    heights = (bottom - top + 1)[bottom >= top]
    line_height = max(float(np.percentile(heights, 90)), 4.0)
    zoom = DIGIT_PX / line_height
    h, w = ink.shape
    size = (max(1, round(w * zoom)), max(1, round(h * zoom)))
    scaled = Image.fromarray(ink, mode="F").resize(size, Image.Resampling.BILINEAR)
    scaled_ink = np.clip(np.asarray(scaled, dtype=np.float32), 0.0, 1.0)
    top, bottom = column_extents(scaled_ink)
    return Line(scaled_ink, zoom, top, bottom)


def window_centres(line: Line, stride: float | None = None) -> np.ndarray:
    """Step 2a: the columns the windows are centred on, ``stride`` (default ``STRIDE``) line
    heights apart, from the first inked column to the last."""
    stride = STRIDE if stride is None else stride
    inked = np.flatnonzero(line.bottom >= line.top)
    if inked.size == 0:
        raise NoInkError("nothing to recognise: the image looks blank")
    return np.arange(inked[0], inked[-1] + 1, stride * DIGIT_PX, dtype=np.float64)


def local_extent(line: Line, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The top and bottom (rows) of the ink within ``BAND`` line heights of each centre; windows
    whose band holds no ink get NaN.

    A column without ink has ``top = H`` and ``bottom = -1`` (``column_extents``), so the band's
    extent is simply the smallest top and the largest bottom of its columns."""
    reach = BAND * DIGIT_PX
    height, width = line.ink.shape
    first = np.maximum(0, np.floor(centres - reach)).astype(np.intp)
    stop = np.minimum(width, np.ceil(centres + reach).astype(np.intp) + 1)
    span = max(1, int((stop - first).max(initial=1)))
    columns = first[:, None] + np.arange(span)  # (K, span): each band's columns, and some more
    inside = columns < stop[:, None]
    columns = np.minimum(columns, width - 1)
    tops = np.where(inside, line.top[columns], height).min(axis=1, initial=height)
    bottoms = np.where(inside, line.bottom[columns], -1).max(axis=1, initial=-1)
    inked = bottoms >= 0
    return np.where(inked, tops, np.nan), np.where(inked, bottoms + 1, np.nan)


def cut_windows(
    line: Line, centres: np.ndarray, width: int = WINDOW
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 2b: ``(windows (K, 28, width) float32, kept (K,) bool, local heights (K,))``.

    Window ``k`` is centred on column ``centres[k]`` and on the middle of the ink around it;
    its scale makes that ink ``DIGIT_PX`` tall (bilinear sampling).  A window wider than it is
    tall shows more of the digit's neighbours.  Windows with no ink within their band are not
    cut (``kept`` False, all zeros)."""
    tops, bottoms = local_extent(line, centres)
    kept = ~np.isnan(tops)
    heights = np.where(kept, np.maximum(bottoms - tops, 0.4 * DIGIT_PX), DIGIT_PX)
    middles = np.where(kept, (tops + bottoms) / 2, 0.0)
    step = heights / DIGIT_PX  # line pixels per window pixel
    row_offsets = np.arange(WINDOW, dtype=np.float64) - (WINDOW - 1) / 2
    col_offsets = np.arange(width, dtype=np.float64) - (width - 1) / 2
    rows = middles[:, None, None] + row_offsets[None, :, None] * step[:, None, None]
    cols = centres[:, None, None] + col_offsets[None, None, :] * step[:, None, None]
    rows, cols = np.broadcast_arrays(rows[kept], cols[kept])  # (kept, WINDOW, width)
    windows = kernels.sample_bilinear(
        line.ink[None], rows.reshape(1, -1, width), cols.reshape(1, -1, width)
    ).reshape(rows.shape)
    # nothing is read beyond the line's outermost pixels (not even half a pixel's blend)
    height, line_width = line.ink.shape
    windows[(rows < 0) | (rows > height - 1) | (cols < 0) | (cols > line_width - 1)] = 0.0
    out = np.zeros((len(centres), WINDOW, width), dtype=np.float32)
    out[kept] = windows
    return out, kept, heights


def box_middles(
    ink: InkImage, line: Line, boxes: Sequence[tuple[int, int, int, int]]
) -> np.ndarray:
    """The line columns of the middles of ``boxes`` ``(x0, y0, x1, y1)`` (input pixels): where
    a digit counts as centred, for the training labels and for reading another reader's digits."""
    to_line = line.zoom / ink.scale  # input pixels -> line pixels
    return np.array([(x0 + x1) / 2 * to_line for x0, _, x1, _ in boxes], dtype=np.float64)


def windows_at_boxes(
    ink: InkImage, line: Line, boxes: Sequence[tuple[int, int, int, int]], width: int = WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """Windows centred on the middle of each box (``box_middles``), framed as ``cut_windows``
    frames them: ``(windows (B, 28, width) float32, kept (B,) bool)``.  How the number reader
    reads the digits another reader found (segmentation's, for the chooser)."""
    windows, kept, _ = cut_windows(line, box_middles(ink, line, boxes), width)
    return windows, kept


def window_labels(
    centres: np.ndarray, heights: np.ndarray, digit_centres: np.ndarray, digits: np.ndarray
) -> np.ndarray:
    """Training labels: the digit centred in each window, ``NOT_A_DIGIT``, or -1 (left out).

    With ``d`` the distance to the nearest digit's centre in local heights: that digit when
    ``d <= CENTRED``, ``NOT_A_DIGIT`` when ``d >= OFF_CENTRE``.  Between two digits closer together
    than that allows (two 1s side by side), the limits shrink to ``PAIR_CENTRED`` and
    ``PAIR_OFF_CENTRE`` of the distance between their centres, so that the window halfway
    between them is "no digit" and the reader learns to see two digits there, not one."""
    order = np.argsort(digit_centres)
    digit_centres, digits = digit_centres[order], digits[order]
    right = np.searchsorted(digit_centres, centres)  # the first digit centre right of each window
    left = right - 1
    has_left, has_right = left >= 0, right < len(digit_centres)
    to_left = np.where(has_left, centres - digit_centres[np.maximum(left, 0)], np.inf)
    to_right = np.where(
        has_right, digit_centres[np.minimum(right, len(digits) - 1)] - centres, np.inf
    )
    nearest = np.where(to_left <= to_right, left, right)
    distance = np.minimum(to_left, to_right)
    gap = np.where(has_left & has_right, to_left + to_right, np.inf)
    centred = distance <= np.minimum(CENTRED * heights, PAIR_CENTRED * gap)
    off = distance >= np.minimum(OFF_CENTRE * heights, PAIR_OFF_CENTRE * gap)
    labels = np.full(len(centres), -1, dtype=np.int64)
    labels[centred] = digits[nearest[centred]]
    labels[off] = NOT_A_DIGIT
    return labels


@dataclass
class WindowDigit:
    """A digit found by the windows: ``digit``, its ``confidence`` (the highest probability any
    of its windows gave it), its ``probabilities`` (11) and ``window`` (index) there, and its
    columns ``first .. last`` (window indices)."""

    digit: int
    confidence: float
    probabilities: np.ndarray
    window: int
    first: int
    last: int


def _runs(above: np.ndarray) -> list[tuple[int, int]]:
    """The ``[start, stop)`` runs of consecutive True values."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], above, [False]]).astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _split_at_dips(s: np.ndarray, start: int, stop: int) -> list[int]:
    """Inner local minima of ``s`` in ``[start, stop)`` below ``DIP`` x the lower of the highest
    values on either side: where two digits' windows meet without a gap."""
    cuts = []
    for m in range(start + 1, stop - 1):
        if s[m] <= s[m - 1] and s[m] < s[m + 1]:
            if s[m] < DIP * min(s[start:m].max(), s[m + 1 : stop].max()):
                cuts.append(m)
    return cuts


def _split_at_changes(digits: np.ndarray, start: int, stop: int) -> list[int]:
    """Where the most probable digit changes between groups of at least ``MIN_GROUP`` windows
    (two different digits side by side, with no dip between them); shorter groups in between
    are one window's other opinion, not a digit."""
    cuts, first, previous = [], start, None
    for k in range(start + 1, stop + 1):
        if k == stop or digits[k] != digits[first]:
            if k - first >= MIN_GROUP:
                if previous is not None and digits[first] != previous:
                    cuts.append(first)
                previous = digits[first]
            first = k
    return cuts


def decode(probabilities: np.ndarray) -> list[WindowDigit]:
    """Step 3: the windows' probabilities (K, 11), left to right -> the digits read.

    ``s = 1 - P(no digit)``; each run of windows with ``s >= RUN_LEVEL`` is one digit, unless it
    dips in between (``_split_at_dips``) or holds two digits one after the other
    (``_split_at_changes``).  A part's digit is the one with the largest sum of ``s x P(digit)``
    over its windows."""
    s = 1.0 - probabilities[:, NOT_A_DIGIT]
    best = probabilities[:, :NOT_A_DIGIT].argmax(axis=1)
    found = []
    for start, stop in _runs(s >= RUN_LEVEL):
        bounds = [start, *_split_at_dips(s, start, stop), stop]
        parts = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            inner = [a, *_split_at_changes(best, a, b), b]
            parts.extend(zip(inner[:-1], inner[1:], strict=True))
        for a, b in parts:
            weighted = (s[a:b, None] * probabilities[a:b, :NOT_A_DIGIT]).sum(axis=0)
            digit = int(weighted.argmax())
            window = a + int(probabilities[a:b, digit].argmax())
            p = probabilities[window]
            found.append(WindowDigit(digit, float(p[digit]), p, window, a, b - 1))
    return found


def read_line(
    ink: np.ndarray, width: int = WINDOW
) -> tuple[Line, np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-2 for clean ink (working pixels): ``(line, centres, windows, kept)``."""
    line = line_geometry(ink)
    centres = window_centres(line)
    windows, kept, _ = cut_windows(line, centres, width)
    return line, centres, windows, kept


def training_windows(
    picture: NumberPicture,
    rng: np.random.Generator,
    blank_share: float = 0.35,
    width: int = WINDOW,
) -> tuple[np.ndarray, np.ndarray]:
    """Labelled windows of one number picture, as the reader cuts them: ``(uint8 (K, 28,
    width), labels (K,))``.  Every window with a digit centred in it is kept, and windows of class 10
    (chosen at random) up to ``blank_share`` of the total; windows in between are left out."""
    ink = find_ink(picture.pixels)
    line = line_geometry(ink.pixels)
    centres = window_centres(line, TRAINING_STRIDE)
    windows, kept, heights = cut_windows(line, centres, width)
    digit_centres = box_middles(ink, line, picture.boxes)
    digits = np.array([int(c) for c in picture.text])
    labels = window_labels(centres, heights, digit_centres, digits)
    labels[~kept] = -1
    centred = np.flatnonzero((labels >= 0) & (labels < NOT_A_DIGIT))
    blank = np.flatnonzero(labels == NOT_A_DIGIT)
    count = min(len(blank), int(len(centred) * blank_share / (1 - blank_share)) + 1)
    chosen = np.concatenate([centred, rng.choice(blank, count, replace=False)])
    return np.round(windows[chosen] * 255).astype(np.uint8), labels[chosen]


def _digit_box(
    line: Line, centres: np.ndarray, found: list[WindowDigit], k: int
) -> tuple[int, int, int, int]:
    """Digit ``k``'s box in line pixels: the ink from halfway to its left neighbour to halfway to
    its right one (its windows' centres), at most ``BOX_REACH`` line heights beyond its own first
    and last windows, and the rows that ink spans.  A digit's windows are only those centred on
    it, so the box must reach past them to hold a wide digit (a 0, a 7's bar) whole."""
    digit = found[k]
    reach = BOX_REACH * DIGIT_PX
    left = centres[digit.first] - reach
    right = centres[digit.last] + reach
    if k > 0:
        left = max(left, (centres[found[k - 1].last] + centres[digit.first]) / 2)
    if k + 1 < len(found):
        right = min(right, (centres[digit.last] + centres[found[k + 1].first]) / 2)
    lo, hi = max(0, int(np.floor(left))), min(line.ink.shape[1], int(np.ceil(right)) + 1)
    top, bottom = line.top[lo:hi], line.bottom[lo:hi]
    inked = np.flatnonzero(bottom >= top)
    if inked.size == 0:
        return lo, 0, hi, line.ink.shape[0]
    return (
        lo + int(inked[0]),
        int(top[inked].min()),
        lo + int(inked[-1]) + 1,
        int(bottom[inked].max()) + 1,
    )


@dataclass
class WindowProbabilities:
    """Steps 1-2 of one picture: its ``line``, the window ``centres``, the framed ``windows``,
    which were ``kept`` (ink near their centre) and the reader's ``probabilities`` (K, 11) for
    every window (a window not kept: "no digit"), with the ``timings`` of cutting and reading."""

    line: Line
    centres: np.ndarray
    windows: np.ndarray
    kept: np.ndarray
    probabilities: np.ndarray
    timings: dict[str, float]


def read_kept(
    windows: np.ndarray, kept: np.ndarray, predict: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """The reader's probabilities (K, 11) for ``windows`` (K, 28, width), ``predict`` called once
    for the ``kept`` ones; a window not kept (no ink near its centre) holds no digit."""
    probabilities = np.zeros((len(windows), NOT_A_DIGIT + 1))
    probabilities[:, NOT_A_DIGIT] = 1.0
    if kept.any():
        probabilities[kept] = predict(windows[kept][:, None])
    return probabilities


def window_probabilities(
    ink: InkImage, predict: Callable[[np.ndarray], np.ndarray], width: int = WINDOW
) -> WindowProbabilities:
    """Clean ink -> its windows and the reader's probabilities for them; ``predict`` is the
    number reader's ``model.predict`` ((N, 1, 28, width) -> (N, 11)), called once for all
    windows."""
    started = time.perf_counter()
    line, centres, windows, kept = read_line(ink.pixels, width)
    cut = time.perf_counter()
    probabilities = read_kept(windows, kept, predict)
    timings = {"windows": cut - started, "network": time.perf_counter() - cut,
               "window_count": int(kept.sum())}  # fmt: skip
    return WindowProbabilities(line, centres, windows, kept, probabilities, timings)


def reading_from_windows(ink: InkImage, read: WindowProbabilities) -> NumberReading:
    """Step 3: the windows' probabilities -> the number's reading, each digit with its box and
    its image framed alone."""
    started = time.perf_counter()
    return reading_from_digits(ink, read, decode(read.probabilities), started)


def reading_from_digits(
    ink: InkImage, read: WindowProbabilities, found: list[WindowDigit], started: float
) -> NumberReading:
    """The digits ``found`` on ``read``'s windows (by ``decode``, or by the sequence head:
    ``number_sequence``) -> the number's reading, each digit with its box and its image framed
    alone; ``started`` (``time.perf_counter``) is when the decoding began, for the timings."""
    line, centres, windows = read.line, read.centres, read.windows
    if not found:
        raise NoInkError("nothing to recognise: no digit found")
    digits = []
    for k, digit in enumerate(found):
        x0, y0, x1, y1 = (v / line.zoom for v in _digit_box(line, centres, found, k))
        x0, y0 = int(np.floor(x0)), int(np.floor(y0))  # working pixels
        x1, y1 = int(np.ceil(x1)), int(np.ceil(y1))
        crop = ink.pixels[y0:y1, x0:x1]
        # the digit framed alone, as the digit model reads it: the preview, and what a
        # correction of this digit stores
        if crop.any():
            image = frame_candidate(crop, False)
        else:  # the middle of its window, as square as a digit's picture
            left = (windows.shape[2] - WINDOW) // 2
            image = windows[digit.window][:, left : left + WINDOW]
        box = (x0 * ink.scale, y0 * ink.scale,
               min(x1 * ink.scale, ink.input_size[0]), min(y1 * ink.scale, ink.input_size[1]))  # fmt: skip
        digits.append(NumberDigit(image, digit.probabilities, digit.digit, box))
    confidence = float(np.prod([d.confidence for d in found]))
    timings = {**read.timings, "search": time.perf_counter() - started}
    return NumberReading(digits, confidence, runner_up(found), ink.input_size, timings)


def read_number(
    ink: InkImage, predict: Callable[[np.ndarray], np.ndarray], width: int = WINDOW
) -> NumberReading:
    """Clean ink of a number -> its reading, window by window (steps 1-3); ``predict`` is the
    number reader's ``model.predict`` ((N, 1, 28, width) -> (N, 11)), called once for all
    windows."""
    return reading_from_windows(ink, window_probabilities(ink, predict, width))


def runner_up(found: list[WindowDigit]) -> tuple[str, float] | None:
    """The second-best reading: the best one with its least certain digit replaced by that
    digit's second choice, reported when its confidence is at least ``RUNNER_UP_RATIO`` x the
    best's."""
    ratios = []
    for digit in found:
        p = digit.probabilities[:NOT_A_DIGIT]
        second = int(np.argsort(p)[-2]) if p.argmax() == digit.digit else int(p.argmax())
        ratios.append((p[second] / max(p[digit.digit], 1e-12), second))
    k = int(np.argmax([ratio for ratio, _ in ratios]))
    ratio, second = ratios[k]
    if ratio < RUNNER_UP_RATIO:
        return None
    text = "".join(str(d.digit) if i != k else str(second) for i, d in enumerate(found))
    return text, float(np.prod([d.confidence for d in found]) * ratio)
