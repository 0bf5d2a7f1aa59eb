"""Reading a whole number: recognition-driven segmentation.

``preprocess.segment`` decides where one digit ends and the next begins from the ink alone, before
the network has a say; touching digits, a "1" leaning on its neighbour or a 5 whose top bar floats
free then come out as the wrong digits.  Here the ink only *proposes* cuts, and the network chooses
among them:

1. **Atoms** (``find_atoms``).  The ink's connected pieces (8-neighbour), minus specks and
   underlines.  A piece wide enough to hold two digits is sliced along *seams*: the cheapest
   top-to-bottom paths through it (``seam_costs``: the ink crossed plus a little per sideways
   step), which run straight through where touching digits meet and bend around the strokes
   where they overlap; seams are proposed where their cost has a valley (``seam_cuts``), ended
   at the bottom row and, in pieces wide enough for two digits, also started at the top row.  Each
   slice is an atom.  Atoms are ordered by the centre of their columns.
2. **Candidate segments** (``number_candidates``).  Every run of 1 to ``MAX_ATOMS`` consecutive
   atoms that could be one digit (not much wider than tall, no wide gap inside) is a candidate:
   its ink is framed exactly like a single digit (``crop_to_ink``, ``normalise_stroke``,
   ``place_in_frame``), so one run may join a 5's body and its bar, the two strokes of a 4, or the
   halves of a broken stroke.  Where a run ends at a cut through a piece, it is also offered
   with a strip of the neighbouring atom across that cut, ``OVERLAP_REACH`` and
   ``OVERLAP_REACH_2`` line heights wide (``overlap_variants``): where digits touch or overlap,
   any seam leaves a little of one digit on the other's side (the edge of a 0, the crossing
   half of a 4's bar), and the strip gives it back.  The strip may be used twice - by the run
   and by the neighbour it came from - as overlapping digits share ink.
3. **Scores**.  All candidates go through the network in ONE ``model.predict``.  A candidate's
   score is ``log P(best digit)``: with an 11-output model the probabilities include class 10
   ("not a digit"), so a half digit or two digits in one candidate lose probability to it (the
   rejection score); a 10-output model has only its top probability to go by.
4. **The best reading** (``best_readings``): dynamic programming over the cut positions.  A
   reading is a path ``0 = c_0 < c_1 < ... < c_m = n`` through the ``n + 1`` positions between
   atoms; its score is

       S = sum_k [ log P_k(d_k) + log prior(segment k) + DIGIT_BIAS ] - sum of cut costs
           + SKIP_COST per small mark left out

   where ``prior`` penalises segments much wider than tall or much shorter than the line
   (``segment_prior``), a cut through a piece costs ``CUT_WEIGHT x`` the ink its seam crosses
   (relative to the piece's fullest column), and a small mark (a speck, a dot) may be skipped.
   ``best[j] = max_i best[i] + score(i, j)``: O(n x MAX_ATOMS) steps.  Keeping the ``KEEP`` best
   partial readings with different digit strings at each position (and each segment's two most
   probable digits) gives the runner-up reading as well.

The **number's confidence** is the product of its digits' confidences (each the probability the
network gave that digit for that segment); the runner-up's is computed the same way, and it is
reported when it is at least ``RUNNER_UP_RATIO`` of the best one's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from npcnn.digits.errors import ImageError, NoInkError
from npcnn.digits.preprocess.framing import (
    MNIST_BOX,
    crop_to_ink,
    normalise_stroke,
    place_in_frame,
    stroke_goal,
    stroke_width,
)
from npcnn.digits.preprocess.ink import EIGHT_NEIGHBOURS, InkImage, piece_masses

NOT_A_DIGIT = 10  # class 10 of an 11-output model
MAX_DIGITS = 24  # a "number" with more digit-sized marks than this is refused
MAX_ATOMS = 5  # a candidate digit joins at most this many atoms
MAX_WIDTH = 1.6  # ... and is at most this many line heights wide
MAX_GAP = 0.45  # ... and has no empty gap wider than this many line heights inside

# The weights of the reading's score (tuned on the development number set, never on the test set)
DIGIT_BIAS = 0.0  # log-score added per digit (< 0: fewer digits preferred; 0 was best on dev)
CUT_WEIGHT = 2.0  # a cut through a piece costs this x (its seam's ink / the fullest column's)
GAP_WEIGHT = 1.0  # an empty gap inside a digit costs this x (gap / line height)
SKIP_COST = -0.5  # leaving out a small mark (a speck, a stray dot)
WIDE_RATIO = 1.4  # a digit wider than this x its height pays a quadratic penalty ...
WIDE_SCALE = 0.4  # ... of ((ratio - WIDE_RATIO) / WIDE_SCALE)^2
SHORT_RATIO = 0.55  # a digit shorter than this x the line's height pays ...
SHORT_SCALE = 0.15  # ... ((SHORT_RATIO - ratio) / SHORT_SCALE)^2
KEEP = 4  # partial readings kept per position (for the runner-up)
OVERLAP_REACH = 0.1  # a digit next to a dear cut may also take this many heights of its neighbour
OVERLAP_REACH_2 = 0.2  # ... or this many (each is a variant)
OVERLAP_CUT = 0.0  # ... when the cut crosses at least this much ink (x the fullest column's)
SEAM_DRIFT = 0.5  # a cut's seam pays this (in pixels of ink) per sideways step
SEAM_SPACING = 0.08  # seams end at least this many heights apart
TOP_SEAM_COST = 0.15  # seams from the top row too, if they cross at most this much ink (0: none),
TOP_SEAM_WIDTH = 0.9  # ... in pieces at least this x their height wide (room for two digits)
MARGIN_ASPECT = 12  # a page's vertical ruled line is at least this x taller than wide ...
MARGIN_RATIO = 0.8  # ... and the digits beside it at most this x its height (margin_lines)
SEAM_PROMINENCE = 0.0  # a seam is cheaper than the dearest on each side by this x p_max
RUNNER_UP_RATIO = 0.1  # report the runner-up when its confidence is at least this x the best's


class TooManyMarksError(ImageError):
    """A picture of a number holds more separate marks than ``MAX_DIGITS``."""


# --------------------------------------------------------------------- 1. atoms
@dataclass(frozen=True)
class Atom:
    """The smallest unit of ink a digit is made of: a connected piece, or a slice of a wide one.

    ``pixels`` is its ink (float32) in its box ``(x0, y0, x1, y1)`` (working pixels, exclusive
    ends); ``cut_cost`` the cost of the cut on its left (0 unless it starts inside a piece);
    ``small`` whether it may be left out as a speck; ``piece`` the label of its piece.
    """

    pixels: np.ndarray
    box: tuple[int, int, int, int]
    piece: int
    cut_cost: float
    small: bool

    @property
    def centre(self) -> float:
        return (self.box[0] + self.box[2]) / 2


@dataclass
class Atoms:
    """The atoms of a number, left to right, and the height of its line of digits (px)."""

    atoms: list[Atom]
    line_height: float
    digit_marks: int  # digit-sized marks (pieces that overlap little in x): at most MAX_DIGITS


def seam_costs(piece: np.ndarray, drift: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest top-to-bottom cut ("seam") through ``piece`` (H, W) ending at each column.

    A seam takes one pixel per row, moving at most one column between rows; it costs the ink it
    crosses plus ``drift`` per sideways step, so it runs straight through where digits barely
    touch and bends around the strokes where they overlap.  Dynamic programming, row by row:

        M[0, x] = ink[0, x];   M[y, x] = ink[y, x] + min(M[y-1, x], M[y-1, x +- 1] + drift)

    Returns ``M[H-1]`` (W,) - the cost of the best seam ending at each bottom column - and the
    moves (H, W) int8 (-1, 0, +1: the column offset of the row above) to trace seams back.
    """
    drift = SEAM_DRIFT if drift is None else drift
    height, width = piece.shape
    ink = piece.astype(np.float64)
    total = np.empty((height, width))  # M, row by row
    total[0] = ink[0]
    side = np.empty(width)  # min(M[y-1, x-1], M[y-1, x+1]) + drift
    for y in range(1, height):  # the only loop: each row needs the one above (5 small ops)
        above = total[y - 1]
        side[0] = np.inf
        side[1:] = above[:-1]
        np.minimum(side[:-1], above[1:], out=side[:-1])
        side += drift
        np.minimum(above, side, out=total[y])
        total[y] += ink[y]
    # The moves, for all rows at once: which of the three the minimum took (straight down
    # first on ties, then from the left) - the same sums as in the loop, so the same floats.
    above = total[:-1]
    from_left = np.full_like(above, np.inf)
    from_left[:, 1:] = above[:, :-1] + drift
    from_right = np.full_like(above, np.inf)
    from_right[:, :-1] = above[:, 1:] + drift
    best = np.minimum(np.minimum(from_left, above), from_right)
    moves = np.zeros((height, width), dtype=np.int8)
    moves[1:] = np.where(best == above, 0, np.where(best == from_left, -1, 1))
    return total[-1].copy(), moves


def trace_seam(moves: np.ndarray, end: int) -> np.ndarray:
    """The seam (the column it crosses in each row, (H,)) that ends at bottom column ``end``."""
    path = np.empty(moves.shape[0], dtype=np.int64)
    path[-1] = end
    for y in range(moves.shape[0] - 1, 0, -1):
        path[y - 1] = path[y] + moves[y, path[y]]
    return path


def _valley_ends(total: np.ndarray, top: float, height: float) -> list[int]:
    """The columns where the seam cost ``total`` (W,) has a valley (see ``seam_cuts``)."""
    width = len(total)
    reach = max(1, round(SEAM_SPACING * height))
    side = max(2, round(0.35 * height))
    lowest = ndimage.minimum_filter1d(total, 2 * reach + 1, mode="nearest")
    margin = max(2, round(0.08 * height))
    ends: list[int] = []
    for column in sorted(range(margin, width - margin + 1), key=lambda c: total[c]):
        value = total[column]
        if value > lowest[column] or any(abs(column - end) <= reach for end in ends):
            continue
        left = total[max(0, column - side) : column].max()
        right = total[column + 1 : column + side + 1].max()
        if min(left, right) >= value + SEAM_PROMINENCE * top:
            ends.append(column)
    return ends


def seam_cuts(piece: np.ndarray, height: float) -> list[tuple[np.ndarray, float]]:
    """Candidate cuts inside one piece (H, W, cut to its own box): seams at the valleys of the
    seam cost.

    With ``S(x)`` the cost of the best seam ending at column ``x`` (``seam_costs``), a column is
    a candidate when ``S`` is lowest there within +-``SEAM_SPACING`` x ``height`` (cheapest
    first, no two that close), with dearer seams on *both* sides within 0.35 ``height`` (the
    cheaper side at least ``S(x) + SEAM_PROMINENCE p_max``, ``p_max`` the ink of the fullest
    column), and at least 0.08 ``height`` from either edge.  Seams are found both ending at the
    bottom row and (on the piece turned upside down) starting at the top row: two strokes that
    meet at the bottom in a V (a leaning 1 next to a 4's stem) leave a valley only at the top.
    A top seam is kept when it crosses at most ``TOP_SEAM_COST`` x ``p_max`` of ink and is over
    ``SEAM_SPACING`` x ``height`` (mean column) from every bottom one.  A cut's cost is the ink
    its seam crosses over ``p_max``: near 0 where digits barely touch.  Seams are kept apart
    (each at or right of the previous one in every row) and at most ``width / (0.12 height)``
    of them, the cheapest.  Returns ``[(seam (H,), cost)]`` left to right.
    """
    width = piece.shape[1]
    if width < 0.25 * height or width < 4:
        return []
    top = max(float(piece.sum(axis=0).max()), 1e-9)
    rows = np.arange(piece.shape[0])
    total, moves = seam_costs(piece)
    paths = [trace_seam(moves, end) for end in _valley_ends(total, top, height)]
    apart = max(1.0, SEAM_SPACING * height)
    if TOP_SEAM_COST > 0 and width >= TOP_SEAM_WIDTH * height:
        total, moves = seam_costs(piece[::-1])
        for end in _valley_ends(total, top, height):
            path = trace_seam(moves, end)[::-1]
            cheap = piece[rows, path].sum() <= TOP_SEAM_COST * top
            if cheap and all(np.abs(path - other).mean() > apart for other in paths):
                paths.append(path)
    cuts = [(path, float(piece[rows, path].sum()) / top) for path in paths]
    most = max(1, int(width / (0.12 * height)))
    cuts = sorted(sorted(cuts, key=lambda c: c[1])[:most], key=lambda c: float(c[0].mean()))
    for k in range(1, len(cuts)):  # seams must not cross: each at or right of the previous
        cuts[k] = (np.maximum(cuts[k][0], cuts[k - 1][0]), cuts[k][1])
    return cuts


@dataclass(frozen=True)
class Pieces:
    """The ink's connected pieces (``labels`` 1..N, ``boxes``, ``heights``, ``masses``), the
    line's height, and which pieces ``keep`` (not underlines, not tiny specks)."""

    labels: np.ndarray
    boxes: list[tuple[slice, slice]]
    heights: np.ndarray
    masses: np.ndarray
    line_height: float
    keep: np.ndarray


def margin_lines(
    heights: np.ndarray, widths: np.ndarray, masses: np.ndarray, picture_height: int
) -> np.ndarray:
    """Which pieces are a page's vertical ruled line (a notebook's margin), not a 1.

    Such a line is straight and thin - at least ``MARGIN_ASPECT`` times as tall as it is wide -
    and runs through the whole picture, from its top row to its bottom row, and the digits beside
    it are shorter: the tallest other piece holding 15% of the heaviest other piece's ink is at
    most ``MARGIN_RATIO`` of its height.  A 1 that is the only piece, or about as tall as its
    neighbours, or that stops short of an edge, is never one."""
    line = (heights >= picture_height) & (widths * MARGIN_ASPECT <= heights)
    others = ~line
    if not line.any() or not others.any():
        return np.zeros_like(line)
    heavy = others & (masses >= 0.15 * masses[others].max())
    if heights[heavy].max() > MARGIN_RATIO * heights[line].min():
        return np.zeros_like(line)
    return line


def digit_pieces(ink: np.ndarray) -> Pieces:
    """Clean ink (H, W) -> its pieces, and which of them may belong to digits.

    Dropped first: a page's vertical ruled lines (``margin_lines``).  Of the rest, the line height
    ``H`` is the tallest piece holding at least 15% of the heaviest piece's ink.  Dropped too:
    underlines (flatter than 1:4, under 0.35 ``H`` tall and at least 0.8 ``H`` wide) and tiny
    specks (under 3% of the heaviest piece's ink).  No ink, or nothing kept -> ``NoInkError``.
    """
    labels, count = ndimage.label(ink > 0, structure=EIGHT_NEIGHBOURS)
    if count == 0:
        raise NoInkError("nothing to recognise: the image looks blank")
    masses = piece_masses(ink, labels, count)
    boxes = ndimage.find_objects(labels)
    heights = np.array([b[0].stop - b[0].start for b in boxes], dtype=np.float64)
    widths = np.array([b[1].stop - b[1].start for b in boxes], dtype=np.float64)
    margin = margin_lines(heights, widths, masses, ink.shape[0])
    heaviest = float(masses[~margin].max())
    line_height = float(heights[~margin & (masses >= 0.15 * heaviest)].max())
    underline = (heights * 4 < widths) & (heights < 0.35 * line_height)
    underline &= widths >= 0.8 * line_height
    keep = ~underline & ~margin & (masses >= 0.03 * heaviest)
    if not keep.any():
        raise NoInkError("nothing to recognise: only specks or lines, no digits")
    return Pieces(labels, boxes, heights, masses, line_height, keep)


def find_atoms(ink: np.ndarray) -> Atoms:
    """Clean ink (H, W) -> its atoms: pieces minus specks and underlines, wide ones sliced.

    The line height ``H`` is the tallest piece holding at least 15% of the heaviest piece's ink.
    Dropped: underlines (flatter than 1:4, under 0.35 ``H`` tall and at least 0.8 ``H`` wide) and
    tiny specks (under 3% of the heaviest piece's ink).  Marks under 0.5 ``H`` tall and under 30%
    of the heaviest piece's ink are ``small``: the reading may leave them out.  Pieces are sliced
    along ``seam_cuts``; a slice with under 2% of its piece's ink joins its left neighbour's cut
    (it is dropped as a slice).  No ink -> ``NoInkError``.
    """
    pieces = digit_pieces(ink)
    labels, boxes, heights = pieces.labels, pieces.boxes, pieces.heights
    line_height, masses, heaviest = pieces.line_height, pieces.masses, float(pieces.masses.max())
    keep = pieces.keep
    atoms: list[Atom] = []
    for index in np.flatnonzero(keep):
        rows, columns = boxes[index]
        piece = np.where(labels[rows, columns] == index + 1, ink[rows, columns], 0.0)
        small = heights[index] < 0.5 * line_height and masses[index] < 0.3 * heaviest
        cuts = [] if small else seam_cuts(piece, heights[index])
        atoms.extend(_slices(piece, cuts, rows.start, columns.start, index + 1, bool(small)))
    atoms.sort(key=lambda a: a.centre)
    digit_marks = _count_digit_marks([boxes[i] for i in np.flatnonzero(keep)], line_height)
    return Atoms(atoms, line_height, digit_marks)


def _slices(
    piece: np.ndarray,
    cuts: list[tuple[np.ndarray, float]],
    top: int,
    left: int,
    label: int,
    small: bool,
) -> list[Atom]:
    """A piece's ink (H, W) at (``left``, ``top``) cut along seams -> its atoms, left to right.

    Atom ``k`` holds the pixels with ``seam_k(y) <= x < seam_{k+1}(y)`` in each row ``y``.
    """
    height, width = piece.shape
    x = np.arange(width)[None, :]
    bounds = [np.zeros(height, np.int64), *(path for path, _ in cuts), np.full(height, width)]
    costs = [0.0, *(cost for _, cost in cuts)]
    total = float(piece.sum())
    atoms, pending = [], 0.0
    for k in range(len(bounds) - 1):
        inside = (x >= bounds[k][:, None]) & (x < bounds[k + 1][:, None])
        part = np.where(inside, piece, 0.0)
        if part.sum() < 0.02 * total:
            pending = max(pending, costs[k])
            continue
        rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        cost = costs[k] if atoms else 0.0
        box = (left + x0, top + y0, left + x1, top + y1)
        atoms.append(Atom(part[y0:y1, x0:x1].astype(np.float32), box, label, cost, small))
    return atoms


def _count_digit_marks(boxes: list[tuple[slice, slice]], line_height: float) -> int:
    """How many marks at least 0.3 ``line_height`` tall stand side by side (a mark sharing over
    60% of its columns with an earlier one counts with it): what ``MAX_DIGITS`` limits."""
    spans: list[tuple[int, int]] = []
    for rows, columns in sorted(boxes, key=lambda b: b[1].start):
        if rows.stop - rows.start < 0.3 * line_height:
            continue
        x0, x1 = columns.start, columns.stop
        if spans and min(spans[-1][1], x1) - max(spans[-1][0], x0) > 0.6 * (x1 - x0):
            spans[-1] = (spans[-1][0], max(spans[-1][1], x1))
        else:
            spans.append((x0, x1))
    return len(spans)


# --------------------------------------------------------------------- 2. candidates
@dataclass
class Candidates:
    """Every candidate digit of a number: atoms ``[start, stop)``, its framed image and box.

    ``images`` float32 (N, 28, 28) like ``to_mnist`` gives; ``spans`` (start, stop) atom indices;
    ``boxes`` in working pixels; ``priors`` the log prior of each (``segment_prior`` + the gap
    cost); ``atoms`` what they were made of; ``scale`` and ``input_size`` map boxes back to the
    input picture's pixels.
    """

    images: np.ndarray
    spans: list[tuple[int, int]]
    boxes: list[tuple[int, int, int, int]]
    priors: np.ndarray
    atoms: Atoms
    scale: int
    input_size: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)


def segment_prior(width: float, height: float, line_height: float) -> float:
    """The log prior of a digit ``width`` x ``height`` px on a line ``line_height`` px tall.

    Handwritten digits are rarely wider than tall and rarely much shorter than their neighbours:
    ``-((width / height - WIDE_RATIO) / WIDE_SCALE)^2`` beyond ``WIDE_RATIO`` and
    ``-((SHORT_RATIO - height / line_height) / SHORT_SCALE)^2`` below ``SHORT_RATIO``; 0 inside.
    A "1" may be as narrow as it likes.
    """
    ratio = width / max(height, 1.0)
    prior = -(((ratio - WIDE_RATIO) / WIDE_SCALE) ** 2) if ratio > WIDE_RATIO else 0.0
    tall = height / max(line_height, 1.0)
    if tall < SHORT_RATIO:
        prior -= ((SHORT_RATIO - tall) / SHORT_SCALE) ** 2
    return prior


def _inner_gap(atoms: list[Atom]) -> int:
    """The widest run of empty columns between the atoms' column ranges (0 if they overlap)."""
    spans = sorted((a.box[0], a.box[2]) for a in atoms)
    reach, widest = spans[0][1], 0
    for x0, x1 in spans[1:]:
        widest = max(widest, x0 - reach)
        reach = max(reach, x1)
    return widest


def _is_whole_piece(atoms: list[Atom], start: int, stop: int) -> bool:
    """Whether atoms ``start .. stop-1`` are all the atoms of one connected piece."""
    piece = atoms[start].piece
    return all(a.piece == piece for a in atoms[start:stop]) and all(
        a.piece != piece for a in atoms[:start] + atoms[stop:]
    )


def _join(atoms: list[Atom]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The ink of several atoms on one canvas, and its box (working pixels)."""
    x0 = min(a.box[0] for a in atoms)
    y0 = min(a.box[1] for a in atoms)
    x1 = max(a.box[2] for a in atoms)
    y1 = max(a.box[3] for a in atoms)
    canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    for a in atoms:
        region = canvas[a.box[1] - y0 : a.box[3] - y0, a.box[0] - x0 : a.box[2] - x0]
        np.maximum(region, a.pixels, out=region)
    return canvas, (x0, y0, x1, y1)


def _clip(atom: Atom, reach: int, keep_left: bool) -> Atom | None:
    """The ``reach`` columns of ``atom`` on its left side (``keep_left``) or its right side;
    ``None`` if they hold no ink."""
    x0, y0, x1, y1 = atom.box
    reach = min(reach, x1 - x0)
    if keep_left:
        part, box = atom.pixels[:, :reach], (x0, y0, x0 + reach, y1)
    else:
        part, box = atom.pixels[:, x1 - x0 - reach :], (x1 - reach, y0, x1, y1)
    if not part.any():
        return None
    return Atom(part, box, atom.piece, 0.0, atom.small)


def overlap_variants(atoms: list[Atom], start: int, stop: int, line: float) -> list[list[Atom]]:
    """Atoms ``start .. stop-1`` with a strip of a neighbour's ink added, for digits that overlap.

    Where neighbours overlap, their strokes cross and any seam leaves part of one digit on the
    other's side: a 4 loses its left half to the 4 before it, a 0 its right side to the 5 after
    it.  When the cut on either side of the run is dear (it crosses at least ``OVERLAP_CUT`` of
    the fullest column's ink: strokes crossing, not just touching), the run is also offered with
    the ``OVERLAP_REACH`` x ``line`` columns of the neighbouring atom nearest to it added, on
    that side, and again with ``OVERLAP_REACH_2`` x ``line`` columns (one variant per side and
    per width: a narrow strip gives back the edge a seam took from a digit that only touches
    its neighbour, a wide one the part of a stroke that crosses into it).  The network decides
    whether the borrowed strip completes the digit or spoils it.
    """
    members = atoms[start:stop]
    variants = []
    for share in (OVERLAP_REACH, OVERLAP_REACH_2):
        reach = max(1, round(share * line))
        if stop < len(atoms) and atoms[stop].piece == atoms[stop - 1].piece:
            if atoms[stop].cut_cost >= OVERLAP_CUT:
                strip = _clip(atoms[stop], reach, keep_left=True)
                if strip is not None:
                    variants.append([*members, strip])
        if start > 0 and atoms[start].piece == atoms[start - 1].piece:
            if atoms[start].cut_cost >= OVERLAP_CUT:
                strip = _clip(atoms[start - 1], reach, keep_left=False)
                if strip is not None:
                    variants.append([strip, *members])
    return variants


def frame_candidate(pixels: np.ndarray, adjust_stroke: bool) -> np.ndarray:
    """A candidate's ink -> (28, 28), as ``to_mnist`` frames a single digit (steps 5-8);
    ``normalise_stroke`` only when ``adjust_stroke`` (see ``stroke_needs_adjusting``)."""
    crop, _ = crop_to_ink(pixels)
    return place_in_frame(normalise_stroke(crop) if adjust_stroke else crop)


def stroke_needs_adjusting(ink: np.ndarray, line_height: float) -> bool:
    """Whether the number's strokes are outside MNIST's usual width for digits ``line_height``
    tall: measured once on the whole ink (``stroke_width``, px) and scaled to the 20 px box.
    When they are within it, ``normalise_stroke`` would leave every candidate unchanged (it is
    by far the dearest step of framing), so it is skipped for all of them."""
    width = stroke_width(ink) * MNIST_BOX / max(line_height, 1.0)
    return stroke_goal(width) != width


def number_candidates(ink: InkImage) -> Candidates:
    """The candidate digits of a picture of a number (steps 1-2), ready for one ``predict``.

    A candidate is a run of 1 to ``MAX_ATOMS`` consecutive atoms at most ``MAX_WIDTH`` line
    heights wide with no empty gap over ``MAX_GAP`` line heights inside; its prior is
    ``segment_prior - GAP_WEIGHT x inner gap / line height``.  Too many digit-sized marks ->
    ``TooManyMarksError``.
    """
    started = time.perf_counter()
    found = find_atoms(ink.pixels)
    if found.digit_marks > MAX_DIGITS:
        raise TooManyMarksError(
            f"found {found.digit_marks} separate marks: too many to read as one number"
            f" (at most {MAX_DIGITS} digits)"
        )
    atoms_done = time.perf_counter()
    atoms, line = found.atoms, found.line_height
    adjust_stroke = stroke_needs_adjusting(ink.pixels, line)
    images, spans, boxes, priors = [], [], [], []
    for start in range(len(atoms)):
        stops = list(range(start + 1, min(start + MAX_ATOMS, len(atoms)) + 1))
        whole = start + sum(a.piece == atoms[start].piece for a in atoms)
        if whole > stops[-1] and _is_whole_piece(atoms, start, whole):
            stops.append(whole)  # a whole piece is a candidate, of however many atoms
        for stop in stops:
            members = atoms[start:stop]
            x0, x1 = min(a.box[0] for a in members), max(a.box[2] for a in members)
            gap = _inner_gap(members)
            whole_piece = _is_whole_piece(atoms, start, stop)
            too_wide = x1 - x0 > MAX_WIDTH * line or gap > MAX_GAP * line
            if too_wide and stop > start + 1 and not whole_piece:
                continue  # every atom and every whole piece is a candidate, however wide
            for variant in [members, *overlap_variants(atoms, start, stop, line)]:
                pixels, box = _join(variant)
                images.append(frame_candidate(pixels, adjust_stroke))
                spans.append((start, stop))
                boxes.append(box)
                prior = segment_prior(box[2] - box[0], box[3] - box[1], line)
                priors.append(prior - GAP_WEIGHT * gap / line)
    return Candidates(
        np.stack(images).astype(np.float32),
        spans,
        boxes,
        np.array(priors, dtype=np.float64),
        found,
        ink.scale,
        ink.input_size,
        {"atoms": atoms_done - started, "framing": time.perf_counter() - atoms_done},
    )


# --------------------------------------------------------------------- 4. the best readings
@dataclass(frozen=True)
class Reading:
    """One way to read the number: the candidate index and digit of each segment, its score
    ``S`` and confidence (the product of its digits' probabilities)."""

    segments: tuple[tuple[int, int], ...]  # (candidate index, digit), left to right
    score: float
    confidence: float

    @property
    def number(self) -> str:
        return "".join(str(digit) for _, digit in self.segments)


def segment_scores(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's two most probable digits (N, 2) and their log probabilities (N, 2).

    With an 11-output model the probabilities are the 11-way softmax's, so a candidate the
    network calls "not a digit" has low probabilities for every digit; class 10 itself is never
    a digit of the number.
    """
    digits = probabilities[:, :NOT_A_DIGIT]
    order = np.argsort(-digits, axis=1)[:, :2]
    chosen = np.take_along_axis(digits, order, axis=1)
    return order, np.log(np.clip(chosen, 1e-12, 1.0))


Partial = dict[str, tuple[float, float, tuple[tuple[int, int], ...]]]
"""Partial readings at one position: digit string -> (score, log confidence, segments)."""


def _offer(options: Partial, text: str, score: float, log_conf: float, segs: tuple) -> None:
    """Keep the better of two partial readings with the same digit string."""
    if text not in options or score > options[text][0]:
        options[text] = (score, log_conf, segs)


def best_readings(
    spans: list[tuple[int, int]],
    log_scores: np.ndarray,
    top_digits: np.ndarray,
    priors: np.ndarray,
    cut_costs: np.ndarray,
    skippable: np.ndarray,
    keep: int = KEEP,
) -> list[Reading]:
    """The best readings, best first, each with a different digit string (dynamic programming).

    ``spans[k] = (i, j)``: candidate ``k`` covers atoms ``i .. j-1``; ``log_scores[k, r]`` is
    the log probability of its ``r``-th most probable digit ``top_digits[k, r]``; ``priors[k]``
    its log prior; ``cut_costs[i]`` the cost of a cut at position ``i`` (between atoms ``i-1``
    and ``i``; 0 at a gap between pieces); ``skippable[i]`` whether atom ``i`` may be left out
    (at ``SKIP_COST``).  Position ``j`` keeps the ``keep`` best partial readings of atoms
    ``0 .. j-1`` with different strings:

        best[j] = top-keep over { best[i] + log P_k(d) + prior_k + DIGIT_BIAS - cut_costs[j] }
                  and { best[j-1] + SKIP_COST if atom j-1 is skippable }

    (no cut cost at the ends).  Returns at most ``keep`` readings of all the atoms.
    """
    n = len(cut_costs) - 1
    ending: list[list[int]] = [[] for _ in range(n + 1)]
    for k, (_, j) in enumerate(spans):
        ending[j].append(k)
    partial: list[Partial] = [{} for _ in range(n + 1)]
    partial[0][""] = (0.0, 0.0, ())
    for j in range(1, n + 1):
        options: Partial = {}
        cut = cut_costs[j] if j < n else 0.0
        for k in ending[j]:
            i = spans[k][0]
            for rank in range(top_digits.shape[1]):
                digit = int(top_digits[k, rank])
                step = log_scores[k, rank] + priors[k] + DIGIT_BIAS - cut
                for text, (score, log_conf, segs) in partial[i].items():
                    _offer(
                        options,
                        text + str(digit),
                        score + step,
                        log_conf + log_scores[k, rank],
                        (*segs, (k, digit)),
                    )
        if skippable[j - 1]:
            for text, (score, log_conf, segs) in partial[j - 1].items():
                _offer(options, text, score + SKIP_COST, log_conf, segs)
        kept = sorted(options.items(), key=lambda item: -item[1][0])[:keep]
        partial[j] = dict(kept)
    finals = sorted(partial[n].items(), key=lambda item: -item[1][0])
    return [
        Reading(segs, float(score), float(math.exp(log_conf)))
        for text, (score, log_conf, segs) in finals
        if text  # a reading must hold at least one digit
    ]


@dataclass
class NumberDigit:
    """One digit of a reading: its (28, 28) ``image``, the network's ``probabilities`` for it,
    the ``digit`` and its ``box`` in the input picture's pixels."""

    image: np.ndarray
    probabilities: np.ndarray
    digit: int
    box: tuple[int, int, int, int]


@dataclass
class NumberReading:
    """The best reading of a number: its digits left to right, ``confidence`` (the product of
    the digits' probabilities), and the runner-up ``(number, confidence)`` when it is close
    (its confidence at least ``RUNNER_UP_RATIO`` x the best's), else ``None``."""

    digits: list[NumberDigit]
    confidence: float
    runner_up: tuple[str, float] | None
    input_size: tuple[int, int]  # the input picture's (width, height)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def number(self) -> str:
        return "".join(str(d.digit) for d in self.digits)


def choose_reading(candidates: Candidates, probabilities: np.ndarray) -> NumberReading:
    """Step 4: the candidates' probabilities (N, K) -> the best reading and its runner-up."""
    started = time.perf_counter()
    atoms = candidates.atoms.atoms
    top_digits, log_scores = segment_scores(probabilities)
    cut_costs = np.zeros(len(atoms) + 1)
    for i in range(1, len(atoms)):
        same_piece = atoms[i].piece == atoms[i - 1].piece
        cut_costs[i] = CUT_WEIGHT * atoms[i].cut_cost if same_piece else 0.0
    skippable = np.array([a.small for a in atoms])
    readings = best_readings(
        candidates.spans, log_scores, top_digits, candidates.priors, cut_costs, skippable
    )
    if not readings:
        raise NoInkError("nothing to recognise: no digit found")
    best = readings[0]
    runner_up = None
    for other in readings[1:]:
        if other.number != best.number:
            if other.confidence >= RUNNER_UP_RATIO * best.confidence:
                runner_up = (other.number, other.confidence)
            break
    digits = [
        NumberDigit(
            candidates.images[k],
            probabilities[k],
            digit,
            _to_input_box(candidates.boxes[k], candidates.scale, candidates.input_size),
        )
        for k, digit in best.segments
    ]
    timings = {**candidates.timings, "search": time.perf_counter() - started}
    return NumberReading(digits, best.confidence, runner_up, candidates.input_size, timings)


def _to_input_box(
    box: tuple[int, int, int, int], scale: int, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A box in working pixels -> the same box in the input picture's pixels."""
    x0, y0, x1, y1 = (v * scale for v in box)
    return x0, y0, min(x1, size[0]), min(y1, size[1])


def read_number(ink: InkImage, predict: Callable[[np.ndarray], np.ndarray]) -> NumberReading:
    """Clean ink of a number -> its best reading; ``predict`` maps (N, 1, 28, 28) -> (N, K)
    probabilities (``model.predict``) and is called once, for all candidates."""
    candidates = number_candidates(ink)
    started = time.perf_counter()
    probabilities = predict(candidates.images[:, None])
    network = time.perf_counter() - started
    reading = choose_reading(candidates, probabilities)
    reading.timings["network"] = network
    return reading


# --------------------------------------------------------------------- a cheap look
def looks_like_number(ink: np.ndarray) -> bool:
    """Whether clean ink (H, W) clearly holds 2+ digits side by side, without the network.

    Digit-sized marks (at least half the line's height ``H`` and 15% of the heaviest mark's ink;
    marks sharing over 60% of their columns count as one) standing apart by at least 0.1 ``H``:
    two or more of them, or one that is 1.6 to 4 times wider than tall (touching digits).  For
    the page's hint "this looks like a number": one ``ndimage.label``, well under a millisecond.
    """
    labels, count = ndimage.label(ink > 0, structure=EIGHT_NEIGHBOURS)
    if count == 0:
        return False
    masses = piece_masses(ink, labels, count)
    boxes = ndimage.find_objects(labels)
    big = masses >= 0.15 * masses.max()
    line = max(b[0].stop - b[0].start for b, keep in zip(boxes, big, strict=True) if keep)
    marks: list[list[int]] = []  # [x0, x1, y0, y1] of each mark, left to right
    for (rows, columns), keep in sorted(zip(boxes, big, strict=True), key=lambda b: b[0][1].start):
        if not keep or rows.stop - rows.start < 0.5 * line:
            continue
        x0, x1, y0, y1 = columns.start, columns.stop, rows.start, rows.stop
        if marks and min(marks[-1][1], x1) - max(marks[-1][0], x0) > 0.6 * min(
            x1 - x0, marks[-1][1] - marks[-1][0]
        ):
            last = marks[-1]
            marks[-1] = [min(last[0], x0), max(last[1], x1), min(last[2], y0), max(last[3], y1)]
        else:
            marks.append([x0, x1, y0, y1])
    apart = [m for k, m in enumerate(marks) if k == 0 or m[0] - marks[k - 1][1] >= 0.1 * line]
    if len(marks) >= 2 and len(apart) == len(marks):
        return True
    if len(marks) == 1:
        x0, x1, y0, y1 = marks[0]
        return 1.6 <= (x1 - x0) / max(y1 - y0, 1) <= 4.0
    return len(marks) >= 2 and len(apart) >= 2
