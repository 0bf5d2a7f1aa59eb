"""Step 4b: a ruled page's lines -> gone, the digit's strokes across them kept.

A digit written in a school notebook and photographed comes with the page's ruling: thin
horizontal lines from edge to edge, often a vertical margin line too.  They are ink as far as the
earlier steps can tell, they join every stroke that crosses them into one piece, and a digit
reader reads them as 1s, 7s and 4s.  This step finds them and takes them out, before specks are
judged (beside a grid of lines, a whole digit would look like a speck).

A *ruled line* is what is left of the ink, its gaps along the line up to ``GAP`` of the
picture's side closed (a faded line in a photo comes in dashes), after an opening with a
straight line ``RUN`` of the picture's side long (only runs of ink at least that long survive
it), as one connected piece that reaches from edge to edge (``EDGE_TO_EDGE`` of the picture)
and is thin: across the line, at most ``MAX_THICKNESS`` of the picture's side in most places.
The step acts only on a ruled page - at least ``MIN_LINES`` horizontal lines - so that a lone
stroke from edge to edge (a 7's bar or a 1 in a picture cropped to it) is never taken for
ruling; on such a page the vertical lines from edge to edge (the margin) go too.

A line's pixels are zeroed except where a stroke crosses it - a pixel of the line with the
stroke's ink just beyond the line on both sides (``BRIDGE`` pixels) stays - or runs along it:
columns where the line is thicker than a line are left alone.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

GAP = 0.05  # gaps in a faded line up to this x the picture's side are closed first
RUN = 0.1  # an opening with a line this x the picture's side keeps only long straight runs
EDGE_TO_EDGE = 0.9  # a ruled line spans at least this x the picture's side
MAX_THICKNESS = 0.025  # ... and is at most this x the side thick (median across it), 2 px at least
MIN_LINES = 2  # horizontal lines needed before anything is taken out: a ruled page
TILT_ROWS = 5  # the quick test (may_be_ruled) looks at bands of this many rows
BRIDGE = 2  # a line pixel stays where the stroke's ink lies this close on both sides


def long_runs_along_rows(mask: np.ndarray, run: int) -> np.ndarray:
    """The pixels of ``mask`` (H, W) in a run of at least ``run`` (odd) True values along a row:
    the opening of ``mask`` by a line of ``run`` pixels, ``ndimage.binary_opening(mask,
    np.ones((1, run)))``, as a sliding minimum then maximum (their cost does not grow with
    ``run``; the opening's does)."""
    if run % 2 == 0:
        raise ValueError(f"run must be odd, got {run}")
    shrunk = ndimage.minimum_filter1d(mask.view(np.uint8), run, axis=1, mode="constant", cval=0)
    return ndimage.maximum_filter1d(shrunk, run, axis=1, mode="constant", cval=0).astype(bool)


def gaps_closed_along_rows(mask: np.ndarray, gap: int) -> np.ndarray:
    """``mask`` (H, W, or (W,)) with the gaps of up to ``gap`` - 1 False values between True
    ones along its last axis filled, and a margin of up to ``gap // 2`` to the border: the
    closing by a line of ``gap`` (odd) pixels, a sliding maximum then minimum, the border counted
    as True for the minimum (a faded line, broken into dashes, made whole to the edges)."""
    if gap % 2 == 0:
        raise ValueError(f"gap must be odd, got {gap}")
    grown = ndimage.maximum_filter1d(mask.view(np.uint8), gap, axis=-1, mode="constant", cval=0)
    return ndimage.minimum_filter1d(grown, gap, axis=-1, mode="constant", cval=1).astype(bool)


def _lines_along_rows(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """The pixels of ruled lines running along the rows of ``ink`` (a boolean mask, all False
    when there are none), and how many lines."""
    height, width = ink.shape
    inked = ink > 0
    lines = np.zeros_like(inked)
    gap = max(1, round(GAP * width)) | 1
    if np.count_nonzero(gaps_closed_along_rows(inked.any(axis=0), gap)) < EDGE_TO_EDGE * width:
        return lines, 0  # the ink does not reach that far: no line (most pictures stop here)
    whole = gaps_closed_along_rows(inked, gap)
    long_runs = long_runs_along_rows(whole, max(3, round(RUN * width)) | 1)
    if np.count_nonzero(long_runs.any(axis=0)) < EDGE_TO_EDGE * width:
        return lines, 0
    labels, _ = ndimage.label(long_runs, structure=np.ones((3, 3), dtype=bool))
    most, found = max(2.0, MAX_THICKNESS * height), 0
    for index, (rows, columns) in enumerate(ndimage.find_objects(labels), start=1):
        if columns.stop - columns.start < EDGE_TO_EDGE * width:
            continue
        piece = labels[rows, columns] == index
        thickness = piece.sum(axis=0)
        if np.median(thickness) <= most:  # a line; where a stroke runs along it, the stroke
            thin = piece & (thickness <= most)  # is thicker: left alone
            lines[rows, columns] |= thin & inked[rows, columns]  # the ink of the line only
            found += 1
    return lines, found


def _crossings(strokes: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """The pixels of ``lines`` (running along the rows) where a stroke crosses: ``strokes`` (ink
    that is no ruled line) lie within ``BRIDGE`` pixels of the line on both sides, along the
    columns."""
    above = np.zeros_like(lines)
    below = np.zeros_like(lines)
    for step in range(1, BRIDGE + 1):
        above[step:] |= strokes[:-step]
        below[:-step] |= strokes[step:]
    # spread through the line's own thickness: a pixel inside a thick line sees the stroke too
    for _ in range(int(np.ceil(MAX_THICKNESS * lines.shape[0])) + 1):
        above[1:] |= above[:-1] & lines[1:]
        below[:-1] |= below[1:] & lines[:-1]
    return lines & above & below


def may_be_ruled(ink: np.ndarray) -> bool:
    """A quick test that most pictures fail: ruled lines cross both sides of the picture, so
    each side strip (the ``1 - EDGE_TO_EDGE`` of the width nearest to it) has at least
    ``MIN_LINES`` separate groups of rows where ink covers half the strip's width or more (in
    bands of ``TILT_ROWS`` rows, for a line that is not quite level, or comes in dashes)."""
    strip = max(1, math.ceil((1 - EDGE_TO_EDGE) * ink.shape[1]))
    for side in (ink[:, :strip] > 0, ink[:, -strip:] > 0):
        banded = ndimage.maximum_filter1d(side.view(np.uint8), TILT_ROWS, axis=0)
        rows = banded.mean(axis=1) >= 0.5
        groups = int(rows[0]) + np.count_nonzero(rows[1:] & ~rows[:-1])
        if groups < MIN_LINES:
            return False
    return True


def remove_ruled_lines(ink: np.ndarray) -> np.ndarray:
    """Clean ink (H, W) -> the same without a ruled page's lines (see the module's docstring);
    ``ink`` itself when it is not on a ruled page."""
    if not may_be_ruled(ink):
        return ink
    across, count = _lines_along_rows(ink)
    if count < MIN_LINES:
        return ink
    down = _lines_along_rows(ink.T)[0].T
    lines = across | down
    strokes = (ink > 0) & ~lines  # where lines cross each other, no stroke crosses them
    keep = _crossings(strokes, across) | _crossings(strokes.T, down.T).T
    return np.where(lines & ~keep, 0.0, ink).astype(np.float32)
